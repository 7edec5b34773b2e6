"""The training loop: SGD with warm-up and cosine decay, per-epoch evaluation and checkpoints."""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .checkpoint import load_checkpoint, save_checkpoint, save_weights
from .config import RunConfig
from .data import (
    CIFAR_MEAN,
    CIFAR_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    Batches,
    Cifar10,
    make_splits,
    stratified_subset,
)
from .errors import ConfigError, TrainingError


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' picks the GPU when there is one; asking for a GPU that is absent is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device {name!r} asked for but no GPU is visible: use --device cpu or auto"
            )
        if (device.index or 0) >= torch.cuda.device_count():
            raise ConfigError(
                f"device {name!r} does not exist: {torch.cuda.device_count()} GPU(s) visible"
            )
    return device


def lr_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    """Linear warm-up from ~0 to 1 over `warmup_steps`, then cosine decay to 0 at `total_steps`."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


@torch.no_grad()
def evaluate(model: nn.Module, batches: Batches) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of `model` over `batches`."""
    model.eval()
    loss_sum = torch.zeros((), device=batches.x.device)
    correct = torch.zeros((), device=batches.x.device, dtype=torch.long)
    n = 0
    for xb, yb in batches:
        with torch.autocast(xb.device.type, torch.bfloat16, enabled=xb.is_cuda):
            out = model(xb)
        loss_sum += F.cross_entropy(out.float(), yb, reduction="sum")
        correct += (out.argmax(1) == yb).sum()
        n += len(yb)
    return loss_sum.item() / n, correct.item() / n


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def train(
    model: nn.Module,
    data: Cifar10,
    cfg: RunConfig,
    run_dir: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train `model` on the run's subset of CIFAR-10 and return its results.

    Evaluates on the validation split after every epoch, keeps the weights with the best
    validation accuracy (optionally stopping after `cfg.patience` epochs without improvement),
    and reports the test accuracy of those weights. With `run_dir`, a checkpoint is written
    atomically after every epoch and an interrupted run resumes from it with identical results.
    Returns history (per-epoch train/val loss and accuracy), best_val_acc, best_epoch, test_acc,
    test_loss, image counts, wall_time_s and device.
    """
    started = time.perf_counter()
    device = resolve_device(cfg.device)
    splits = make_splits(data.train_y, cfg.val_size, cfg.data_fraction, cfg.seed)
    val_idx, test_idx = splits.val, torch.arange(len(data.test_y))
    if cfg.eval_images:
        val_idx = val_idx[stratified_subset(data.train_y[val_idx], cfg.eval_images // 2)]
        test_idx = stratified_subset(data.test_y, cfg.eval_images)
    mean, std = (IMAGENET_MEAN, IMAGENET_STD) if cfg.pretrained else (CIFAR_MEAN, CIFAR_STD)
    gen = torch.Generator().manual_seed(cfg.seed)

    def batches(x: torch.Tensor, y: torch.Tensor, train: bool) -> Batches:
        return Batches(
            x.to(device),
            y.to(device),
            cfg.batch_size,
            train=train,
            mean=mean,
            std=std,
            image_size=cfg.image_size,
            gen=gen,
            limit=cfg.steps_per_epoch if train else None,
        )

    train_b = batches(data.train_x[splits.train], data.train_y[splits.train], True)
    val_b = batches(data.train_x[val_idx], data.train_y[val_idx], False)
    test_b = batches(data.test_x[test_idx], data.test_y[test_idx], False)

    model.to(device, memory_format=torch.channels_last if device.type == "cuda" else None)
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]  # BN and biases: no weight decay
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if cfg.optimizer == "adamw":
        opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.momentum, 0.999))
    else:
        opt = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)
    total = cfg.epochs * len(train_b)
    warmup = min(total, max(1, round(cfg.warmup_epochs * len(train_b))))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, warmup, total))

    history: list[dict[str, float]] = []
    best: dict[str, Any] = {"val_acc": -1.0, "epoch": 0, "state": None}
    elapsed_before = 0.0
    key = cfg.training_key()
    state = load_checkpoint(run_dir, key) if run_dir else None
    if state:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        gen.set_state(state["data_rng"])
        _set_rng_state(state["rng"])
        history, best, elapsed_before = state["history"], state["best"], state["elapsed"]
        tqdm.write(f"resuming {cfg.model} from epoch {len(history)}/{cfg.epochs}")

    for epoch in range(len(history) + 1, cfg.epochs + 1):
        if best["epoch"] and cfg.patience and epoch - best["epoch"] > cfg.patience:
            tqdm.write(f"early stop: no better validation accuracy for {cfg.patience} epochs")
            break
        model.train()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        seen = 0
        bar = tqdm(
            train_b,
            desc=f"{cfg.model} epoch {epoch}/{cfg.epochs}",
            leave=False,
            disable=not progress,
            mininterval=2,
        )
        try:
            for xb, yb in bar:
                with torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
                    out = model(xb)
                    loss = F.cross_entropy(out.float(), yb, label_smoothing=cfg.label_smoothing)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                loss_sum += loss.detach() * len(yb)
                correct += (out.argmax(1) == yb).sum()
                seen += len(yb)
        except torch.OutOfMemoryError:
            raise TrainingError(
                f"out of GPU memory with batch_size {cfg.batch_size} at "
                f"image_size {cfg.image_size}: lower one of them"
            ) from None
        train_loss = loss_sum.item() / seen
        if not math.isfinite(train_loss):
            raise TrainingError(
                f"training loss became {train_loss} in epoch {epoch}: "
                f"the run diverged, lower lr (now {cfg.lr:g})"
            )
        val_loss, val_acc = evaluate(model, val_b)
        history.append(
            {
                "epoch": epoch,
                "train_loss": train_loss,
                "train_acc": correct.item() / seen,
                "val_loss": val_loss,
                "val_acc": val_acc,
                "lr": sched.get_last_lr()[0],
            }
        )
        if val_acc > best["val_acc"]:
            best = {
                "val_acc": val_acc,
                "epoch": epoch,
                "state": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
            }
        tqdm.write(
            f"{cfg.model} epoch {epoch}/{cfg.epochs}: train loss {train_loss:.3f} "
            f"acc {history[-1]['train_acc']:.3f} | val loss {val_loss:.3f} acc {val_acc:.3f}"
        )
        if run_dir:
            save_checkpoint(
                run_dir,
                {
                    "key": key,
                    "model": model.state_dict(),
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(),
                    "data_rng": gen.get_state(),
                    "rng": _rng_state(),
                    "history": history,
                    "best": best,
                    "elapsed": elapsed_before + time.perf_counter() - started,
                },
            )

    model.load_state_dict(best["state"])
    if run_dir:
        save_weights(run_dir, best["state"])
    test_loss, test_acc = evaluate(model, test_b)
    return {
        "history": copy.deepcopy(history),
        "best_epoch": best["epoch"],
        "best_val_acc": best["val_acc"],
        "test_acc": test_acc,
        "test_loss": test_loss,
        "train_images": len(splits.train),
        "val_images": len(val_idx),
        "test_images": len(test_idx),
        "steps_per_epoch": len(train_b),
        "wall_time_s": elapsed_before + time.perf_counter() - started,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
    }
