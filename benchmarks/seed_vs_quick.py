"""Our quick recipe against the seed's recipe, on the same CPU for the same wall-clock time.

    python benchmarks/seed_vs_quick.py --data-dir data            # ResNet-18, 1/16 of the data

Ours: `common.train` with the quick profile (ImageNet stem at 32 px, AdamW, decoupled weight
decay, warm-up + cosine, batched augmentation on uint8 tensors). Seed-style: the usual
pipeline (PIL images, torchvision transforms, DataLoader with workers) and Adam at 1e-3, trained
for exactly the wall-clock time ours took. Both start from the same initialisation and are scored
on the run's 5,000 validation images with the same evaluation code: this comparison chose the
quick recipe, so the test set stays out of it. Writes benchmarks/results/seed-vs-quick-cpu.md.
"""

from __future__ import annotations

import argparse
import time
from functools import partial
from typing import Any

import torch
from torch.utils.data import DataLoader

from benchmarks import output
from benchmarks.pipeline import PilCifar  # the usual pipeline
from common import build_model, load_cifar10, make_config, make_splits, train
from common.config import REPO, RunConfig
from common.data import CIFAR_MEAN, CIFAR_STD, Batches, fraction_title
from common.results import hardware
from common.training import Arithmetic, evaluate, train_step

SEED_RECIPE = dict(
    lr=1e-3,  # torch.optim.Adam's, default betas
    batch_size=64,  # the quick recipe's batch size
    workers=2,  # DataLoader worker processes: one per core here
    stem="imagenet",  # torchvision's stem at 32 px, as the seed ran it
)
FP32 = Arithmetic("fp32", False, "cpu")  # the seed-style training and both evaluations


def train_seed_style(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, budget_s: float
) -> tuple[int, float]:
    """Train with Adam and the usual DataLoader until `budget_s` has passed; return the images
    seen and the seconds used."""
    loader = DataLoader(
        PilCifar(x, y, image_size=32),
        batch_size=SEED_RECIPE["batch_size"],
        shuffle=True,
        num_workers=SEED_RECIPE["workers"],
        drop_last=True,
        persistent_workers=True,
    )
    opt = torch.optim.Adam(model.parameters(), lr=SEED_RECIPE["lr"])
    step = partial(train_step, model, opt, FP32.scaler(), FP32)
    start, seen = time.perf_counter(), 0
    model.train()
    while time.perf_counter() - start < budget_s:
        for xb, yb in loader:
            step(xb, yb)
            seen += len(yb)
            if time.perf_counter() - start >= budget_s:
                break
    return seen, time.perf_counter() - start


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=str(REPO / "data"))
    p.add_argument("--model", default="resnet18")
    p.add_argument("--fraction", default="1/16")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(output.RESULTS / "seed-vs-quick-cpu.md"))
    return p.parse_args(argv)


def compare(args: argparse.Namespace, cfg: RunConfig) -> dict[str, Any]:
    """Train ours, then the seed-style recipe for as long from the same initial weights; both
    scored on the run's validation images."""
    data = load_cifar10(args.data_dir, download=False)
    splits = make_splits(data.train_y, cfg.val_size, cfg.data_fraction, cfg.seed)
    val_x, val_y = data.train_x[splits.val], data.train_y[splits.val]
    val = Batches(val_x, val_y, 500, train=False, mean=CIFAR_MEAN, std=CIFAR_STD)
    torch.manual_seed(args.seed)
    ours = build_model(cfg.model, stem=cfg.stem)
    init = {k: v.clone() for k, v in ours.state_dict().items()}
    result = train(ours, data, cfg, progress=False)
    seed_model = build_model(cfg.model, stem=SEED_RECIPE["stem"])
    seed_model.load_state_dict(init)
    train_x, train_y = data.train_x[splits.train], data.train_y[splits.train]
    seen, used = train_seed_style(seed_model, train_x, train_y, result["wall_time_s"])
    return dict(
        result=result,
        val_images=len(val_x),
        ours_acc=evaluate(ours, val, FP32)[1],
        ours_seen=len(result["history"]) * result["steps_per_epoch"] * cfg.batch_size,
        seed_acc=evaluate(seed_model, val, FP32)[1],
        seed_seen=seen,
        seed_s=used,
    )


def report(args: argparse.Namespace, cfg: RunConfig, m: dict[str, Any], command: str) -> str:
    result, budget = m["result"], m["result"]["wall_time_s"]
    lines = output.header(
        f"Quick recipe vs the seed's recipe, {cfg.model}, "
        f"{fraction_title(cfg.data_fraction)} of CIFAR-10",
        command,
        f"hardware: {hardware()}; torch {torch.__version__}",
        f"data: {args.data_dir} ({result['train_images']:,} training images, "
        f"seed {cfg.seed}); validation accuracy on the run's {m['val_images']:,} validation "
        "images (no test accuracy is used), same evaluation code, same initial weights",
        f"budget: {budget:.1f} s of wall-clock training each (ours: {cfg.epochs} epochs x "
        f"{result['steps_per_epoch']} steps incl. its validation passes on "
        f"{result['val_images']:,} images)",
    )
    lines += [
        "| recipe | pipeline | optimizer | images trained | wall time s | val acc % |",
        "|---|---|---|---:|---:|---:|",
        f"| ours (quick) | uint8 tensors, batched crop+flip | {cfg.optimizer} {cfg.lr:g}, "
        f"wd {cfg.weight_decay:g}, label smoothing {cfg.label_smoothing:g}, warm-up+cosine "
        f"| {m['ours_seen']:,} | {budget:.1f} | {100 * m['ours_acc']:.2f} |",
        f"| seed-style | PIL + transforms + DataLoader({SEED_RECIPE['workers']} workers) "
        f"| Adam {SEED_RECIPE['lr']:g} | {m['seed_seen']:,} | {m['seed_s']:.1f} "
        f"| {100 * m['seed_acc']:.2f} |",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    args = parse_args(argv)
    cfg = make_config(
        args.model, args.fraction, seed=args.seed, profile="quick", device="cpu", precision="fp32"
    )
    text = report(args, cfg, compare(args, cfg), output.command_line("seed_vs_quick.py", argv))
    output.write_result(args.out, text)
    return text


if __name__ == "__main__":
    main()
