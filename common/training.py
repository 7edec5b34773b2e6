"""Training: the device and the arithmetic chosen there, checkpoints, the optimizer and its
schedule, and `train`, one loop in named phases that runs the same on every device."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import math
import os
import platform
import re
import shutil
import socket
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from . import data as cifar
from .data import Batches, Cifar10
from .errors import ConfigError, TrainingError
from .files import atomic_path, read_json, write_json

if TYPE_CHECKING:
    from .config import RunConfig

PRECISIONS = ("auto", "bf16", "fp16", "fp32")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
LR_DROP = 0.1  # the "steps" schedule's factor at each drop: BiT's bit_hyperrule divides by 10
PROBE_WARMUP_STEPS = 1  # untimed: the allocator and oneDNN settle first
PROBE_STEPS = 2
# bf16 without native support is many times slower (benchmarks/results/precision-cpu-amd-epyc.md)
PROBE_MAX_BATCH = 32
NVIDIA_DRIVER = Path("/proc/driver/nvidia/version")  # there while an NVIDIA driver is loaded
LATEST, PREVIOUS, BEST = "checkpoint.pt", "checkpoint.prev.pt", "best.pt"
# set in a kernel's environment (run_all.py --keep-checkpoints): a finished run keeps LATEST
KEEP_CHECKPOINTS = "BIG_VS_SMALL_KEEP_CHECKPOINTS"
clock = time.perf_counter  # wall time and the checkpoint interval (tests replace it)
_reported: set[str] = set()  # the GPU reasons this process has printed


def cpu_name() -> str:
    """The CPU model as /proc/cpuinfo names it (the machine type where it does not)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def unusable_gpu() -> str | None:
    """Why torch cannot use this machine's NVIDIA GPU, in one line; None where it can, where
    there is none, or where CUDA_VISIBLE_DEVICES hides it on purpose."""
    if torch.cuda.is_available() or os.environ.get("CUDA_VISIBLE_DEVICES") in ("", "-1"):
        return None
    if not NVIDIA_DRIVER.exists() and shutil.which("nvidia-smi") is None:
        return None
    why = "without CUDA"
    if torch.version.cuda is not None:
        found = None
        with contextlib.suppress(OSError):
            found = re.search(r"\s(\d+\.\d+(?:\.\d+)?)\s", NVIDIA_DRIVER.read_text())
        driver = found[1] if found else "(version unknown)"
        why = f"for CUDA {torch.version.cuda}, which NVIDIA driver {driver} does not run"
    return (
        f"an NVIDIA GPU is here but torch cannot use it: torch {torch.__version__} is built {why}; "
        "install torch's build for the CUDA version nvidia-smi shows (pip install torch "
        "torchvision --index-url https://download.pytorch.org/whl/cuXXX, see README) or a newer "
        "driver. Using the CPU."
    )


def cuda_usable() -> bool:
    """torch.cuda.is_available(); where an NVIDIA GPU is there all the same, says once why not."""
    reason = None if torch.cuda.is_available() else unusable_gpu()
    if reason and reason not in _reported:
        _reported.add(reason)
        print(reason, file=sys.stderr)
    return torch.cuda.is_available()


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' picks the GPU when torch can use one; asking for a GPU that is absent is an error."""
    if name == "auto":
        return torch.device("cuda" if cuda_usable() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for but no GPU is visible: use cpu or auto")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ConfigError(
            f"device {name!r} does not exist: {torch.cuda.device_count()} GPU(s) visible"
        )
    return device


def machine_slug(device: torch.device) -> str:
    """The GPU's or the CPU's model as a file-name part: 'amd-epyc', 'nvidia-h100-80gb-hbm3'."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def device_record(device: torch.device) -> dict[str, str]:
    """Where a run trained: the device as the whole machine numbers it (whatever
    CUDA_VISIBLE_DEVICES shows the kernel), its name, and an anonymous id of the machine."""
    machine = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
    if device.type != "cuda":
        return {"device": "cpu", "device_name": cpu_name(), "machine": machine}
    index = device.index if device.index is not None else torch.cuda.current_device()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")
    physical = visible[index].strip() if index < len(visible) and visible[index].strip() else index
    name = torch.cuda.get_device_name(device)
    return {"device": f"cuda:{physical}", "device_name": name, "machine": machine}


@dataclass(frozen=True)
class Arithmetic:
    """How a run computes: autocast dtype (fp32: none), memory format, gradient scaling."""

    precision: str  # bf16 | fp16 | fp32
    channels_last: bool
    device_type: str  # cpu | cuda

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=DTYPES[self.precision])

    def scaler(self) -> torch.amp.GradScaler:
        """Active for fp16 only: bf16 has fp32's exponent range."""
        return torch.amp.GradScaler(self.device_type, enabled=self.precision == "fp16")

    def describe(self) -> str:
        layout = " + channels-last" if self.channels_last else ""
        return ("fp32" if self.precision == "fp32" else f"{self.precision} autocast") + layout


def gpu_precision(device: torch.device) -> str:
    """bf16 where the GPU computes it natively, fp16 (+ scaler) on tensor cores, else fp32."""
    major, _ = torch.cuda.get_device_capability(device)
    return "bf16" if major >= 8 else "fp16" if major >= 7 else "fp32"


def train_throughput(
    model: nn.Module, arithmetic: Arithmetic, batch: int, side: int, give_up_after: float
) -> float:
    """Training images/s of a copy of `model` on random data, after untimed warm-up steps; 0.0
    when those outlast `give_up_after` seconds. The model and the global RNG are untouched."""
    device = next(model.parameters()).device
    probe = copy.deepcopy(model).to(memory_format=arithmetic.memory_format).train()
    opt, scaler = torch.optim.SGD(probe.parameters(), lr=1e-3, momentum=0.9), arithmetic.scaler()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, side, side, generator=gen).to(device)
    x = x.contiguous(memory_format=arithmetic.memory_format)
    y = torch.randint(0, 10, (batch,), generator=gen).to(device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    begun = start = time.perf_counter()
    for i in range(PROBE_WARMUP_STEPS + PROBE_STEPS):
        if i == PROBE_WARMUP_STEPS:
            sync()
            start = time.perf_counter()
            if start - begun > give_up_after:
                return 0.0
        train_step(probe, opt, scaler, arithmetic, x, y)
    sync()
    return PROBE_STEPS * batch / (time.perf_counter() - start)


def cpu_precision(model: nn.Module, what: str, batch_size: int, image_size: int) -> str:
    """'bf16' or 'fp32', whichever trains `model` faster on this CPU, measured once per CPU
    model, thread count, torch version and configuration (`what` names the model and stem)."""
    key = (
        f"{cpu_name()} | {torch.get_num_threads()} threads | torch {torch.__version__} | "
        f"{what} | {image_size} px | batch {batch_size}"
    )
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    path = Path(root) / "big-vs-small" / "precision.json"
    cache: dict[str, Any] = read_json(path) or {}
    if cache.get(key, {}).get("precision") in ("bf16", "fp32"):
        return cache[key]["precision"]
    # fp32 first; bf16 is given up on once its warm-up alone outlasts all of fp32's steps
    batch = min(batch_size, PROBE_MAX_BATCH)
    fp32 = train_throughput(model, Arithmetic("fp32", False, "cpu"), batch, image_size, math.inf)
    fp32_seconds = (PROBE_WARMUP_STEPS + PROBE_STEPS) * batch / fp32
    bf16 = train_throughput(model, Arithmetic("bf16", True, "cpu"), batch, image_size, fp32_seconds)
    speeds = {"fp32": fp32, "bf16": bf16}
    choice = max(speeds, key=speeds.get)
    cache[key] = {"precision": choice} | {
        f"{k}_images_per_s": round(v, 1) for k, v in speeds.items()
    }
    with contextlib.suppress(OSError):  # a read-only home only costs the next run a probe
        write_json(path, cache)
    bf16_text = f"{bf16:.0f} images/s" if bf16 else "gave up (far slower)"
    tqdm.write(f"precision auto ({key}): fp32 {fp32:.0f} images/s, bf16 {bf16_text} -> {choice}")
    return choice


def place(model: nn.Module, cfg: RunConfig) -> tuple[torch.device, Arithmetic]:
    """Move `model` to the run's device, in the memory format of the arithmetic chosen there:
    'auto' by the GPU's generation, or measured on a CPU; channels-last with bf16/fp16."""
    device = resolve_device(cfg.device)
    torch.backends.cudnn.benchmark = True  # fixed shapes: cuDNN may time and pick its kernels
    model.to(device)
    precision = cfg.precision
    if precision == "auto" and device.type == "cuda":
        precision = gpu_precision(device)
    elif precision == "auto":
        what = f"{cfg.model}, {cfg.stem} stem"
        precision = cpu_precision(model, what, cfg.batch_size, cfg.image_size)
    channels_last = precision != "fp32" if cfg.channels_last is None else cfg.channels_last
    arithmetic = Arithmetic(precision, bool(channels_last), device.type)
    model.to(memory_format=arithmetic.memory_format)
    return device, arithmetic


def load_checkpoint(run_dir: str | Path, key: dict[str, Any]) -> dict[str, Any] | None:
    """The newest readable checkpoint of the same training `key`, else None (start over)."""
    for path in (Path(run_dir) / LATEST, Path(run_dir) / PREVIOUS):
        if not path.exists():
            continue
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            tqdm.write(f"checkpoint {path} is unreadable ({type(e).__name__}): trying an older one")
            continue
        if state.get("key") != key:
            tqdm.write(f"checkpoint {path} was written with other settings: starting over")
            return None
        return state
    return None


def save_weights(run_dir: str | Path, state_dict: dict[str, torch.Tensor]) -> None:
    """Save the best weights as a state dict of CPU tensors (BEST), which loads anywhere."""
    with atomic_path(Path(run_dir) / BEST) as tmp:
        torch.save({k: v.detach().cpu() for k, v in state_dict.items()}, tmp)


def prune_checkpoints(run_dir: str | Path) -> None:
    """Drop the resumable checkpoints of a finished run, keeping BEST."""
    for name in (LATEST, PREVIOUS):
        (Path(run_dir) / name).unlink(missing_ok=True)


def lr_factor(
    step: int,
    warmup_steps: int,
    total_steps: int,
    schedule: str = "cosine",
    start: float = 0.0,
    drops: Iterable[float] = (),
) -> float:
    """The lr of `step` as a multiple of the peak: after a linear warm-up, a cosine or linear
    decay to 0; "triangle" (airbench) from `start` up and down to 0; "steps" (BiT's
    bit_hyperrule.get_lr) x LR_DROP after each share of the run in `drops`."""
    if schedule == "triangle":
        if step < warmup_steps:
            return start + (1 - start) * step / warmup_steps
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))
    if schedule == "steps":
        if step < warmup_steps:
            return step / warmup_steps
        return LR_DROP ** sum(step > round(d * total_steps) for d in drops)
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return 1 - progress if schedule == "linear" else 0.5 * (1 + math.cos(math.pi * progress))


def eval_every(cfg: RunConfig, train_images: int, val_images: int) -> int:
    """Epochs between validation passes: at most `max_evals` a run, and at most `eval_share`
    validation images per training image."""
    by_count = math.ceil(cfg.epochs / cfg.max_evals)
    by_cost = math.ceil(val_images / (cfg.eval_share * train_images))
    return max(1, by_count, by_cost)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on the weights, none on BN and biases."""
    return [
        {"params": [p for p in model.parameters() if p.ndim > 1], "weight_decay": weight_decay},
        {"params": [p for p in model.parameters() if p.ndim <= 1], "weight_decay": 0.0},
    ]


def make_optimizer(
    model: nn.Module, cfg: RunConfig, steps_per_epoch: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW or SGD + Nesterov at `cfg.lr`, scheduled by `lr_factor`."""
    groups = param_groups(model, cfg.weight_decay)
    if cfg.optimizer == "adamw":
        opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.momentum, 0.999))
    else:
        opt = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)
    total = cfg.epochs * steps_per_epoch
    if cfg.warmup_share is not None:  # airbench's int(0.2 * total)
        warmup = int(cfg.warmup_share * total)
    else:
        warmup = min(total, max(1, round(cfg.warmup_epochs * steps_per_epoch)))
    drops = tuple(cfg.lr_drops)
    return opt, torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, warmup, total, cfg.schedule, cfg.lr_start_factor, drops)
    )


def make_batches(
    data: Cifar10, cfg: RunConfig, device: torch.device, arithmetic: Arithmetic
) -> dict[str, Batches]:
    """The run's train, val and test batches, their images copied to `device` once."""
    splits = cifar.make_splits(data.train_y, cfg.val_size, cfg.data_fraction, cfg.seed)
    val_idx, test_idx = splits.val, torch.arange(len(data.test_y))
    if cfg.eval_images:
        val_idx = val_idx[cifar.stratified_subset(data.train_y[val_idx], cfg.eval_images // 2)]
        test_idx = cifar.stratified_subset(data.test_y, cfg.eval_images)
    imagenet = (cifar.IMAGENET_MEAN, cifar.IMAGENET_STD)
    mean, std = imagenet if cfg.pretrained else (cifar.CIFAR_MEAN, cifar.CIFAR_STD)
    gen = torch.Generator().manual_seed(cfg.seed)  # batch order and augmentation
    shared = dict(image_size=cfg.image_size, gen=gen, memory_format=arithmetic.memory_format)
    aug = dict(cutout=cfg.cutout, pad_mode=cfg.pad_mode, resize=cfg.resize, mixup=cfg.mixup)

    def batches(x: torch.Tensor, y: torch.Tensor, train: bool) -> Batches:
        x, y = cifar.to_device(x, device), cifar.to_device(y, device)
        extra = dict(limit=cfg.steps_per_epoch, **aug) if train else {}
        return Batches(x, y, cfg.batch_size, train, mean, std, **shared, **extra)

    return {
        "train": batches(data.train_x[splits.train], data.train_y[splits.train], True),
        "val": batches(data.train_x[val_idx], data.train_y[val_idx], False),
        "test": batches(data.test_x[test_idx], data.test_y[test_idx], False),
    }


def train_step(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    arithmetic: Arithmetic,
    xb: torch.Tensor,
    yb: torch.Tensor,
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step: autocast forward, fp32 loss, scaled backward. Returns logits, loss."""
    with arithmetic.autocast():
        out = model(xb)
    loss = F.cross_entropy(out.float(), yb, label_smoothing=label_smoothing)
    opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
    return out, loss


def train_epoch(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    arithmetic: Arithmetic,
    label_smoothing: float,
) -> tuple[torch.Tensor, int]:
    """One pass of steps: (loss sum, correct) left on the device so no step waits for the host,
    and the number of images; with MixUp's targets, correct means their largest class."""
    model.train()
    totals, seen = torch.zeros(2, device=next(model.parameters()).device), 0
    for xb, yb in batches:
        out, loss = train_step(model, opt, scaler, arithmetic, xb, yb, label_smoothing)
        sched.step()
        labels = yb if yb.ndim == 1 else yb.argmax(1)
        totals += torch.stack([loss.detach() * len(yb), (out.argmax(1) == labels).sum()])
        seen += len(yb)
    return totals, seen


@torch.no_grad()
def evaluate(
    model: nn.Module, batches: Batches, arithmetic: Arithmetic, tta: str = "none"
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy over `batches`, one host sync; `tta` "flip" averages the
    logits of each image and its mirror (airbench's infer_mirror)."""
    model.eval()
    totals, n = torch.zeros(2, device=batches.x.device), 0
    for xb, yb in batches:
        with arithmetic.autocast():
            out = model(xb)
            if tta == "flip":
                out = 0.5 * out.float() + 0.5 * model(xb.flip(-1)).float()
        loss = F.cross_entropy(out.float(), yb, reduction="sum")
        totals += torch.stack([loss, (out.argmax(1) == yb).sum()])
        n += len(yb)
    loss_sum, correct = totals.tolist()
    return loss_sum / n, correct / n


@dataclass
class Progress:
    """What a run has achieved so far; a checkpoint holds it beside the training state."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_val_acc: float = -1.0
    best_epoch: int = 0
    best_weights: dict[str, torch.Tensor] | None = None  # a copy on the training device
    elapsed: float = 0.0  # seconds spent by earlier sessions of this run
    # epochs not yet read back from the device: (epoch, lr, totals, images)
    pending: list[tuple[int, float, torch.Tensor, int]] = field(default_factory=list)

    def read_back(self, cfg: RunConfig) -> None:
        """Move the pending epochs' figures into `history` in one host sync; a loss that is not
        finite ends the run."""
        rows = torch.stack([t for _, _, t, _ in self.pending]).tolist() if self.pending else []
        for (epoch, lr, _, n), (loss_sum, correct) in zip(self.pending, rows, strict=True):
            if not math.isfinite(loss_sum / n):
                raise TrainingError(
                    f"training loss became {loss_sum / n} in epoch {epoch}: "
                    f"the run diverged, lower lr (now {cfg.lr:g})"
                )
            row = {"epoch": epoch, "train_loss": loss_sum / n, "train_acc": correct / n, "lr": lr}
            self.history.append(row)
        self.pending.clear()

    def out_of_patience(self, patience: int | None) -> bool:
        """True once the last evaluated epoch is `patience` epochs past the best."""
        last = self.history[-1] if self.history else {}
        return bool(patience) and "val_acc" in last and last["epoch"] - self.best_epoch >= patience

    def record(self, model: nn.Module, val_loss: float, val_acc: float) -> str:
        """Add the last epoch's validation figures, copy the weights on the device if best, and
        say how the epoch went."""
        h = self.history[-1]
        h.update(val_loss=val_loss, val_acc=val_acc)
        if val_acc > self.best_val_acc:
            self.best_val_acc, self.best_epoch = val_acc, h["epoch"]
            self.best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return (
            f"train loss {h['train_loss']:.3f} acc {h['train_acc']:.3f} | "
            f"val loss {val_loss:.3f} acc {val_acc:.3f}"
        )


def save_state(
    run_dir: str | Path, cfg: RunConfig, parts: dict[str, Any], run: Progress, elapsed: float
) -> None:
    """Checkpoint atomically the states of `parts` (model, optimizer, scheduler, scaler, data
    generator) and of `run`, its pending figures read back first."""
    run.read_back(cfg)
    state = {k: v.get_state() if k == "data_rng" else v.state_dict() for k, v in parts.items()}
    state |= {
        "key": cfg.training_key(),
        "rng": {"torch": torch.get_rng_state()},  # nothing draws from a CUDA generator
        "history": run.history,
        "best": {"val_acc": run.best_val_acc, "epoch": run.best_epoch},
        "best_weights": run.best_weights,
        "elapsed": elapsed,
    }
    with atomic_path(Path(run_dir) / LATEST) as tmp:  # the one it replaces becomes PREVIOUS
        torch.save(state, tmp)
        if (Path(run_dir) / LATEST).exists():
            os.replace(Path(run_dir) / LATEST, Path(run_dir) / PREVIOUS)


def resume(
    run_dir: str | Path | None, cfg: RunConfig, parts: dict[str, Any], device: torch.device
) -> Progress:
    """The progress of `run_dir`'s checkpoint of this training, from any machine, its states
    loaded into `parts`; a fresh one where there is none."""
    state = load_checkpoint(run_dir, cfg.training_key()) if run_dir else None
    if not state:
        return Progress()
    tqdm.write(f"resuming {cfg.model} from epoch {len(state['history'])}/{cfg.epochs}")
    for name, part in parts.items():
        if name == "data_rng":
            part.set_state(state[name])
        elif state[name]:  # a scaler that is off saves nothing
            part.load_state_dict(state[name])
    torch.set_rng_state(state["rng"]["torch"])  # CUDA states, if any, are ignored
    best, weights = state["best"], state["best_weights"]
    weights = {k: cifar.to_device(v, device) for k, v in weights.items()} if weights else None
    return Progress(state["history"], best["val_acc"], best["epoch"], weights, state["elapsed"])


def train(
    model: nn.Module,
    data: Cifar10,
    cfg: RunConfig,
    run_dir: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train `model` on the run's subset of CIFAR-10, keep and test the best validation epoch's
    weights; with `run_dir`, checkpoint on a wall-clock interval and resume from there."""
    started, started_at = clock(), time.time()
    if cfg.head_init == "zero":  # BiT's zero_head: fine-tuning starts from uniform predictions
        nn.init.zeros_(model.fc.weight)
        nn.init.zeros_(model.fc.bias)

    # setup: the device and its arithmetic, the data there, the optimizer, earlier progress
    device, arithmetic = place(model, cfg)
    batches = make_batches(data, cfg, device, arithmetic)
    train_b, val_b = batches["train"], batches["val"]
    opt, sched = make_optimizer(model, cfg, len(train_b))
    scaler = arithmetic.scaler()
    parts = dict(model=model, optimizer=opt, scheduler=sched, scaler=scaler, data_rng=train_b.gen)
    run = resume(run_dir, cfg, parts, device)
    every = eval_every(cfg, len(train_b) * train_b.batch_size, len(val_b.x))
    saved_epoch, last_save = len(run.history), clock()
    try:
        for epoch in range(len(run.history) + 1, cfg.epochs + 1):
            if run.out_of_patience(cfg.patience):
                tqdm.write(f"early stop: no better validation accuracy for {cfg.patience} epochs")
                break
            # train: the epoch's figures stay on the device until read back
            epoch_started, desc = clock(), f"{cfg.model} epoch {epoch}/{cfg.epochs}"
            # to stdout, where the epoch lines go: Jupyter shows stderr as a stripe of its own
            bar = tqdm(
                train_b, desc, leave=False, disable=not progress, mininterval=2, file=sys.stdout
            )
            totals, seen = train_epoch(
                model, bar, opt, sched, scaler, arithmetic, cfg.label_smoothing
            )
            run.pending.append((epoch, sched.get_last_lr()[0], totals, seen))
            # evaluate on the cadence, the best weights kept on the device
            if epoch % every == 0 or epoch == cfg.epochs:
                run.read_back(cfg)
                figures = run.record(model, *evaluate(model, val_b, arithmetic, cfg.tta))
                tqdm.write(f"{desc}: {figures}")
            # checkpoint now if the next epoch's end would leave more than the interval unsaved
            now = clock()
            if run_dir and now - last_save + (now - epoch_started) >= cfg.checkpoint_every:
                save_state(run_dir, cfg, parts, run, run.elapsed + clock() - started)
                saved_epoch, last_save = epoch, clock()
        run.read_back(cfg)
        if run_dir and saved_epoch != len(run.history):  # the end of the run
            save_state(run_dir, cfg, parts, run, run.elapsed + clock() - started)

        # test: the best validation epoch's weights, saved as BEST
        model.load_state_dict(run.best_weights)
        if run_dir:
            save_weights(run_dir, run.best_weights)
        test_loss, test_acc = evaluate(model, batches["test"], arithmetic, cfg.tta)
    except torch.OutOfMemoryError:
        raise TrainingError(
            f"out of GPU memory with batch_size {cfg.batch_size} at image_size {cfg.image_size}: "
            "lower one of them"
        ) from None
    return {
        "history": run.history,
        "best_epoch": run.best_epoch,
        "best_val_acc": run.best_val_acc,
        "test_acc": test_acc,
        "test_loss": test_loss,
        **{f"{split}_images": len(b.x) for split, b in batches.items()},
        "steps_per_epoch": len(train_b),
        "evaluations": sum("val_acc" in h for h in run.history),
        "precision": arithmetic.describe(),
        "wall_time_s": run.elapsed + clock() - started,  # earlier sessions' time included
        "started_at": started_at,  # this session's start, in seconds since the epoch
        **device_record(device),
    }
