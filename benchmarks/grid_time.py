"""Where the time of each full-profile run goes, measured on this device, and the grid's predicted
wall time.

    python benchmarks/grid_time.py                    # CPU: capped batch and steps, minutes
    python benchmarks/grid_time.py --device cuda      # GPU: the recipes' own batches

For each configuration of the default 13-run grid's full profile (model and setting; the data
fraction changes only the counts), the training loop's own code runs on synthetic uint8 images:
- training images/s: `train_epoch` over `Batches` (crop, flip, normalize, upsample, the step),
  after a warm-up pass (cuDNN's kernel choice, the allocator);
- evaluation images/s: `evaluate`;
- one checkpoint write (`Trainer.save`: model, optimizer, best weights, fsynced) and one best.pt.
Each run's wall time is then predicted from its recipe: epochs x steps x batch training images,
its evaluations (the `max_evals` and `eval_share` cadence) of the validation images and the
final test, its checkpoints (every `checkpoint_every` seconds and the end) and best.pt, with
each part's share.
The GPU prediction is what a real grid on that GPU is checked against. On a CPU the batch is
capped (--max-batch): its images/s stand in for the recipe's batch, which the table states.
Writes benchmarks/results/grid-time-<machine>.md (e.g. grid-time-cpu-amd-epyc.md).
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from benchmarks import output
from common.config import REPO, RunConfig
from common.data import CIFAR_MEAN, CIFAR_STD, Batches, fraction_title, make_splits
from common.grid import build_grid, run_config
from common.models import build_model
from common.results import MODEL_TITLES, hardware
from common.training import (
    BEST,
    LATEST,
    Progress,
    Trainer,
    eval_every,
    evaluate,
    make_optimizer,
    place,
    resolve_device,
    save_weights,
    train_epoch,
)

# Defaults per device type; every one can be set on the command line.
DEFAULTS = {
    "cpu": dict(max_batch=32, steps=2, warmup=1, eval_images=64),  # a few minutes on 2 cores
    "cuda": dict(max_batch=None, steps=20, warmup=5, eval_images=5000),
}
FRACTIONS = (1 / 16, 0.5, 1.0)  # the default grid's
CIFAR_TRAIN, CIFAR_TEST = 50_000, 10_000


@dataclass
class Speeds:
    """What one configuration measured."""

    batch: int
    precision: str
    train_ips: float
    eval_ips: float
    checkpoint_s: float
    checkpoint_bytes: int
    best_s: float
    best_bytes: int


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = p.add_argument
    add("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    add("--settings", default="scratch,pretrained", help="comma list of: scratch, pretrained")
    add("--models", default=None, help="comma list of models (default: the 13-run grid's)")
    add("--precision", default="auto", help="auto, bf16, fp16 or fp32 (default: the recipe's)")
    add("--max-batch", type=int, default=None, help="cap on the batch (default: 32 on a CPU)")
    add("--steps", type=int, default=None, help="timed training steps per configuration")
    add("--warmup", type=int, default=None, help="untimed training steps first")
    add("--eval-images", type=int, default=None, help="images timed in evaluation")
    add("--out", default=None, help="Markdown file (default under benchmarks/results)")
    return p.parse_args(argv)


def measure(cfg: RunConfig, args: argparse.Namespace) -> Speeds:
    """Train, evaluate and checkpoint one configuration (its batch capped at `--max-batch`) on
    random uint8 CIFAR-sized images on the device, batched as the training loop does."""
    batch = min(cfg.batch_size, args.max_batch or cfg.batch_size)
    cfg = replace(cfg, batch_size=batch)
    model = build_model(cfg.model, stem=cfg.stem, seed=0)
    device, arithmetic = place(model, cfg)
    opt, sched = make_optimizer(model, cfg, args.steps)
    trainer = Trainer(model, opt, sched, arithmetic.scaler(), torch.Generator())

    def batches(n: int, train: bool) -> Batches:
        gen = torch.Generator().manual_seed(0)
        x = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=gen)
        y = torch.randint(0, 10, (n,), generator=gen)
        return Batches(
            x.to(device), y.to(device), batch, train=train, mean=CIFAR_MEAN, std=CIFAR_STD,
            image_size=cfg.image_size, gen=gen, memory_format=arithmetic.memory_format,
        )  # fmt: skip

    def train_pass(steps: int) -> float:
        data = batches(steps * batch, True)
        return output.timed(
            device, lambda: train_epoch(model, data, opt, sched, trainer.scaler, arithmetic, 0.0)
        )

    train_pass(args.warmup)
    train_ips = args.steps * batch / train_pass(args.steps)
    evals = batches(args.eval_images, False)
    evaluate(model, evals, arithmetic)  # warm-up: evaluation kernels
    eval_ips = args.eval_images / output.timed(device, lambda: evaluate(model, evals, arithmetic))
    best = {k: v.detach().clone() for k, v in model.state_dict().items()}
    with tempfile.TemporaryDirectory(dir=REPO) as tmp:
        run = Progress(best_weights=best)
        checkpoint_s = output.timed(device, lambda: trainer.save(tmp, cfg, run, 0.0))
        best_s = output.timed(device, lambda: save_weights(tmp, best))
        sizes = [(Path(tmp) / name).stat().st_size for name in (LATEST, BEST)]
    return Speeds(
        batch, arithmetic.describe(), train_ips, eval_ips, checkpoint_s, sizes[0], best_s, sizes[1]
    )


def predict(cfg: RunConfig, s: Speeds) -> dict[str, float]:
    """Seconds of each part of one run, and the counts behind them."""
    labels = torch.arange(10).repeat_interleave(CIFAR_TRAIN // 10)  # CIFAR-10's class counts
    steps = len(make_splits(labels, cfg.val_size, cfg.data_fraction, 0).train) // cfg.batch_size
    steps = min(steps, cfg.steps_per_epoch or steps)
    val = min(cfg.val_size, (cfg.eval_images or 2 * cfg.val_size) // 2)
    every = eval_every(cfg, steps * cfg.batch_size, val)
    evaluations = sum(e % every == 0 or e == cfg.epochs for e in range(1, cfg.epochs + 1))
    train_images = cfg.epochs * steps * cfg.batch_size
    train_s = train_images / s.train_ips
    eval_s = (evaluations * val + (cfg.eval_images or CIFAR_TEST)) / s.eval_ips
    checkpoints = math.floor((train_s + eval_s) / max(cfg.checkpoint_every, 1e-9)) + 1
    checkpoints = min(checkpoints, cfg.epochs)
    ckpt_s = checkpoints * s.checkpoint_s + s.best_s
    return dict(
        train=train_s,
        eval=eval_s,
        checkpoint=ckpt_s,
        total=train_s + eval_s + ckpt_s,
        epochs=cfg.epochs,
        evaluations=evaluations,
        eval_per_train=evaluations * val / train_images,
        checkpoints=checkpoints,
        gb_written=(checkpoints * s.checkpoint_bytes + s.best_bytes) / 1e9,
    )


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def report(rows: list[tuple], speeds: dict, args: argparse.Namespace, command: str) -> str:
    lines = output.header(
        f"Full-profile grid time, {hardware()}",
        command,
        f"hardware: {hardware()}; 1-min load average at start {args.load:.2f}",
        f"software: {output.software()}",
        f"{output.measured()}, one run each, on synthetic images; {args.warmup} warm-up + "
        f"{args.steps} timed training steps, {args.eval_images} evaluation images",
        "predicted: from the full recipe's counts; checkpoints every `checkpoint_every` "
        "seconds and at the end, plus best.pt",
    ) + [
        "| configuration | batch timed (recipe) | arithmetic | train images/s | eval images/s "
        "| checkpoint write | checkpoint size |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for (setting, model), (s, cfg) in speeds.items():
        lines.append(
            f"| {MODEL_TITLES[model]} {setting}, {cfg.stem} stem, {cfg.image_size} px "
            f"| {s.batch} ({cfg.batch_size}) | {s.precision} | {s.train_ips:,.1f} "
            f"| {s.eval_ips:,.1f} | {s.checkpoint_s:.2f} s | {s.checkpoint_bytes / 1e6:,.0f} MB |"
        )
    lines += [
        "",
        "| run | epochs | evaluations | eval / train images | checkpoints (GB written) "
        "| predicted time | train | eval | checkpoints |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, p in rows:
        lines.append(
            f"| {name} | {p['epochs']} | {p['evaluations']} | {p['eval_per_train']:.2f} "
            f"| {p['checkpoints']} ({p['gb_written']:.2f}) | {minutes(p['total'])} | "
            + " | ".join(f"{100 * p[k] / p['total']:.1f}%" for k in ("train", "eval", "checkpoint"))
            + " |"
        )
    total = sum(p["total"] for _, p in rows)
    lines += ["", f"Predicted grid: {minutes(total)} on one device, runs one after another."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> str:
    """Measure each (setting, model) of the grid once and predict each of its runs from it."""
    args = parse_args(argv)
    args.load = os.getloadavg()[0]
    with output.one_line_errors("grid_time.py"):
        device = resolve_device(args.device)
        output.settle(args, DEFAULTS[device.type], dict(steps=1, warmup=1, eval_images=1))
        settings = [s.strip() for s in args.settings.split(",") if s.strip()]
        models = [m.strip() for m in args.models.split(",")] if args.models else None
        grid = build_grid(settings, models, list(FRACTIONS), [0])
        options = dict(profile="full", device=str(device), precision=args.precision)
        runs = [(run, run_config(run, tempfile.gettempdir(), **options)) for run in grid]
    speeds: dict[tuple[str, str], tuple[Speeds, RunConfig]] = {}
    rows = []
    for run, cfg in runs:
        if (run.setting, run.model) not in speeds:
            print(f"measuring {run.model} {run.setting} ...", flush=True)
            speeds[(run.setting, run.model)] = (measure(cfg, args), cfg)
        name = f"{run.setting} {MODEL_TITLES[run.model]} {fraction_title(run.fraction)}"
        rows.append((name, predict(cfg, speeds[(run.setting, run.model)][0])))
    out = Path(args.out or output.default_out("grid-time", device))
    output.write_result(out, report(rows, speeds, args, output.command_line("grid_time.py", argv)))
    return str(out)


if __name__ == "__main__":
    main()
