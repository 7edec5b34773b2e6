"""The commands behind every committed GPU number and every recipe check, in the order to run
them, each with its estimated time on one NVIDIA H200; for anyone with a GPU and a time limit.

    python benchmarks/plan.py --list                      # the commands, estimates, what is done
    python benchmarks/plan.py --budget 3600 --dry-run     # what would start in an hour
    python benchmarks/plan.py --budget 3600 --weights weights/resnet50-keras-v1.pth
    python benchmarks/plan.py --pack results.tar.gz       # the results, without weights or data

`--budget SECONDS` starts, in order, each command that is not done and whose estimate still
fits in what is left; what is done is read from the runs' own records (each run's metrics.json,
a sweep's runs' included; a benchmark's result file), so the same call resumes where the last
stopped.
A command that starts within the budget may end after it: every run inside it resumes from its
last checkpoint when interrupted. Each line can also be run by hand, as printed by --list.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks import recipe_sweep
from benchmarks.output import RESULTS, machine_name
from common.config import REPO, make_config
from common.data import parse_fraction
from common.runner import State, build_grid, run_config, state
from common.training import resolve_device

# Seconds per run on one H200 = epoch-equivalents (45,000 training images each) x PER_EPOCH x
# MARGIN (+ FIXED for fine-tuning). Fitted to runs of the former recipes, torch 2.11, bf16 +
# channels-last (wall_time_s of each metrics.json): ResNet-18 and ResNet-50 from scratch,
# results/runs-full-nvidia-h200 (seeds 1, 2: 1/16 5.8 s and 19.7-20.1 s, 100% 23.3-24.1 s and
# 79.5-79.6 s); ResNet-50 fine-tuned from Keras' weights at 128 px, one seed (runs not
# committed): 1/16 37 s, 50% 75 s, 100% 104 s over 7.5, 15 and 30 epoch-equivalents.
PER_EPOCH = {"resnet18": 0.92, "resnet50": 3.06, "finetune": 2.98}
FINETUNE_FIXED = 14.7
# Other depths scale their block type's PER_EPOCH by forward GFLOPs (torchvision's, 224 px).
GFLOPS = {
    "resnet18": 1.81,
    "resnet34": 3.66,
    "resnet50": 4.09,
    "resnet101": 7.80,
    "resnet152": 11.51,
}
# Allowances, not measurements: a notebook kernel's or a process's start, and a margin for what
# the former recipes lacked (flip test-time augmentation, cutout, MixUp).
START_S = 20.0
MARGIN = 1.25
GRID = "1/16,0.5,1"  # the seed's three data sizes
LADDER = "1/16,0.25,1"  # the model-size ladder's


def run_seconds(setting: str, model: str, fraction: float) -> float:
    """The estimated seconds of one full-profile run, its start included."""
    epochs = make_config(model, fraction, setting == "pretrained", profile="full").epochs
    equivalents = epochs * fraction
    if setting == "pretrained":
        return START_S + (FINETUNE_FIXED + equivalents * PER_EPOCH["finetune"]) * MARGIN
    base = "resnet18" if model in ("resnet18", "resnet34") else "resnet50"
    per_epoch = PER_EPOCH[base] * GFLOPS[model] / GFLOPS[base]
    return START_S + equivalents * per_epoch * MARGIN


@dataclass(frozen=True)
class Step:
    """One command of the plan, what it answers, and how its records say it is done."""

    why: str
    command: str  # a plain command line; {data}, {out}, {weights}, {machine} filled in
    seconds: float
    done: Callable[[argparse.Namespace, str], bool]


def grid_step(why: str, settings: str, models: str, fractions: str, seeds: str, extra: str = ""):
    """A run_all.py call over the full profile; done when each of its runs is."""
    runs = build_grid(
        settings.split(","),
        models.split(","),
        [parse_fraction(f) for f in fractions.split(",")],
        [int(s) for s in seeds.split(",")],
    )
    weights = "--weights resnet50={weights} " if "pretrained" in settings else ""
    command = (
        f"python run_all.py --profile full --data-dir {{data}} --output-dir {{out}} "
        f"--settings {settings} --models {models} --fractions {fractions} --seeds {seeds} "
        f"{weights}{extra}"
    ).strip()

    def done(args: argparse.Namespace, machine: str) -> bool:
        if "pretrained" in settings and not Path(args.weights).is_file():
            return False  # nothing fine-tuned can be done without the weights
        for run in runs:
            own = dict(weights=args.weights, weights_path=args.weights) if run.pretrained else {}
            cfg = run_config(run, args.out, profile="full", data_dir=args.data, **own)
            if state(cfg) != State.DONE:
                return False
        return True

    return Step(why, command, sum(run_seconds(r.setting, r.model, r.fraction) for r in runs), done)


def sweep_step(why: str, name: str, model: str, runs: list[str], weights: bool = False):
    """A recipe_sweep.py call at 100%, seed 0, on all 5,000 validation images; done when each
    of its runs is (the runs the same command line describes)."""
    setting = runs[0].split()[0]
    flags = " ".join(f"--run {shlex.quote(r)}" for r in runs)
    command = (
        f"python benchmarks/recipe_sweep.py --profile full --data-dir {{data}} --model {model} "
        f"--fraction 1 --eval-images none --name {name} {flags}"
        + (" --weights resnet50={weights} --weights-label 'Keras ResNet50 v1'" if weights else "")
    )

    factor = sum(int(r.split("epochs=")[1]) / 26 if "epochs=" in r else 1 for r in runs)
    seconds = run_seconds(setting, "resnet50" if setting == "pretrained" else model, 1.0) * factor

    def done(args: argparse.Namespace, machine: str) -> bool:
        if weights and not Path(args.weights).is_file():
            return False  # nothing fine-tuned can be done without the weights
        sweep = recipe_sweep.parse_args(
            shlex.split(command.format(data=args.data, weights=args.weights))[2:]
        )
        return all(state(cfg) == State.DONE for _, _, cfg in recipe_sweep.sweep_runs(sweep))

    return Step(why, command, seconds, done)


def result_step(why: str, command: str, file: str, seconds: float) -> Step:
    """A benchmark that writes one result file; done when the file is there."""
    path = f"benchmarks/results/{file}"
    return Step(
        why,
        f"{command} --out {path}",
        seconds,
        lambda args, machine: (REPO / path.format(machine=machine)).exists(),
    )


STEPS = [
    # The fine-tuned half (direct: no notebook stack needed beside the weights)
    grid_step("fine-tuned ResNet-50, 3 sizes x 3 seeds", "pretrained", "resnet50", GRID, "0,1,2",
              "--direct"),
    # The from-scratch grid through the notebooks, as the README tells users
    grid_step("ResNet-18 from scratch, 3 sizes x 3 seeds", "scratch", "resnet18", GRID, "0,1,2"),
    grid_step("ResNet-50 from scratch, 3 sizes, seed 0", "scratch", "resnet50", GRID, "0"),
    grid_step("ResNet-50 from scratch, 3 sizes, seeds 1, 2", "scratch", "resnet50", GRID, "1,2"),
    # The checks: twice the budget on validation; ResNet-50's learning rate; speed
    sweep_step("budget-bound? ResNet-18 at twice its budget", "check-budget-resnet18",
               "resnet18", ["scratch", "scratch epochs=52"]),
    sweep_step("budget-bound? ResNet-50 at twice its budget", "check-budget-resnet50",
               "resnet50", ["scratch", "scratch epochs=52"]),
    sweep_step("budget-bound? fine-tuning at twice its steps", "check-budget-finetune",
               "resnet50", ["pretrained", "pretrained epochs=34"], weights=True),
    sweep_step("ResNet-50's lr: 0.1 and 0.4 beside 0.2", "check-lr-resnet50", "resnet50",
               ["scratch lr=0.1", "scratch lr=0.4"]),
    result_step("images/s and share of peak, eager and torch.compile",
                "python benchmarks/throughput.py --models resnet18,resnet50 --compile",
                "throughput-compile-{machine}.md", 180.0),
    # The model-size ladder
    grid_step("ResNet-34 and ResNet-101 from scratch, seed 0", "scratch", "resnet34,resnet101",
              LADDER, "0"),
    grid_step("ResNet-152 from scratch, seed 0", "scratch", "resnet152", LADDER, "0"),
    grid_step("ResNet-18 and ResNet-50 at 1/4, seed 0", "scratch", "resnet18,resnet50", "0.25",
              "0"),
]  # fmt: skip


def line(step: Step, args: argparse.Namespace, machine: str) -> str:
    """The step's command as it would run here."""
    return step.command.format(data=args.data, out=args.out, weights=args.weights, machine=machine)


def run_plan(args: argparse.Namespace, machine: str) -> int:
    """Start, in order, each command not done whose estimate fits in what is left of the budget."""
    started, failed = time.monotonic(), 0
    for step in STEPS:
        if step.done(args, machine):
            continue
        left = args.budget - (time.monotonic() - started)
        if step.seconds > left:
            print(f"skipped (about {step.seconds:.0f} s, {max(left, 0):.0f} s left): {step.why}")
            continue
        command = line(step, args, machine)
        print(f"{'would start' if args.dry_run else 'starting'} ({step.seconds:.0f} s): {command}")
        if not args.dry_run:
            argv = [sys.executable, *shlex.split(command)[1:]]
            failed += subprocess.run(argv, cwd=REPO).returncode != 0
    return 1 if failed else 0


def pack(file: Path, args: argparse.Namespace) -> None:
    """A tarball of the results: run folders, result files, figures; no weights, no data."""
    skip = (".pt", ".pth", ".tmp")
    with tarfile.open(file, "w:gz") as tar:
        for folder in (Path(args.out).resolve(), RESULTS, REPO / "results"):
            if folder.exists():
                name = folder.relative_to(REPO) if folder.is_relative_to(REPO) else folder.name
                tar.add(
                    folder,
                    name,
                    filter=lambda t: None if t.name.endswith(skip) or "/data/" in t.name else t,
                )
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
    machine = machine_name(resolve_device("auto"))
    if args.list or (args.budget is None and args.pack is None):
        for step in STEPS:
            mark = "done" if step.done(args, machine) else f"{step.seconds:5.0f} s"
            print(f"{mark:>8}  {step.why}\n          {line(step, args, machine)}")
    status = run_plan(args, machine) if args.budget is not None else 0
    if args.pack is not None:
        pack(args.pack, args)
    return status


if __name__ == "__main__":
    sys.exit(main())
