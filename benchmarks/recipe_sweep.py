"""Recipe choices measured on validation accuracy: one model and fraction, several variants.

    python benchmarks/recipe_sweep.py --data-dir data --model resnet50 --fraction 1/16 \\
        --weights resnet50=/tmp/weights/resnet50-keras-v1.pth --name finetune-keras \\
        --run "pretrained image_size=64 optimizer=sgd lr=0.01" --run "scratch image_size=64"

On a GPU, the full profile, scored on the whole 5,000-image validation split:

    python benchmarks/recipe_sweep.py --profile full --model resnet50 --fraction 1 \
        --eval-images none --seeds 0,1,2 --name full-scratch-resnet50 \
        --run "scratch" --run "scratch lr=0.1" --run "scratch epochs=52"

Each `--run` is a setting (scratch or pretrained) and the recipe values it overrides, on top of
`--profile` (quick by default). Every run trains with `common.train` on `--device` (auto: the
GPU when torch can use one) and is scored on validation images only (`eval_images` / 2 of the
validation split, fixed and stratified; `--eval-images none`: all of it): its test accuracy is
not recorded, so these tables can choose recipe values. Finished runs are kept in
benchmarks/results/<name>-<machine>.jsonl (the machine: the device's model, `cpu-<model>` on a
CPU), each with its command, hardware and seed, so an interrupted sweep resumes; the table, over
seeds (mean ± sd), goes beside it as .md.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
from pathlib import Path
from typing import Any

import torch

from benchmarks.output import RESULTS, machine_name
from common import build_model, load_cifar10, make_config, train
from common.config import LIFT, REPO, parse_sets
from common.files import write_text
from common.results import hardware
from common.training import resolve_device

EVAL_IMAGES = 4000  # 2,000 validation images: a standard error near 1.1 points at 50% accuracy


def parse_run(spec: str) -> tuple[str, dict[str, Any]]:
    """'pretrained image_size=64 lr=0.01' -> ('pretrained', {'image_size': 64, 'lr': 0.01}),
    the values read as run_all.py's --set reads them (common.config.parse_sets)."""
    setting, *pairs = spec.split()
    if setting not in ("scratch", "pretrained") or not all("=" in p for p in pairs):
        raise SystemExit(f"--run {spec!r}: write 'scratch|pretrained key=value ...'")
    return setting, parse_sets(pairs)


def run_one(data: Any, args: argparse.Namespace, spec: str, seed: int) -> dict[str, Any]:
    """Train one variant for one seed; its validation figures and time."""
    setting, values = parse_run(spec)
    weights = dict(w.split("=", 1) for w in args.weights)
    cfg = make_config(
        model=args.model,
        data_fraction=args.fraction,
        pretrained=setting == "pretrained",
        seed=seed,
        profile=args.profile,
        device=args.device,
        weights_path=weights.get(args.model) if setting == "pretrained" else None,
        **{"eval_images": args.eval_images, **values},
    )
    model = build_model(
        cfg.model,
        cfg.pretrained,
        stem=cfg.stem,
        weights_path=cfg.weights_path,
        seed=seed,
        weights=cfg.weights,
    )
    result = train(model, data, cfg, progress=False)
    return {
        "run": spec,
        "seed": seed,
        "model": cfg.model,
        "fraction": cfg.data_fraction,
        "profile": cfg.profile,
        "val_acc": 100 * result["best_val_acc"],
        "best_epoch": result["best_epoch"],
        "val_images": result["val_images"],
        "images_trained": len(result["history"]) * result["steps_per_epoch"] * cfg.batch_size,
        "wall_time_s": result["wall_time_s"],
        "precision": result["precision"],
        "hardware": hardware(),
        "torch": torch.__version__,
        "command": args.command,
    }


def table(rows: list[dict[str, Any]], runs: list[str]) -> str:
    """One line per variant: mean ± sd of validation accuracy over its seeds."""
    lines = [
        "| run | seeds | val acc % (mean ± sd) | per seed | images trained | wall time s |",
        "|---|---:|---:|---|---:|---:|",
    ]
    for spec in runs:
        mine = [r for r in rows if r["run"] == spec]
        if not mine:
            continue
        accs = [r["val_acc"] for r in mine]
        sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
        lines.append(
            f"| {spec} | {len(mine)} | {statistics.mean(accs):.1f} ± {sd:.1f} | "
            f"{', '.join(f'{a:.1f}' for a in accs)} | {mine[0]['images_trained']:,} | "
            f"{statistics.mean(r['wall_time_s'] for r in mine):.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=str(REPO / "data"))
    p.add_argument("--model", default="resnet18")
    p.add_argument("--fraction", default="1/16")
    p.add_argument("--profile", default="quick")
    p.add_argument("--seeds", default="0", help="comma-separated, e.g. 0,1,2")
    p.add_argument("--run", action="append", required=True, help="setting key=value ...")
    p.add_argument("--weights", action="append", default=[], help="MODEL=FILE")
    p.add_argument("--weights-label", default="", help="what the weights are, for the table")
    p.add_argument("--name", required=True, help="result file stem, e.g. finetune-keras")
    p.add_argument("--out-dir", default=str(RESULTS))
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument(
        "--eval-images",
        default=str(EVAL_IMAGES),
        help="cap on test images; validation gets half (none: the whole 5,000-image split)",
    )
    args = p.parse_args(argv)
    args.eval_images = LIFT if args.eval_images.lower() == LIFT else int(args.eval_images)
    args.command = f"python benchmarks/recipe_sweep.py {shlex.join(argv or sys.argv[1:])}"
    stem = Path(args.out_dir) / f"{args.name}-{machine_name(resolve_device(args.device))}"
    log = stem.with_suffix(".jsonl")
    rows = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    data = load_cifar10(args.data_dir, download=False)
    for spec in args.run:
        for seed in (int(s) for s in args.seeds.split(",")):
            if any(r["run"] == spec and r["seed"] == seed for r in rows):
                continue
            rows.append(run_one(data, args, spec, seed))
            with log.open("a") as f:  # one line per finished run: the sweep resumes from here
                f.write(json.dumps(rows[-1]) + "\n")
            print(json.dumps(rows[-1]), flush=True)
    done = list(dict.fromkeys(r["run"] for r in rows))
    text = "\n".join(
        [
            f"# Recipe sweep: {args.model}, {args.fraction} of CIFAR-10, {args.profile} profile",
            "",
            f"- command: `{args.command}`",
            f"- hardware: {hardware()}; torch {torch.__version__}",
            f"- weights: {args.weights_label or 'none'}",
            f"- scored on {rows[0]['val_images'] if rows else 0:,} fixed validation images "
            "(best evaluated epoch); no test accuracy is recorded",
            "",
            table(rows, done),
            "",
        ]
    )
    write_text(stem.with_suffix(".md"), text)
    print(text)
    return text


if __name__ == "__main__":
    main()
