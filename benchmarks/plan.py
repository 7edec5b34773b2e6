"""The commands behind every GPU result and recipe check, in order, with their H200 estimates.

    python benchmarks/plan.py --list                      # the commands, estimates, what is done
    python benchmarks/plan.py --budget 3600 --dry-run     # what would start in an hour
    python benchmarks/plan.py --budget 3600 --weights weights/resnet50-keras-v1.pth
    python benchmarks/plan.py --pack results.tar.gz       # the results, without weights or data

`--budget SECONDS` starts, in order, each command not done whose estimate fits in what is left.
Done is read from the runs' own records, so the same call resumes where the last stopped.
"""

import argparse
import shlex
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import benchmarks
from benchmarks import recipe_sweep
from common.config import REPO, RunConfig
from common.data import parse_fraction
from common.models import flops_per_image
from common.runner import State, build_grid, run_config, state

# Seconds per epoch of 45,000 images on one H200, fitted to the former recipes' runs (README)
PER_EPOCH = {"resnet18": 0.92, "resnet50": 3.06, "finetune": 2.98}
FINETUNE_FIXED = 14.7  # seconds of a fine-tuned run beside its epochs, from the same fit
START_S = 20.0  # an allowance for a kernel's or a process's start
MARGIN = 1.25  # an allowance for what the former recipes lacked: flip TTA, cutout, MixUp
GRID = "1/16,0.5,1"  # the seed's three data sizes
LADDER = "1/16,0.25,1"  # the model-size ladder's


def run_seconds(cfg: RunConfig) -> float:
    """The estimated seconds of one run on the H200, its start included."""
    epochs = cfg.epochs * cfg.data_fraction
    if cfg.pretrained:
        return START_S + (FINETUNE_FIXED + epochs * PER_EPOCH["finetune"]) * MARGIN
    base = "resnet18" if cfg.model in ("resnet18", "resnet34") else "resnet50"
    ratio = flops_per_image(cfg.model) / flops_per_image(base)  # other depths scale by FLOPs
    return START_S + epochs * PER_EPOCH[base] * ratio * MARGIN


@dataclass(frozen=True)
class Step:
    """One command of the plan: what it answers, and the runs it makes (or its result file)."""

    why: str
    command: str  # a plain command line; {data}, {out}, {weights}, {machine} filled in
    runs: Callable[[argparse.Namespace], list[RunConfig]] | None = None
    seconds: float = 0.0  # a step without runs: its estimate


def grid(why: str, settings: str, models: str, fractions: str, seeds: str, extra: str = ""):
    """A run_all.py call over the full profile."""
    weights = "--weights resnet50={weights} " if settings == "pretrained" else ""
    command = (
        f"python run_all.py --profile full --data-dir {{data}} --output-dir {{out}} "
        f"--settings {settings} --models {models} --fractions {fractions} --seeds {seeds} "
        f"{weights}{extra}"
    )

    def runs(args: argparse.Namespace) -> list[RunConfig]:
        fracs = [parse_fraction(f) for f in fractions.split(",")]
        cells = build_grid([settings], models.split(","), fracs, [int(s) for s in seeds.split(",")])
        own = {"weights_path": args.weights} if settings == "pretrained" else {}
        return [run_config(r, args.out, profile="full", data_dir=args.data, **own) for r in cells]

    return Step(why, command.strip(), runs)


def sweep(why: str, name: str, model: str, variants: list[str], weights: bool = False) -> Step:
    """A recipe_sweep.py call at 100%, seed 0, on all 5,000 validation images."""
    command = (
        f"python benchmarks/recipe_sweep.py --profile full --data-dir {{data}} --model {model} "
        f"--fraction 1 --eval-images none --name {name} "
        + " ".join(f"--run {shlex.quote(v)}" for v in variants)
        + (" --weights resnet50={weights} --weights-label 'Keras ResNet50 v1'" if weights else "")
    )

    def runs(args: argparse.Namespace) -> list[RunConfig]:
        argv = shlex.split(command.format(data=args.data, weights=args.weights))[2:]
        return [cfg for _, _, cfg in recipe_sweep.sweep_runs(recipe_sweep.parse_args(argv))]

    return Step(why, command, runs)


STEPS = [
    # The fine-tuned half (direct: no notebook stack needed beside the weights)
    grid("fine-tuned ResNet-50, 3 sizes x 3 seeds", "pretrained", "resnet50", GRID, "0,1,2",
         "--direct"),
    # The from-scratch grid through the notebooks, as the README tells users
    grid("ResNet-18 from scratch, 3 sizes x 3 seeds", "scratch", "resnet18", GRID, "0,1,2"),
    grid("ResNet-50 from scratch, 3 sizes, seed 0", "scratch", "resnet50", GRID, "0"),
    grid("ResNet-50 from scratch, 3 sizes, seeds 1, 2", "scratch", "resnet50", GRID, "1,2"),
    # The checks: twice the budget on validation; ResNet-50's learning rate; speed
    sweep("budget-bound? ResNet-18 at twice its budget", "check-budget-resnet18",
          "resnet18", ["scratch", "scratch epochs=52"]),
    sweep("budget-bound? ResNet-50 at twice its budget", "check-budget-resnet50",
          "resnet50", ["scratch", "scratch epochs=52"]),
    sweep("budget-bound? fine-tuning at twice its steps", "check-budget-finetune",
          "resnet50", ["pretrained", "pretrained epochs=34"], weights=True),
    sweep("ResNet-50's lr: 0.1 and 0.4 beside 0.2", "check-lr-resnet50", "resnet50",
          ["scratch lr=0.1", "scratch lr=0.4"]),
    Step("images/s and share of peak, eager and torch.compile",
         "python benchmarks/throughput.py --models resnet18,resnet50 --compile "
         "--out benchmarks/results/throughput-compile-{machine}.md", seconds=180.0),
    # The model-size ladder
    grid("ResNet-34 and ResNet-101 from scratch, seed 0", "scratch", "resnet34,resnet101",
         LADDER, "0"),
    grid("ResNet-152 from scratch, seed 0", "scratch", "resnet152", LADDER, "0"),
    grid("ResNet-18 and ResNet-50 at 1/4, seed 0", "scratch", "resnet18,resnet50", "0.25", "0"),
]  # fmt: skip


def estimate(step: Step, args: argparse.Namespace) -> tuple[float, bool]:
    """(estimated seconds, done): its runs' records, or its result file, say whether it is."""
    if step.runs is None:  # a benchmark: done when the file after its --out exists
        return step.seconds, (REPO / shlex.split(step.command.format(**vars(args)))[-1]).exists()
    runs = step.runs(args)
    return sum(map(run_seconds, runs)), all(state(cfg) == State.DONE for cfg in runs)


def run_plan(args: argparse.Namespace) -> int:
    """Start, in order, each command not done whose estimate fits in what is left."""
    started, planned, failed = time.monotonic(), 0.0, 0
    for step in STEPS:
        seconds, done = estimate(step, args)
        left = args.budget - (time.monotonic() - started) - planned  # a dry run spends estimates
        if done or seconds > left:
            why = "done" if done else f"skipped (about {seconds:.0f} s, {max(left, 0):.0f} s left)"
            print(f"{why}: {step.why}")
            continue
        command = step.command.format(**vars(args))
        print(f"{'would start' if args.dry_run else 'starting'} ({seconds:.0f} s): {command}")
        planned += seconds if args.dry_run else 0.0
        if not args.dry_run:
            argv = [sys.executable, *shlex.split(command)[1:]]
            failed += subprocess.run(argv, cwd=REPO).returncode != 0
    return 1 if failed else 0


def pack(file: Path, out: str) -> None:
    """A tarball of the results: run folders, result files, figures; no weights, no data."""

    def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        skip = info.name.endswith((".pt", ".pth", ".tmp")) or "/data/" in info.name
        return None if skip else info

    with tarfile.open(file, "w:gz") as tar:
        for folder in (Path(out).resolve(), benchmarks.RESULTS, REPO / "results"):
            if folder.exists():
                name = folder.relative_to(REPO) if folder.is_relative_to(REPO) else folder.name
                tar.add(folder, name, filter=keep)
    print(f"packed {file}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--list", action="store_true", help="the commands, estimates and states")
    p.add_argument("--budget", type=float, default=None, help="seconds to start commands in")
    p.add_argument("--dry-run", action="store_true", help="with --budget: start nothing")
    p.add_argument("--pack", type=Path, default=None, metavar="FILE", help="a .tar.gz of results")
    p.add_argument("--data", default="data", help="folder holding cifar-10-batches-py/")
    p.add_argument("--out", default="runs", help="where the run folders go")
    p.add_argument("--weights", default="weights/resnet50-keras-v1.pth", help="Keras' ResNet-50")
    args = p.parse_args(argv)
    args.machine = benchmarks.machine("auto")
    if args.list or (args.budget is None and args.pack is None):
        for step in STEPS:
            seconds, done = estimate(step, args)
            mark = "done" if done else f"{seconds:5.0f} s"
            print(f"{mark:>8}  {step.why}\n          {step.command.format(**vars(args))}")
    status = run_plan(args) if args.budget is not None else 0
    if args.pack is not None:
        pack(args.pack, args.out)
    return status


if __name__ == "__main__":
    sys.exit(main())
