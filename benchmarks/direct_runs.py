"""Train runs of the grid directly through `common`, without Jupyter or papermill, for machines
that have torch but not the notebook stack (a bare GPU node, a batch job).

    python benchmarks/direct_runs.py --data-dir data --output-dir runs \\
        --run scratch:resnet18:1 --run scratch:resnet50:1/16 --budget 400

Each run is what its notebook would do: the same config (`grid.run_config`), model, `train`
with resumable checkpoints, and `save_run` (curves, metrics.json; checkpoints pruned). Runs
start in the order given while `--budget` seconds have not passed; finished runs are skipped,
so the same command resumes. `run_all.py --dry-run --output-dir runs` then lists them as done,
and the next `run_all.py` call with that output folder reports them.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from common import build_model, load_cifar10, parse_fraction, save_run, summary_line, train  # noqa: E402
from common.config import parse_sets  # noqa: E402
from common.errors import UserError  # noqa: E402
from common.grid import Run, run_config  # noqa: E402
from common.rundir import State, state  # noqa: E402


def parse_run(text: str, seed: int) -> Run:
    """'scratch:resnet18:1/16' -> Run('scratch', 'resnet18', 0.0625, seed)."""
    try:
        setting, model, fraction = text.split(":")
    except ValueError:
        raise SystemExit(
            f"--run {text!r}: write SETTING:MODEL:FRACTION, e.g. scratch:resnet18:1/16"
        ) from None
    return Run(setting, model, parse_fraction(fraction), seed)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=str(REPO / "data"))
    p.add_argument("--output-dir", default=str(REPO / "runs"))
    p.add_argument("--run", action="append", required=True, help="SETTING:MODEL:FRACTION")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--profile", default=None, help="full or quick (default: full on a GPU)")
    p.add_argument("--budget", type=float, default=float("inf"), help="seconds to start runs in")
    p.add_argument(
        "--set", action="append", default=[], help="KEY=VALUE recipe override, as run_all.py's"
    )
    args = p.parse_args(argv)
    try:
        overrides = parse_sets(args.set)
    except UserError as e:
        raise SystemExit(f"direct_runs.py: error: {e}") from None
    started = time.perf_counter()
    data = load_cifar10(args.data_dir, download=False)
    for run in (parse_run(r, args.seed) for r in args.run):
        cfg = run_config(
            run, args.output_dir, profile=args.profile, data_dir=args.data_dir, **overrides
        )
        if state(cfg) == State.DONE:
            continue
        if time.perf_counter() - started > args.budget:
            print(f"budget spent: {run.setting} {run.name} not started", flush=True)
            continue
        model = build_model(
            cfg.model,
            cfg.pretrained,
            cfg.stem,
            cfg.weights_path,
            seed=cfg.seed,
            weights=cfg.weights,
        )
        result = train(model, data, cfg, run_dir=cfg.output_dir, progress=False)
        print(summary_line(save_run(cfg, result)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
