"""The training loop, in named phases: batches, optimizer and schedule, training epochs,
evaluation on a bounded cadence, the best weights kept on the device, checkpoints on a wall-clock
interval, and the final test. One code path for every device: only the device's choice, its
name and out-of-memory handling know about CUDA."""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import socket
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .checkpoint import load_checkpoint, save_checkpoint, save_weights
from .config import LR_DROP, RunConfig
from .data import (
    CIFAR_MEAN,
    CIFAR_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    Augment,
    Batches,
    Cifar10,
    make_splits,
    stratified_subset,
    to_device,
)
from .errors import ConfigError, TrainingError
from .precision import Arithmetic, choose_arithmetic, cpu_name, cuda_usable

clock = time.perf_counter  # wall time and the checkpoint interval (tests replace it)


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' picks the GPU when torch can use one; asking for a GPU that is absent is an error."""
    if name == "auto":
        return torch.device("cuda" if cuda_usable() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device {name!r} asked for but no GPU is visible: set `device` to cpu or auto"
            )
        if (device.index or 0) >= torch.cuda.device_count():
            raise ConfigError(
                f"device {name!r} does not exist: {torch.cuda.device_count()} GPU(s) visible"
            )
    return device


def lr_factor(
    step: int,
    warmup_steps: int,
    total_steps: int,
    schedule: str = "cosine",
    start: float = 0.0,
    drops: Iterable[float] = (),
) -> float:
    """The lr of `step` as a multiple of the peak.

    cosine, linear: linear warm-up from ~0 to 1 over `warmup_steps`, then a cosine or linear
    decay to 0 at `total_steps`. triangle (airbench's np.interp over [0, warm-up, total] of
    [start, 1, 0]): from `start` up to 1 at `warmup_steps`, then down to 0 at `total_steps`.
    steps (BiT's bit_hyperrule.get_lr): step / warmup_steps during the warm-up, then 1, times
    LR_DROP after each share of `total_steps` in `drops`.
    """
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


def warmup_steps(cfg: RunConfig, total: int, steps_per_epoch: int) -> int:
    """The warm-up in steps: `warmup_share` of `total` rounded down (airbench's int(0.2 *
    total)), or `warmup_epochs` epochs (at least one step)."""
    if cfg.warmup_share is not None:
        return int(cfg.warmup_share * total)
    return min(total, max(1, round(cfg.warmup_epochs * steps_per_epoch)))


def eval_every(cfg: RunConfig, train_images: int, val_images: int) -> int:
    """Epochs between validation passes: at most `cfg.max_evals` of them per run, and at most
    `cfg.eval_share` validation images per training image (`train_images` an epoch)."""
    by_count = math.ceil(cfg.epochs / cfg.max_evals)
    by_cost = math.ceil(val_images / (cfg.eval_share * train_images))
    return max(1, by_count, by_cost)


def make_batches(
    data: Cifar10, cfg: RunConfig, device: torch.device, arithmetic: Arithmetic
) -> dict[str, Batches]:
    """The run's train, val and test batches, their images copied to `device` once."""
    splits = make_splits(data.train_y, cfg.val_size, cfg.data_fraction, cfg.seed)
    val_idx, test_idx = splits.val, torch.arange(len(data.test_y))
    if cfg.eval_images:
        val_idx = val_idx[stratified_subset(data.train_y[val_idx], cfg.eval_images // 2)]
        test_idx = stratified_subset(data.test_y, cfg.eval_images)
    mean, std = (IMAGENET_MEAN, IMAGENET_STD) if cfg.pretrained else (CIFAR_MEAN, CIFAR_STD)
    gen = torch.Generator().manual_seed(cfg.seed)  # batch order and augmentation

    def batches(x: torch.Tensor, y: torch.Tensor, train: bool) -> Batches:
        return Batches(
            to_device(x, device),
            to_device(y, device),
            cfg.batch_size,
            train=train,
            mean=mean,
            std=std,
            image_size=cfg.image_size,
            gen=gen,
            limit=cfg.steps_per_epoch if train else None,
            memory_format=arithmetic.memory_format,
            aug=Augment(cfg.cutout, cfg.pad_mode, cfg.resize, cfg.mixup) if train else Augment(),
        )

    return {
        "train": batches(data.train_x[splits.train], data.train_y[splits.train], True),
        "val": batches(data.train_x[val_idx], data.train_y[val_idx], False),
        "test": batches(data.test_x[test_idx], data.test_y[test_idx], False),
    }


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """The parameters to optimize: weight decay on the weights, none on BN and biases."""
    return [
        {"params": [p for p in model.parameters() if p.ndim > 1], "weight_decay": weight_decay},
        {"params": [p for p in model.parameters() if p.ndim <= 1], "weight_decay": 0.0},
    ]


def make_optimizer(
    model: nn.Module, cfg: RunConfig, steps_per_epoch: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW or SGD + Nesterov over `param_groups`, with `lr_factor`'s `cfg.schedule`."""
    groups = param_groups(model, cfg.weight_decay)
    if cfg.optimizer == "adamw":
        opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.momentum, 0.999))
    else:
        opt = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)
    total = cfg.epochs * steps_per_epoch
    warmup = warmup_steps(cfg, total, steps_per_epoch)
    drops = tuple(cfg.lr_drops)
    return opt, torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, warmup, total, cfg.schedule, cfg.lr_start_factor, drops)
    )


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
    """One pass of training steps. Returns (loss sum, correct) still on the device, so that no
    step waits for the host, and the number of images. A target of class probabilities
    (MixUp) counts as correct where the prediction is its largest class."""
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
    """Mean cross-entropy and accuracy of `model` over `batches` (one host sync, at the end).
    `tta` "flip": the logits are the mean of the image's and its mirror's (airbench's
    infer_mirror, tta_level 1)."""
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


@contextlib.contextmanager
def out_of_memory_is_one_line(cfg: RunConfig) -> Iterator[None]:
    """Turn running out of GPU memory, in training or evaluation, into a one-line error."""
    try:
        yield
    except torch.OutOfMemoryError:
        raise TrainingError(
            f"out of GPU memory with batch_size {cfg.batch_size} at "
            f"image_size {cfg.image_size}: lower one of them"
        ) from None


@dataclass
class Progress:
    """What a run has achieved so far: the checkpoint holds it beside the training state."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_val_acc: float = -1.0
    best_epoch: int = 0
    best_weights: dict[str, torch.Tensor] | None = None  # a copy on the training device
    elapsed: float = 0.0  # seconds spent by earlier sessions of this run
    # epochs trained but not yet read back from the device: (epoch, lr, totals, images)
    pending: list[tuple[int, float, torch.Tensor, int]] = field(default_factory=list)

    @property
    def epochs_done(self) -> int:
        return len(self.history) + len(self.pending)

    def read_back(self, cfg: RunConfig) -> None:
        """Move the pending epochs' training figures into `history` in one host sync, and end
        the run at the first epoch whose loss is not finite."""
        if not self.pending:
            return
        rows = torch.stack([totals for _, _, totals, _ in self.pending]).tolist()
        for (epoch, lr, _, n), (loss_sum, correct) in zip(self.pending, rows, strict=True):
            if not math.isfinite(loss_sum / n):
                raise TrainingError(
                    f"training loss became {loss_sum / n} in epoch {epoch}: "
                    f"the run diverged, lower lr (now {cfg.lr:g})"
                )
            row = {"epoch": epoch, "train_loss": loss_sum / n, "train_acc": correct / n, "lr": lr}
            self.history.append(row)
        self.pending.clear()

    def record_eval(self, model: nn.Module, val_loss: float, val_acc: float) -> None:
        """Add the last epoch's validation figures; copy the weights on the device if best."""
        self.history[-1].update(val_loss=val_loss, val_acc=val_acc)
        if val_acc > self.best_val_acc:
            self.best_val_acc, self.best_epoch = val_acc, self.history[-1]["epoch"]
            self.best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def last_epoch_line(self) -> str:
        h = self.history[-1]
        return (
            f"train loss {h['train_loss']:.3f} acc {h['train_acc']:.3f} | "
            f"val loss {h['val_loss']:.3f} acc {h['val_acc']:.3f}"
        )

    def out_of_patience(self, patience: int | None) -> bool:
        """True after an evaluated epoch `patience` epochs past the best one."""
        if not patience or self.pending or not self.history or "val_acc" not in self.history[-1]:
            return False
        return self.history[-1]["epoch"] - self.best_epoch >= patience


@dataclass
class Trainer:
    """The objects whose state a checkpoint saves, beside `Progress`."""

    model: nn.Module
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    gen: torch.Generator  # batch order and augmentation draws

    def save(self, run_dir: str | Path, cfg: RunConfig, run: Progress, elapsed: float) -> None:
        """Write a resumable checkpoint (the training figures read back first)."""
        save_checkpoint(
            run_dir,
            {
                "key": cfg.training_key(),
                "model": self.model.state_dict(),
                "optimizer": self.opt.state_dict(),
                "scheduler": self.sched.state_dict(),
                "scaler": self.scaler.state_dict(),
                "data_rng": self.gen.get_state(),
                "rng": {"torch": torch.get_rng_state()},  # nothing draws from a CUDA generator
                "history": run.history,
                "best": {"val_acc": run.best_val_acc, "epoch": run.best_epoch},
                "best_weights": run.best_weights,
                "elapsed": elapsed,
            },
        )

    def resume(self, run_dir: str | Path | None, cfg: RunConfig, device: torch.device) -> Progress:
        """Load the states of `run_dir`'s checkpoint of the same training, if any, and return its
        progress (else a fresh one). A checkpoint from any machine, GPU or not, resumes here
        (CUDA generator states it may carry are ignored: nothing uses them)."""
        state = load_checkpoint(run_dir, cfg.training_key()) if run_dir else None
        if not state:
            return Progress()
        tqdm.write(f"resuming {cfg.model} from epoch {len(state['history'])}/{cfg.epochs}")
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.gen.set_state(state["data_rng"])
        torch.set_rng_state(state["rng"]["torch"])
        best, weights = state["best"], state["best_weights"]
        weights = {k: to_device(v, device) for k, v in weights.items()} if weights else None
        return Progress(state["history"], best["val_acc"], best["epoch"], weights, state["elapsed"])


def final_test(
    model: nn.Module,
    run: Progress,
    test: Batches,
    arithmetic: Arithmetic,
    cfg: RunConfig,
    run_dir: str | Path | None,
) -> tuple[float, float]:
    """Test loss and accuracy of the best validation epoch's weights (saved as best.pt)."""
    model.load_state_dict(run.best_weights)
    if run_dir:
        save_weights(run_dir, run.best_weights)
    with out_of_memory_is_one_line(cfg):
        return evaluate(model, test, arithmetic, cfg.tta)


def init_head(model: nn.Module, cfg: RunConfig) -> None:
    """head_init "zero": the classifier's weights and bias set to 0 (BiT's zero_head), so that
    fine-tuning starts from uniform predictions; a resumed run loads its own afterwards."""
    if cfg.head_init == "zero":
        nn.init.zeros_(model.fc.weight)
        nn.init.zeros_(model.fc.bias)


def place(model: nn.Module, cfg: RunConfig) -> tuple[torch.device, Arithmetic]:
    """Move `model` to the run's device in the memory format of the arithmetic chosen there."""
    device = resolve_device(cfg.device)
    torch.backends.cudnn.benchmark = True  # fixed shapes: cuDNN may time and pick its kernels
    model.to(device)
    what = f"{cfg.model}, {cfg.stem} stem"
    arithmetic = choose_arithmetic(
        cfg.precision, cfg.channels_last, device, model, what, cfg.batch_size, cfg.image_size
    )
    model.to(memory_format=arithmetic.memory_format)
    return device, arithmetic


def train(
    model: nn.Module,
    data: Cifar10,
    cfg: RunConfig,
    run_dir: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train `model` on the run's subset of CIFAR-10 and return its results.

    Validates every `eval_every` epochs and after the last (with `cfg.tta`, as the final test),
    keeps the best validation epoch's weights (stopping `cfg.patience` epochs after it, if set)
    and tests them. With `run_dir`, checkpoints atomically so that a kill loses at most
    `cfg.checkpoint_every` seconds (for shorter epochs), and resumes from there (with identical
    results on a CPU; on a GPU cuDNN may pick other kernels).
    """
    started, started_at = clock(), time.time()
    init_head(model, cfg)
    # the device, its arithmetic, the data there, the optimizer, earlier sessions' progress
    device, arithmetic = place(model, cfg)
    batches = make_batches(data, cfg, device, arithmetic)
    train_b, val_b = batches["train"], batches["val"]
    opt, sched = make_optimizer(model, cfg, len(train_b))
    trainer = Trainer(model, opt, sched, arithmetic.scaler(), train_b.gen)
    run = trainer.resume(run_dir, cfg, device)
    every = eval_every(cfg, len(train_b) * train_b.batch_size, len(val_b.x))
    saved_epoch, last_save = run.epochs_done, clock()

    # epochs: train, evaluate on the cadence, checkpoint on the interval
    for epoch in range(run.epochs_done + 1, cfg.epochs + 1):
        epoch_started = clock()
        if run.out_of_patience(cfg.patience):
            tqdm.write(f"early stop: no better validation accuracy for {cfg.patience} epochs")
            break
        desc = f"{cfg.model} epoch {epoch}/{cfg.epochs}"
        # stdout, where the epoch lines go: in Jupyter stderr is an output of its own, which the
        # cleared bar (leave=False) left behind as an empty pink stripe
        bar = tqdm(train_b, desc, leave=False, disable=not progress, mininterval=2, file=sys.stdout)
        with out_of_memory_is_one_line(cfg):
            totals, seen = train_epoch(
                model, bar, opt, sched, trainer.scaler, arithmetic, cfg.label_smoothing
            )
        run.pending.append((epoch, sched.get_last_lr()[0], totals, seen))
        if epoch % every == 0 or epoch == cfg.epochs:
            run.read_back(cfg)
            with out_of_memory_is_one_line(cfg):
                run.record_eval(model, *evaluate(model, val_b, arithmetic, cfg.tta))
            tqdm.write(f"{desc}: {run.last_epoch_line()}")
        # save now if waiting for the next epoch's end would leave more than the interval unsaved
        now = clock()
        if run_dir and now - last_save + (now - epoch_started) >= cfg.checkpoint_every:
            run.read_back(cfg)
            trainer.save(run_dir, cfg, run, run.elapsed + clock() - started)
            saved_epoch, last_save = epoch, clock()
    run.read_back(cfg)
    if run_dir and saved_epoch != run.epochs_done:  # the end of the run
        trainer.save(run_dir, cfg, run, run.elapsed + clock() - started)

    test_loss, test_acc = final_test(model, run, batches["test"], arithmetic, cfg, run_dir)
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
        "wall_time_s": run.elapsed + clock() - started,
        "started_at": started_at,  # this session's, in seconds since the epoch; the earlier
        **device_record(device),  # sessions of an interrupted run count in wall_time_s only
    }


def device_record(device: torch.device) -> dict[str, str]:
    """Where a run trained: the device as the whole machine numbers it ("cuda:3" even where
    CUDA_VISIBLE_DEVICES shows the kernel that GPU alone, as cuda:0), its name, and an anonymous
    id of the machine, which tells runs that shared a device from runs on two machines."""
    machine = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
    if device.type != "cuda":
        return {"device": "cpu", "device_name": cpu_name(), "machine": machine}
    index = device.index if device.index is not None else torch.cuda.current_device()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")
    physical = visible[index].strip() if index < len(visible) and visible[index].strip() else index
    name = torch.cuda.get_device_name(device)
    return {"device": f"cuda:{physical}", "device_name": name, "machine": machine}
