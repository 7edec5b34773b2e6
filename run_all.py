#!/usr/bin/env python
"""Run the grid of notebooks with papermill, then write the curves, the summary and the README.

    python run_all.py --data-dir data                # the 13-run grid (quick profile on a CPU)
    python run_all.py --settings scratch --models resnet18 --fractions 1/16,1 --seeds 0,1,2

Each run lands in runs/<setting>/<model>_data-<size>_seed<seed>/. Finished runs are skipped,
interrupted ones resume from their last checkpoint, failed ones are retried; Ctrl-C stops every
run this call started. See docs/running.md.
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()  # before the imports: torch and friends take seconds

import argparse
import contextlib
import os
import re
import shlex
import signal
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from common.errors import UserError, with_options

REPO = Path(__file__).resolve().parent
MODELS = "resnet18, resnet34, resnet50, resnet101, resnet152, resnext50_32x4d"
# Run settings with options of their own: --set refuses them, errors name the option
OWN_OPTIONS = {
    "seed": "--seeds",
    "model": "--models",
    "pretrained": "--settings",
    "data_fraction": "--fractions",
    "data_dir": "--data-dir",
    "output_dir": "--output-dir",
    "weights": "--weights",
    "weights_path": "--weights or --weights-dir",
    "device": "--device",
    "profile": "--profile",
}
PATHS = ("data_dir", "output_dir", "images_dir", "results_dir", "readme", "weights_dir")
Plan = SimpleNamespace  # the grid, its configurations and states, where its runs go


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The options, every default shown in --help, and the paths made absolute before papermill
    moves into notebooks/."""
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    g = p.add_argument_group("the grid and its recipe")
    g.add_argument("--settings", default="scratch,pretrained", help="default: %(default)s")
    g.add_argument("--models", help=f"any of {MODELS} (default: the seed's 13 runs)")
    g.add_argument("--fractions", default="1/16,0.5,1", help="1/16, 50%%... (default: %(default)s)")
    g.add_argument("--seeds", default="0", help="each cell runs once per seed (default: 0)")
    g.add_argument("--epochs", type=int, help="every run's epochs (default: the recipe's)")
    g.add_argument(
        "--profile", choices=("full", "quick"), help="default: full on a GPU, else quick"
    )
    g.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="e.g. lr=0.4")
    g.add_argument("--weights", action="append", default=[], help="V1 (default), V2 or MODEL=FILE")
    g = p.add_argument_group("where things are (default: the repository's folders for runs/)")
    g.add_argument("--data-dir", default=str(REPO / "data"), help="holds cifar-10-batches-py/")
    g.add_argument("--output-dir", default=str(REPO / "runs"), help="the run folders (runs/)")
    g.add_argument("--images-dir", help="the curves (images/, else OUTPUT_DIR/images)")
    g.add_argument("--results-dir", help="the summary (results/, else OUTPUT_DIR/results)")
    g.add_argument("--readme", help="the README to update, or none (README.md, else none)")
    g.add_argument("--weights-dir", help="ImageNet weight files under torchvision's names")
    g = p.add_argument_group("how it runs")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    g.add_argument("--jobs", type=int, help="runs at once (default: one per GPU, else 1)")
    g.add_argument("--ray", metavar="ADDRESS", help="on the Ray cluster at host:port or auto")
    g.add_argument("--ray-cpus", type=int, default=1, help="CPUs a run asks of Ray (default: 1)")
    g.add_argument("--kernel", default="big-vs-small", help="Jupyter kernel (default: %(default)s)")
    g.add_argument("--direct", action="store_true", help="train in this process, no notebooks")
    g.add_argument("--force", action="store_true", help="re-run runs that are done")
    g.add_argument("--dry-run", action="store_true", help="list the runs and their state only")
    g.add_argument("--report-only", action="store_true", help="report the runs in --output-dir")
    args = p.parse_args(argv)
    for name in PATHS:
        if (value := getattr(args, name)) is not None and value != "none":
            setattr(args, name, str(Path(value).expanduser().absolute()))
    return args


if __name__ == "__main__" and {"-h", "--help"} & set(sys.argv[1:]):
    parse_args()  # --help answers before the imports below, which take seconds (torch)

from common import cluster, config, data, models, report, runner


def split(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def parse_weights(items: list[str]) -> tuple[str, dict[str, str]]:
    """--weights: (torchvision's version, {model: one's own file})."""
    version, custom = "V1", {}
    for item in items:
        model, sep, file = item.partition("=")
        if not sep:
            if item not in models.VERSIONS:
                raise UserError(f"--weights {item}: give V1, V2 or MODEL=FILE")
            version = item
            continue
        models.check_model(model)
        path = Path(file).expanduser().absolute()
        if not path.is_file():
            raise UserError(
                f"--weights {item}: {path} is not a file: give the path of an ImageNet state "
                f"dict for torchvision's {model}"
            )
        custom[model] = str(path)
    return version, custom


def set_options(items: list[str]) -> dict[str, Any]:
    """The --set values, refusing settings that have options of their own."""
    sets = config.parse_sets(items)
    if own := next((key for key in sets if key in OWN_OPTIONS), None):
        raise UserError(f"--set {own}: use {OWN_OPTIONS[own]} instead")
    return sets


def choose_profile(args: argparse.Namespace, ray_gpu: bool = False) -> str:
    """The profile asked, else the one the runs found, the options or the GPUs imply."""
    if args.profile:
        return args.profile
    if args.report_only:  # that of most runs, as the scaling notebook's default
        runs = {p: len(report.collect(args.output_dir, p)) for p in config.PROFILES}
        if not any(runs.values()):
            raise UserError(f"--report-only: no finished run in {args.output_dir}: give its folder")
        return max(runs, key=runs.get)
    if args.device == "cpu":
        print("--device cpu: using --profile quick (--profile full trains the full recipe)")
        return "quick"
    if args.ray and args.dry_run:  # a dry run does not ask the cluster what it has
        print("--dry-run with --ray: listing the full profile's runs")
        return "full"
    if args.ray:
        return "full" if ray_gpu else "quick"
    if (profile := config.default_profile()) == "quick":
        print("no usable GPU: using --profile quick (short CPU smoke runs)")
    return profile


def make_plan(args: argparse.Namespace) -> Plan:
    """The grid, its profile, where its runs go (local slots or Ray) and their overrides."""
    fractions = [data.parse_fraction(f) for f in split(args.fractions)]
    if not all(re.fullmatch(r"\d+", s) for s in split(args.seeds)):
        raise UserError(f"--seeds takes whole numbers, e.g. 0,1,2; got {args.seeds!r}")
    for count in ("epochs", "jobs", "ray_cpus"):
        if (value := getattr(args, count)) is not None and value < 1:
            raise UserError(f"--{count.replace('_', '-')} must be 1 or more, got {value}")
    asked = split(args.models) if args.models else None
    seeds = [int(s) for s in split(args.seeds)]
    grid = runner.build_grid(split(args.settings), asked, fractions, seeds)
    if not grid:
        raise UserError("the grid is empty: give at least one setting, fraction and seed")
    plan = Plan(grid=grid, slots=[], ray_gpu=False)
    plan.version, plan.custom = parse_weights(args.weights)
    if unused := sorted(set(plan.custom) - {r.model for r in grid if r.pretrained}):
        raise UserError(
            f"--weights {unused[0]}=...: no pretrained run of {unused[0]} in this grid: check "
            "--models and --settings"
        )
    if args.ray and not (args.dry_run or args.report_only):
        folders = [getattr(args, name) for name in PATHS]
        plan.ray_gpu = cluster.join(args.ray, args.device, args.jobs, args.ray_cpus, REPO, folders)
    elif not args.ray:
        plan.slots, sharing = runner.job_slots(args.device, args.jobs)
        if sharing and not (args.dry_run or args.report_only):
            print(sharing)
    plan.profile = choose_profile(args, plan.ray_gpu)
    given = dict(profile=plan.profile, device=args.device, data_dir=args.data_dir)
    plan.overrides = set_options(args.set) | given | dict(weights=plan.version)
    if args.epochs is not None:
        plan.overrides["epochs"] = args.epochs
    return plan


def report_places(args: argparse.Namespace, profile: str) -> None:
    """The repository's images/, results/ and README for its own runs/ (but never a quick
    report over full-profile results); beside the runs otherwise."""
    own = Path(args.output_dir).resolve() == (REPO / "runs").resolve()
    protected = own and args.readme is None and report.keeps_full(REPO / "README.md", profile)
    base = REPO if own and not protected else Path(args.output_dir)
    args.images_dir = args.images_dir or str(base / "images")
    args.results_dir = args.results_dir or str(base / "results")
    if args.readme is None:
        args.readme = str(REPO / "README.md") if own and not protected else "none"
    if protected:
        print(f"README.md holds full-profile results, kept: this quick call reports in {base}/")


def check_writable(folder: Path) -> None:
    """A one-line UserError unless `folder` can be written; creates nothing."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        with tempfile.NamedTemporaryFile(dir=existing):
            pass
    except OSError as e:
        raise UserError(f"cannot write to {folder} ({e.strerror}): pick another folder") from None


def preflight(args: argparse.Namespace, plan: Plan) -> None:
    """Check what every run needs before any starts (folders, weights, data, each subset), and
    give each run its configuration and state."""
    idle = args.dry_run or args.report_only
    for folder in [] if args.dry_run else (args.output_dir, args.images_dir, args.results_dir):
        check_writable(Path(folder))
    pretrained = {r.model for r in plan.grid if r.pretrained}
    find = (plan.version, args.weights_dir, not idle, not args.report_only)
    plan.weights, plan.not_possible = models.grid_weights(pretrained, plan.custom, *find)
    plan.configs, plan.states = {}, {}
    for run in plan.grid:
        file = plan.weights.get(run.model) if run.pretrained else None
        own = {"weights": file} if file and run.model in plan.custom else {}  # 'custom: FILE'
        cfg = runner.run_config(run, args.output_dir, **plan.overrides | own, weights_path=file)
        blocked = run.pretrained and run.model in plan.not_possible
        plan.configs[run] = cfg
        plan.states[run] = runner.State.NOT_POSSIBLE if blocked else runner.state(cfg)
    if not args.report_only:
        data.ensure_cifar10(args.data_dir, download=not args.dry_run)
        labels = data.load_cifar10(args.data_dir, download=False).train_y
        for cfg in plan.configs.values():  # each must leave every class an image
            data.make_splits(labels, cfg.val_size, cfg.data_fraction, cfg.seed)


def runs(plan: Plan, *states: str) -> list:
    return [r for r, s in plan.states.items() if s in states]


def show_plan(args: argparse.Namespace, plan: Plan, todo: list) -> None:
    """What cannot run and why, the counts, and with --dry-run every run's state."""
    grid, blocked = plan.grid, runs(plan, "not possible")
    if blocked:
        why = models.missing_weights(plan.not_possible, plan.version, args.weights_dir)
        if len(blocked) == len(grid) and not (args.dry_run or args.report_only):
            raise UserError(f"no run of this grid is possible here: {why}")
        print(f"{len(blocked)} of {len(grid)} runs are not possible here: {why}")
    skipped = len([r for r in runs(plan, "done") if r not in todo])
    print(
        f"{len(grid)} run{'s' * (len(grid) != 1)}: {len(todo)} to run, {skipped} done and "
        f"skipped, {len(blocked)} not possible; profile {plan.profile}"
    )
    for run in grid if args.dry_run else []:
        cfg, now = plan.configs[run], plan.states[run]
        why = (runner.failure_reason(cfg.output_dir) if now == "failed" else "") or ""
        if now in ("todo", "failed") and (epoch := runner.resume_epoch(cfg)) is not None:
            why = f"resumes at epoch {epoch} of {cfg.epochs} {why}"
        print(f"  {now:>12}  {run.setting:<10} {run.name}  {why}")


def dispatch(args: argparse.Namespace, plan: Plan, todo: list) -> list:
    """Run `todo` here or on Ray, showing progress; the failures."""
    options = dict(direct=args.direct, kernel=args.kernel, force=args.force)
    options["extra_keys"] = list(plan.overrides)
    if not args.ray:
        outcomes = runner.run_locally(todo, plan.configs, plan.slots, options)
        return runner.follow(outcomes, todo, plan.configs)
    overrides = {k: v for k, v in plan.overrides.items() if k != "data_dir"}  # a node's own
    ray = (args.data_dir, plan.ray_gpu, args.ray_cpus, plan.weights, options)
    outcomes = cluster.run_on_ray(todo, plan.configs, overrides, *ray)
    note = "finished runs are kept; the others resume on their Ray nodes"
    return runner.follow(outcomes, todo, plan.configs, note)


def report_grid(args: argparse.Namespace, plan: Plan, failures: list, call: Any) -> int:
    """The figures, the summary and the README's section; the exit status."""
    blocked = runs(plan, "not possible")
    for run in blocked:
        file = models.weights_file(run.model, plan.version)
        call.missing[run.condition] = report.NotProduced(weights=file)
    for run, why in failures:
        call.failed.setdefault(run.condition, {})[run.seed] = why
    call.notes = [models.weights_remedy(plan.not_possible, plan.version)] if blocked else []
    places = (args.output_dir, args.images_dir, args.results_dir)
    if args.direct:
        print("--direct: no scaling notebook (a call without --direct, or --report-only, runs it)")
    else:
        call.figures, error = runner.execute_scaling(*places, plan.profile, args.kernel)
        if error:
            print(f"the scaling notebook failed: {error}")
    readme = None if args.readme == "none" else args.readme
    print(f"summary: {report.write_report(*places, readme, plan.profile, call)}")
    if len(blocked) == len(plan.grid):
        print("no run of this grid is possible here (see above): nothing was trained")
    elif failures:
        print(f"{len(failures)} run(s) failed: the FAILED lines above; each folder's failed.json")
    return int(len(blocked) == len(plan.grid) or bool(failures))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = "python run_all.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    call = report.Call(command, started=STARTED if argv is None else time.perf_counter())
    if args.weights_dir is not None and not Path(args.weights_dir).is_dir():
        raise UserError(
            f"--weights-dir {args.weights_dir} is not a folder: create it and put torchvision's "
            "weight files in it, or leave the option out"
        )
    if not args.direct:
        runner.check_kernel(args.kernel)
    plan = make_plan(args)
    report_places(args, plan.profile)
    preflight(args, plan)
    todo = runs(plan, "todo", "failed") + (runs(plan, "done") if args.force else [])
    todo.sort(key=lambda r: r.cost, reverse=True)  # with parallel runs the grid ends sooner
    if args.report_only:
        print(f"report only: the runs in {args.output_dir} as they are, none trained")
        return report_grid(args, plan, [], call)
    show_plan(args, plan, todo)
    if args.dry_run:
        return 0
    failures = dispatch(args, plan, todo)
    call.trained = len(todo) - len(failures)
    return report_grid(args, plan, failures, call)


def stop(interrupted: KeyboardInterrupt) -> None:
    """After Ctrl-C or SIGTERM: end every notebook this call runs, then this process (whose
    threads hold the direct runs); each unfinished run keeps its last checkpoint."""
    for sig in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C must not cut this short
        signal.signal(sig, signal.SIG_IGN)
    runner.stop_notebooks()
    why = interrupted.args[0] if interrupted.args else "finished runs are kept"
    with contextlib.suppress(OSError, ValueError):  # a closed pipe
        sys.stdout.flush()
    print(f"run_all.py: interrupted; {why}", file=sys.stderr, flush=True)
    os._exit(130)  # without waiting for the threads of runs in flight


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop as Ctrl-C does
    try:
        sys.exit(main())
    except UserError as e:
        sys.exit(f"run_all.py: error: {with_options(str(e), OWN_OPTIONS)}")
    except KeyboardInterrupt as e:
        stop(e)
