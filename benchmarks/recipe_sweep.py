"""Recipe choices scored on validation accuracy: one model and fraction, several variants.

    python benchmarks/recipe_sweep.py --profile full --model resnet50 --fraction 1 \\
        --eval-images none --seeds 0,1,2 --name full-scratch-resnet50 \\
        --run "scratch" --run "scratch lr=0.1" --run "scratch epochs=52"

Each `--run` is a setting and the recipe values it overrides (as run_all.py's --set reads them).
Each variant and seed is one run, executed as every run is (`common.runner.execute`: locked,
skipped when done, resumed), in <out-dir>/<name>-<machine>/<variant>/seed<N>/. The table, mean
± sd of validation accuracy over seeds, goes to <name>-<machine>.md; it shows no test accuracy.
"""

import argparse
import re
import statistics
from pathlib import Path
from typing import Any

import benchmarks
from common.config import RunConfig, make_config, parse_sets
from common.errors import ConfigError, one_line_exit
from common.report import load_metrics
from common.runner import Run, State, execute, state


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default="data")
    p.add_argument("--model", default="resnet18")
    p.add_argument("--fraction", default="1/16")
    p.add_argument("--profile", default="quick")
    p.add_argument("--seeds", default="0", help="comma-separated, e.g. 0,1,2")
    p.add_argument("--run", action="append", required=True, help="setting key=value ...")
    p.add_argument("--weights", action="append", default=[], help="MODEL=FILE")
    p.add_argument("--weights-label", default="none", help="what the weights are, for the table")
    p.add_argument("--name", required=True, help="result file stem, e.g. finetune-keras")
    p.add_argument("--out-dir", default=str(benchmarks.RESULTS))
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    # 4,000 test images, so 2,000 validation images: a standard error near 1 point
    p.add_argument("--eval-images", default="4000", help="validation gets half; none: all")
    args = p.parse_args(argv)
    args.run = list(dict.fromkeys(args.run))  # a variant given twice runs once
    return args


def sweep_folder(args: argparse.Namespace) -> Path:
    """<out-dir>/<name>-<machine>: the sweep's run folders; its table is this path + .md."""
    return Path(args.out_dir) / f"{args.name}-{benchmarks.machine(args.device)}"


def sweep_runs(args: argparse.Namespace) -> list[tuple[str, Run, RunConfig]]:
    """Every variant x seed the command asks for: its --run, its run and its configuration."""
    try:
        seeds = list(dict.fromkeys(int(s) for s in args.seeds.split(",")))
    except ValueError:
        raise ConfigError(f"--seeds takes whole numbers and commas, got {args.seeds!r}") from None
    weights = dict(w.split("=", 1) for w in args.weights)
    runs = []
    for spec in args.run:
        setting, *pairs = spec.split()
        if setting not in ("scratch", "pretrained"):
            raise ConfigError(f"--run {spec!r}: write 'scratch|pretrained key=value ...'")
        variant = re.sub(r"[^A-Za-z0-9._-]+", "_", spec.replace("=", "-"))
        pretrained = setting == "pretrained"
        for seed in seeds:
            cfg = make_config(
                args.model,
                args.fraction,
                pretrained,
                seed,
                args.profile,
                device=args.device,
                data_dir=args.data_dir,
                output_dir=str(sweep_folder(args) / variant / f"seed{seed}"),
                weights_path=weights.get(args.model) if pretrained else None,
                **{"eval_images": args.eval_images, **parse_sets(pairs)},
            )
            runs.append((spec, Run(setting, cfg.model, cfg.data_fraction, seed), cfg))
    return runs


def render(
    args: argparse.Namespace, records: list[tuple[str, dict[str, Any]]], argv: list[str] | None
) -> str:
    """The sweep's Markdown: one line per variant of this call with finished runs."""
    where = sorted({f"{m['hardware']}; torch {m['torch']}" for _, m in records})
    lines = benchmarks.header(
        f"Recipe sweep: {args.model}, {args.fraction} of CIFAR-10, {args.profile} profile",
        __file__,
        argv,
        f"hardware: {' and '.join(where) or 'no run finished'}",
        f"weights: {args.weights_label}",
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
    with one_line_exit("recipe_sweep.py"):
        runs = sweep_runs(args)
    failed = []
    for spec, run, cfg in runs:
        if state(cfg) != State.DONE:
            outcome = execute(run, cfg, direct=True)
            print(f"{spec}, seed {run.seed}: {outcome.message}", flush=True)
            failed += [] if outcome.ok else [f"{spec}, seed {run.seed}"]
    done = [
        (spec, load_metrics(cfg.output_dir)) for spec, _, cfg in runs if state(cfg) == State.DONE
    ]
    text = render(args, done, argv)
    benchmarks.write(sweep_folder(args).with_suffix(".md"), text)
    if failed:  # the table holds what finished; each failure's reason is in its failed.json
        raise SystemExit(f"recipe_sweep.py: {len(failed)} runs failed: {'; '.join(failed)}")
    return text


if __name__ == "__main__":
    main()
