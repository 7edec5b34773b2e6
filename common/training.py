"""Training: the device and the arithmetic chosen there, checkpoints, the optimizer and its
schedule, and `train`, one loop in named phases that runs the same on every device."""

from __future__ import annotations

import contextlib
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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from . import data as cifar
from .data import CIFAR_MEAN, CIFAR_STD, IMAGENET_MEAN, IMAGENET_STD, Batches, Cifar10
from .errors import ConfigError, TrainingError
from .files import atomic_path

if TYPE_CHECKING:
    from .config import RunConfig

PRECISIONS = ("auto", "bf16", "fp16", "fp32")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
LR_DROP = 0.1  # the "steps" schedule's factor at each drop: BiT's bit_hyperrule divides by 10
NVIDIA_DRIVER = Path("/proc/driver/nvidia/version")  # there while an NVIDIA driver is loaded
LATEST, PREVIOUS, BEST = "checkpoint.pt", "checkpoint.prev.pt", "best.pt"
clock = time.perf_counter  # wall time and the checkpoint interval (tests replace it)
_reported: set[str] = set()  # the GPU reasons this process has printed


def cpu_name() -> str:
    """The CPU model as /proc/cpuinfo names it (the machine type where it does not)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cuda_usable() -> bool:
    """torch.cuda.is_available(), saying once why not where an NVIDIA GPU is there all the same."""
    if torch.cuda.is_available():
        return True
    hidden = os.environ.get("CUDA_VISIBLE_DEVICES") in ("", "-1")
    if hidden or not (NVIDIA_DRIVER.exists() or shutil.which("nvidia-smi")):
        return False
    cuda = torch.version.cuda
    why = f"for CUDA {cuda}, which this NVIDIA driver does not run" if cuda else "without CUDA"
    reason = (
        f"an NVIDIA GPU is here but torch {torch.__version__}, built {why}, cannot use it: "
        "install its build for the CUDA version nvidia-smi shows (pip install torch torchvision "
        "--index-url https://download.pytorch.org/whl/cuXXX, docs/running.md) or a newer driver. "
        "Using the CPU."
    )
    if reason not in _reported:
        _reported.add(reason)
        print(reason, file=sys.stderr)
    return False


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' picks the GPU when torch can use one; asking for a GPU that is absent is an error."""
    if name == "auto":
        return torch.device("cuda" if cuda_usable() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and (device.index or 0) >= (count := torch.cuda.device_count()):
        visible = f"{count} GPU(s) are visible" if count else "no GPU is visible"
        raise ConfigError(f"device {name!r} does not exist: {visible}; use cpu, auto or cuda:N")
    return device


def machine_slug(device: torch.device) -> str:
    """The GPU's or the CPU's model as a file-name part: 'amd-epyc', 'nvidia-h100-80gb-hbm3'."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def device_record(device: torch.device) -> dict[str, str]:
    """The device as the machine numbers it (not CUDA_VISIBLE_DEVICES), its name, a host hash."""
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


def place(model: nn.Module, cfg: RunConfig) -> tuple[torch.device, Arithmetic]:
    """Move `model` to the run's device in the memory format of the arithmetic chosen there."""
    device = resolve_device(cfg.device)
    torch.backends.cudnn.benchmark = True  # fixed shapes: cuDNN may time and pick its kernels
    # CPU: fp32, as emulated bf16 is far slower (benchmarks/results/precision-cpu-amd-epyc.md)
    auto = gpu_precision(device) if device.type == "cuda" else "fp32"
    precision = auto if cfg.precision == "auto" else cfg.precision
    channels_last = precision != "fp32" if cfg.channels_last is None else cfg.channels_last
    arithmetic = Arithmetic(precision, bool(channels_last), device.type)
    model.to(device, memory_format=arithmetic.memory_format)
    return device, arithmetic


def prune_checkpoints(run_dir: str | Path) -> None:
    """Drop the resumable checkpoints of a finished run, keeping BEST."""
    for name in (LATEST, PREVIOUS):
        (Path(run_dir) / name).unlink(missing_ok=True)


def save_state(run_dir: str | Path, cfg: RunConfig, parts: dict[str, Any], run: dict) -> None:
    """Checkpoint `parts` and `run` as LATEST, atomically; the LATEST it replaces is PREVIOUS."""
    read_back(run["history"], cfg)
    state = {k: v.get_state() if k == "data_rng" else v.state_dict() for k, v in parts.items()}
    state |= run | {"key": cfg.training_key()}  # nothing draws from torch's global generators
    latest = Path(run_dir) / LATEST
    with atomic_path(latest) as tmp:
        torch.save(state, tmp)
        if latest.exists():
            os.replace(latest, Path(run_dir) / PREVIOUS)


def resume(run_dir: str | Path | None, cfg: RunConfig, parts: dict[str, Any]) -> dict[str, Any]:
    """The run so far from `run_dir`'s newest good checkpoint (states into `parts`), else anew."""
    run = {"history": [], "best": {"val_acc": -1.0, "epoch": 0}, "best_weights": None, "elapsed": 0}
    for path in (Path(run_dir) / LATEST, Path(run_dir) / PREVIOUS) if run_dir else ():
        if not path.exists():
            continue
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            tqdm.write(f"checkpoint {path} is unreadable ({type(e).__name__}): trying an older one")
            continue
        if state.get("key") != cfg.training_key():
            tqdm.write(f"checkpoint {path} was written with other settings: starting over")
            return run
        tqdm.write(f"resuming {cfg.model} from epoch {len(state['history'])}/{cfg.epochs}")
        for name, part in parts.items():
            if name == "data_rng":
                part.set_state(state[name])
            elif state[name]:  # a scaler that is off saves nothing
                part.load_state_dict(state[name])
        return {k: state[k] for k in run}
    return run


def lr_factor(
    step: int, warmup: int, total: int, schedule: str, start: float, drops: Iterable[float]
) -> float:
    """The lr of `step` as a multiple of the peak: after a linear warm-up, a cosine or linear
    decay to 0; "triangle" (airbench) from `start` up and down to 0; "steps" (BiT's
    bit_hyperrule.get_lr) x LR_DROP after each share of the run in `drops`."""
    if schedule == "triangle":
        if step < warmup:
            return start + (1 - start) * step / warmup
        return max(0.0, (total - step) / max(1, total - warmup))
    if schedule == "steps":
        if step < warmup:
            return step / warmup
        return LR_DROP ** sum(step > round(d * total) for d in drops)
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 1 - progress if schedule == "linear" else 0.5 * (1 + math.cos(math.pi * progress))


def eval_every(cfg: RunConfig, train_images: int, val_images: int) -> int:
    """Epochs between validation passes, so that a run costs at most `cfg`'s share of them."""
    by_count = math.ceil(cfg.epochs / cfg.max_evals)
    by_cost = math.ceil(val_images / (cfg.eval_share * train_images))
    return max(1, by_count, by_cost)


def make_optimizer(
    model: nn.Module, cfg: RunConfig, steps_per_epoch: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW or SGD + Nesterov scheduled by `lr_factor`; no weight decay on BN and biases."""
    params = list(model.parameters())
    groups = [
        {"params": [p for p in params if p.ndim > 1], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
    ]
    if cfg.optimizer == "adamw":
        opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.momentum, 0.999))
    else:
        opt = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)
    total = cfg.epochs * steps_per_epoch
    if cfg.warmup_share is not None:  # airbench's int(0.2 * total)
        warmup = int(cfg.warmup_share * total)
    else:
        warmup = min(total, max(1, round(cfg.warmup_epochs * steps_per_epoch)))
    return opt, torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, warmup, total, cfg.schedule, cfg.lr_start_factor, cfg.lr_drops)
    )


def make_batches(
    data: Cifar10, cfg: RunConfig, device: torch.device, arithmetic: Arithmetic
) -> dict[str, Batches]:
    """The run's train, val and test batches, their images copied to `device` once."""
    train_idx, val_idx = cifar.make_splits(data.train_y, cfg.val_size, cfg.data_fraction, cfg.seed)
    test_idx = torch.arange(len(data.test_y))
    if cfg.eval_images:
        val_idx = val_idx[cifar.stratified_subset(data.train_y[val_idx], cfg.eval_images // 2)]
        test_idx = cifar.stratified_subset(data.test_y, cfg.eval_images)
    mean, std = (IMAGENET_MEAN, IMAGENET_STD) if cfg.pretrained else (CIFAR_MEAN, CIFAR_STD)
    gen = torch.Generator().manual_seed(cfg.seed)  # batch order and augmentation
    aug = dict(cutout=cfg.cutout, pad_mode=cfg.pad_mode, resize=cfg.resize, mixup=cfg.mixup)

    def batches(x: torch.Tensor, y: torch.Tensor, train: bool) -> Batches:
        x, y = cifar.to_device(x, device), cifar.to_device(y, device)
        extra = dict(limit=cfg.steps_per_epoch, **aug) if train else {}
        shape = dict(image_size=cfg.image_size, memory_format=arithmetic.memory_format)
        return Batches(x, y, cfg.batch_size, train, mean, std, gen=gen, **shape, **extra)

    return {
        "train": batches(data.train_x[train_idx], data.train_y[train_idx], True),
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
) -> torch.Tensor:
    """One pass's mean loss and accuracy, left on the device so that no step waits for the host."""
    model.train()
    totals, seen = torch.zeros(2, device=next(model.parameters()).device), 0
    for xb, yb in batches:
        out, loss = train_step(model, opt, scaler, arithmetic, xb, yb, label_smoothing)
        sched.step()
        labels = yb if yb.ndim == 1 else yb.argmax(1)
        totals += torch.stack([loss.detach() * len(yb), (out.argmax(1) == labels).sum()])
        seen += len(yb)
    return totals / seen


@torch.no_grad()
def evaluate(
    model: nn.Module, batches: Batches, arithmetic: Arithmetic, tta: str = "none"
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy over `batches`, one host sync; `tta` "flip" averages the
    logits of each image and its mirror (airbench's infer_mirror)."""
    model.eval()
    totals = torch.zeros(2, device=batches.x.device)
    for xb, yb in batches:
        with arithmetic.autocast():
            out = model(xb)
            if tta == "flip":
                out = 0.5 * out.float() + 0.5 * model(xb.flip(-1)).float()
        loss = F.cross_entropy(out.float(), yb, reduction="sum")
        totals += torch.stack([loss, (out.argmax(1) == yb).sum()])
    loss_sum, correct = totals.tolist()
    return loss_sum / len(batches.x), correct / len(batches.x)


def read_back(history: list[dict[str, Any]], cfg: RunConfig) -> None:
    """The epochs' training figures still on the device as numbers, in one host sync."""
    rows = [h for h in history if "train" in h]
    figures = torch.stack([h.pop("train") for h in rows]).tolist() if rows else []
    for h, (loss, acc) in zip(rows, figures, strict=True):
        if not math.isfinite(loss):
            raise TrainingError(
                f"training loss became {loss} in epoch {h['epoch']}: "
                f"the run diverged, lower lr (now {cfg.lr:g})"
            )
        h.update(train_loss=loss, train_acc=acc)


def validate(
    model: nn.Module, batches: Batches, arithmetic: Arithmetic, cfg: RunConfig, run: dict, desc: str
) -> None:
    """Validate the run's last epoch, keeping a copy of the best weights on the device."""
    read_back(run["history"], cfg)
    val_loss, val_acc = evaluate(model, batches, arithmetic, cfg.tta)
    h = run["history"][-1]
    h.update(val_loss=val_loss, val_acc=val_acc)
    if val_acc > run["best"]["val_acc"]:
        run["best"] = {"val_acc": val_acc, "epoch": h["epoch"]}
        run["best_weights"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
    tqdm.write(
        f"{desc}: train loss {h['train_loss']:.3f} acc {h['train_acc']:.3f} | "
        f"val loss {val_loss:.3f} acc {val_acc:.3f}"
    )


def train(
    model: nn.Module,
    data: Cifar10,
    cfg: RunConfig,
    run_dir: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train `model`, test its best validation epoch; with `run_dir`, checkpoint and resume."""
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
    run = resume(run_dir, cfg, parts)
    history, started = run["history"], started - run["elapsed"]
    every = eval_every(cfg, len(train_b) * train_b.batch_size, len(val_b.x))
    # to stdout, where the epoch lines go: Jupyter shows stderr as a stripe of its own
    bar = dict(leave=False, disable=not progress, mininterval=2, file=sys.stdout)

    last_save = clock()
    try:
        for epoch in range(len(history) + 1, cfg.epochs + 1):
            evaluated = [h["epoch"] for h in history if "val_acc" in h]
            if cfg.patience and evaluated and evaluated[-1] - run["best"]["epoch"] >= cfg.patience:
                tqdm.write(f"early stop: no better validation accuracy for {cfg.patience} epochs")
                break
            # train: the epoch's figures stay on the device until read back
            epoch_started, desc = clock(), f"{cfg.model} epoch {epoch}/{cfg.epochs}"
            steps = tqdm(train_b, desc, **bar)
            figures = train_epoch(model, steps, opt, sched, scaler, arithmetic, cfg.label_smoothing)
            history.append({"epoch": epoch, "lr": sched.get_last_lr()[0], "train": figures})
            # evaluate on the cadence, the best weights kept on the device
            if epoch % every == 0 or epoch == cfg.epochs:
                validate(model, val_b, arithmetic, cfg, run, desc)
            # checkpoint at the end, or before the next epoch's end leaves over the interval unsaved
            now = clock()
            late = now - last_save + (now - epoch_started) >= cfg.checkpoint_every
            if run_dir and (late or epoch == cfg.epochs):
                save_state(run_dir, cfg, parts, run | {"elapsed": clock() - started})
                last_save = clock()

        # test: the best validation epoch's weights, saved as BEST in CPU tensors (load anywhere)
        model.load_state_dict(run["best_weights"])
        if run_dir:
            with atomic_path(Path(run_dir) / BEST) as tmp:
                torch.save({k: v.cpu() for k, v in run["best_weights"].items()}, tmp)
        test_loss, test_acc = evaluate(model, batches["test"], arithmetic, cfg.tta)
    except torch.OutOfMemoryError:
        raise TrainingError(
            f"out of GPU memory with batch_size {cfg.batch_size} at image_size {cfg.image_size}: "
            "lower one of them"
        ) from None
    return {
        "history": history,
        "best_epoch": run["best"]["epoch"],
        "best_val_acc": run["best"]["val_acc"],
        "test_acc": test_acc,
        "test_loss": test_loss,
        **{f"{split}_images": len(b.x) for split, b in batches.items()},
        "steps_per_epoch": len(train_b),
        "evaluations": sum("val_acc" in h for h in history),
        "precision": arithmetic.describe(),
        "wall_time_s": clock() - started,  # earlier sessions' time included
        "started_at": started_at,  # this session's start, in seconds since the epoch
        **device_record(device),
    }
