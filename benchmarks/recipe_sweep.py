"""Recipe choices measured on validation accuracy: one model and fraction, several variants.

    python benchmarks/recipe_sweep.py --data-dir data --model resnet50 --fraction 1/16 \\
        --weights resnet50=/tmp/weights/resnet50-keras-v1.pth --name finetune-keras \\
        --run "pretrained image_size=64 optimizer=sgd lr=0.01" --run "scratch image_size=64"

On a GPU, the full profile, scored on the whole 5,000-image validation split:

    python benchmarks/recipe_sweep.py --profile full --model resnet50 --fraction 1 \\
        --eval-images none --seeds 0,1,2 --name full-scratch-resnet50 \\
        --run "scratch" --run "scratch lr=0.1" --run "scratch epochs=52"

Each `--run` is a setting (scratch or pretrained) and the recipe values it overrides, on top of
`--profile` (quick by default). Each variant and seed is one run, executed as every run is, by
`common.runner.execute` (locked, skipped when done, resumed from its last checkpoint, a failure
kept in its failed.json), on `--device` (auto: the GPU when torch can use one), in
<out-dir>/<name>-<machine>/<variant>/seed<N>/ with its metrics.json (the machine: the
device's type and model, e.g. `cpu-amd-epyc`). Runs are scored on validation images only
(`eval_images` / 2 of the validation split, fixed and stratified; `--eval-images none`: all of
it): the table, over seeds (mean ± sd) for this call's variants, goes to <name>-<machine>.md and
shows no test accuracy, so that it can choose recipe values.
"""

from __future__ import annotations

import argparse
import re
import statistics
from pathlib import Path
from typing import Any

from benchmarks import output
from common.config import LIFT, REPO, RunConfig, make_config, parse_sets
from common.errors import ConfigError
from common.report import load_metrics
from common.runner import Run, State, execute, state
from common.training import resolve_device

EVAL_IMAGES = 4000  # 2,000 validation images: a standard error near 1.1 points at 50% accuracy


def parse_args(argv: list[str] | None) -> argparse.Namespace:
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
    p.add_argument("--out-dir", default=str(output.RESULTS))
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument(
        "--eval-images",
        default=str(EVAL_IMAGES),
        help="cap on test images; validation gets half (none: the whole 5,000-image split)",
    )
    args = p.parse_args(argv)
    args.run = list(dict.fromkeys(args.run))  # a variant given twice runs once
    args.eval_images = LIFT if args.eval_images.lower() == LIFT else int(args.eval_images)
    args.command = output.command_line("recipe_sweep.py", argv)
    return args


def parse_run(spec: str) -> tuple[str, dict[str, Any]]:
    """'pretrained image_size=64 lr=0.01' -> ('pretrained', {'image_size': 64, 'lr': 0.01}),
    the values read as run_all.py's --set reads them (common.config.parse_sets)."""
    setting, *pairs = spec.split()
    if setting not in ("scratch", "pretrained") or not all("=" in p for p in pairs):
        raise ConfigError(f"--run {spec!r}: write 'scratch|pretrained key=value ...'")
    return setting, parse_sets(pairs)


def seeds(text: str) -> list[int]:
    """'0,1,2' -> [0, 1, 2], each once; anything else a one-line ConfigError."""
    try:
        return list(dict.fromkeys(int(s) for s in text.split(",")))
    except ValueError:
        raise ConfigError(f"--seeds takes whole numbers and commas, got {text!r}") from None


def sweep_folder(args: argparse.Namespace) -> Path:
    """<out-dir>/<name>-<machine>: the sweep's run folders; its table is this path + .md."""
    return Path(args.out_dir) / f"{args.name}-{output.machine_name(resolve_device(args.device))}"


def sweep_runs(args: argparse.Namespace) -> list[tuple[str, Run, RunConfig]]:
    """Every variant x seed the command asks for: its --run, its run and its configuration."""
    weights = dict(w.split("=", 1) for w in args.weights)
    runs = []
    for spec in args.run:
        setting, values = parse_run(spec)
        variant = re.sub(r"[^A-Za-z0-9._-]+", "_", spec.replace("=", "-"))
        for seed in seeds(args.seeds):
            cfg = make_config(
                model=args.model,
                data_fraction=args.fraction,
                pretrained=setting == "pretrained",
                seed=seed,
                profile=args.profile,
                device=args.device,
                data_dir=args.data_dir,
                output_dir=str(sweep_folder(args) / variant / f"seed{seed}"),
                weights_path=weights.get(args.model) if setting == "pretrained" else None,
                **{"eval_images": args.eval_images, **values},
            )
            runs.append((spec, Run(setting, cfg.model, cfg.data_fraction, seed), cfg))
    return runs


def render(args: argparse.Namespace, records: list[tuple[str, dict[str, Any]]]) -> str:
    """The sweep's Markdown: what ran where, then one line per variant of this call with its
    finished runs: mean ± sd of validation accuracy over their seeds."""
    where = sorted({f"{m['hardware']}; torch {m['torch']}" for _, m in records})
    lines = output.header(
        f"Recipe sweep: {args.model}, {args.fraction} of CIFAR-10, {args.profile} profile",
        args.command,
        f"hardware: {' and '.join(where) or 'no run finished'}",
        f"weights: {args.weights_label or 'none'}",
        f"scored on {records[0][1]['val_images'] if records else 0:,} fixed validation images "
        "(best evaluated epoch); the table shows no test accuracy",
    ) + [
        "| run | seeds | val acc % (mean ± sd) | per seed | images trained | wall time s |",
        "|---|---:|---:|---|---:|---:|",
    ]
    for spec in args.run:
        mine = [m for s, m in records if s == spec]
        if not mine:
            continue
        accs = [100 * m["best_val_acc"] for m in mine]
        sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
        trained = mine[0]["epochs"] * mine[0]["steps_per_epoch"] * mine[0]["config"]["batch_size"]
        lines.append(
            f"| {spec} | {len(mine)} | {statistics.mean(accs):.1f} ± {sd:.1f} | "
            f"{', '.join(f'{a:.1f}' for a in accs)} | {trained:,} | "
            f"{statistics.mean(m['wall_time_s'] for m in mine):.0f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> str:
    """Execute every run not done, then write and print the table of the finished ones."""
    args = parse_args(argv)
    with output.one_line_errors("recipe_sweep.py"):
        runs = sweep_runs(args)
    failed = []
    for spec, run, cfg in runs:
        if state(cfg) != State.DONE:
            outcome = execute(run, cfg, direct=True)
            print(f"{spec}, seed {run.seed}: {outcome.message}", flush=True)
            failed += [] if outcome.ok else [f"{spec}, seed {run.seed}"]
    done = [(spec, cfg) for spec, _, cfg in runs if state(cfg) == State.DONE]
    text = render(args, [(spec, load_metrics(cfg.output_dir)) for spec, cfg in done])
    output.write_result(sweep_folder(args).with_suffix(".md"), text)
    if failed:  # the table holds what finished; each failure's reason is in its failed.json
        raise SystemExit(f"recipe_sweep.py: {len(failed)} runs failed: {'; '.join(failed)}")
    return text


if __name__ == "__main__":
    main()
