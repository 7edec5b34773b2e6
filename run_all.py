#!/usr/bin/env python
"""Run the grid of notebooks with papermill, then write the curves, the summary and the README.

    python run_all.py --data-dir data                # the 13-run grid (quick profile on a CPU)
    python run_all.py --settings scratch --models resnet18 --fractions 1/16,1 --seeds 0,1,2

Each run lands in runs/<setting>/<model>_data-<size>_seed<seed>/ (executed notebook, its HTML,
metrics.json, curves, best weights). Finished runs are skipped, interrupted ones resume from
their last checkpoint, failed ones are retried; see docs/running.md. Ctrl-C (or SIGTERM) stops
every run this call started, kernels and Ray tasks included.
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()  # before the imports below (torch and friends: seconds)

import argparse
import contextlib
import os
import shlex
import signal
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from common.cluster import connect, run_on_ray
from common.config import RunConfig, default_profile, parse_sets
from common.data import ensure_cifar10, load_cifar10, make_splits, parse_fraction
from common.errors import UserError, with_options
from common.files import read_json
from common.grid import Run, build_grid, run_config
from common.local import Slot, job_slots, run_locally
from common.models import (
    MODELS,
    VERSIONS,
    check_model,
    grid_weights,
    missing_weights,
    weights_file,
    weights_remedy,
)
from common.progress import follow
from common.report import Call, NotProduced, keeps_full, write_report
from common.rundir import State, failure_reason, state
from common.sweep import KERNEL, check_kernel, execute_scaling, stop_kernels

REPO = Path(__file__).resolve().parent


# The command line, by group: each option's argparse keywords. An option without a default is
# None when not given, and its help says what that stands for.
OPTIONS: dict[str, dict[str, dict[str, Any]]] = {
    "the grid and its recipe": {
        "--settings": dict(default="scratch,pretrained", help="comma list of: scratch, pretrained"),
        "--models": dict(
            help="comma list of: " + ", ".join(MODELS) + " (default: resnet18,resnet50 "
            "everywhere plus resnext50_32x4d pretrained on 100%%)"
        ),
        "--fractions": dict(
            default="1/16,0.5,1", help="comma list of data fractions: 1/16, 0.5, 50%%"
        ),
        "--seeds": dict(default="0", help="comma list of seeds; each cell runs once per seed"),
        "--epochs": dict(type=int, help="override the recipe's epochs for every run"),
        "--profile": dict(
            choices=("full", "quick"),
            help="full: the GPU recipe; quick: short CPU smoke runs (default: full with a GPU)",
        ),
        "--set": dict(
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a recipe value for every run, e.g. --set lr=0.4 (repeatable; see "
            "RunConfig in common/config.py)",
        ),
        "--weights": dict(
            action="append",
            default=[],
            metavar="V1|V2|MODEL=FILE",
            help="ImageNet weights of the pretrained runs: V1 (default, the only version "
            "ResNet-18 has), V2 (where torchvision has it, V1 elsewhere), or MODEL=FILE, a state "
            "dict of your own for MODEL, labelled 'custom: FILE' (repeatable)",
        ),
    },
    "where things are": {
        "--data-dir": dict(default=str(REPO / "data"), help="folder holding cifar-10-batches-py/"),
        "--output-dir": dict(default=str(REPO / "runs"), help="where run folders go"),
        "--images-dir": dict(
            help="where the curve PNGs go (default: images/ in the repository with the default "
            "--output-dir, unless a quick call would replace its full-profile results; else "
            "OUTPUT_DIR/images)"
        ),
        "--results-dir": dict(
            help="where summary.md goes (default: results/ in the repository with the default "
            "--output-dir, else OUTPUT_DIR/results)"
        ),
        "--readme": dict(
            help="README whose headline and results section are updated ('none' to leave it; "
            "default: the repository's README.md with the default --output-dir, else none)"
        ),
        "--weights-dir": dict(
            help="folder of ImageNet weight files under torchvision's names (offline machines)"
        ),
    },
    "how it runs": {
        "--device": dict(default="auto", help="auto, cpu (picks --profile quick), cuda or cuda:N"),
        "--jobs": dict(
            type=int,
            help="runs at once (default: one per GPU, each run seeing only its own; 1 on a CPU). "
            "More jobs than GPUs share them, each run slower",
        ),
        "--ray": dict(
            metavar="ADDRESS",
            help="run each run as a task on the Ray cluster at ADDRESS (host:port of its head, or "
            "auto), from a node of the cluster; needs `pip install -r requirements-cluster.txt`",
        ),
        "--ray-cpus": dict(
            type=int,
            default=1,
            help="CPUs each run asks of a Ray cluster without GPUs (with GPUs: one GPU per run)",
        ),
        "--kernel": dict(
            default=KERNEL,
            help="Jupyter kernel that executes the notebooks (default: this project's, which the "
            "README's set-up command registers)",
        ),
        "--direct": dict(
            action="store_true",
            help="train each run in this process instead of through its notebook (no Jupyter or "
            "papermill needed): the same runs, folders and records, without the executed "
            "notebooks and the scaling notebook's figures",
        ),
        "--force": dict(action="store_true", help="re-run runs that are already done"),
        "--keep-checkpoints": dict(
            action="store_true", help="keep per-epoch checkpoints of done runs"
        ),
        "--dry-run": dict(action="store_true", help="list the runs and their state, run nothing"),
        "--report-only": dict(
            action="store_true",
            help="run nothing: write the curves, summary and README section from the runs already "
            "in --output-dir (e.g. made on another machine)",
        ),
    },
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line's options (OPTIONS), in their groups."""
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    for title, options in OPTIONS.items():
        group = p.add_argument_group(title)
        for flag, keywords in options.items():
            group.add_argument(flag, **keywords)
    return p.parse_args(argv)


def resolve_paths(args: argparse.Namespace) -> None:
    """Make every path option absolute against the caller's directory, once, before any kernel
    starts (papermill moves the whole process into notebooks/ while a notebook runs)."""
    for name in ("data_dir", "output_dir", "images_dir", "results_dir", "readme", "weights_dir"):
        value = getattr(args, name)
        if value is not None and not (name == "readme" and value == "none"):
            setattr(args, name, str(Path(value).expanduser().absolute()))
    if args.weights_dir is not None and not Path(args.weights_dir).is_dir():
        raise UserError(
            f"--weights-dir {args.weights_dir} is not a folder: create it and put torchvision's "
            "weight files in it, or leave the option out"
        )


def report_places(args: argparse.Namespace, profile: str) -> None:
    """Fill in where the report goes: the repository's images/, results/ and README for its own
    runs/, unless this is a quick call and the README shows full-profile results, which a quick
    call must not replace; beside the runs otherwise."""
    own = Path(args.output_dir).resolve() == (REPO / "runs").resolve()
    protected = own and args.readme is None and keeps_full(REPO / "README.md", profile)
    base = REPO if own and not protected else Path(args.output_dir)
    args.images_dir = args.images_dir or str(base / "images")
    args.results_dir = args.results_dir or str(base / "results")
    if args.readme is None:
        args.readme = str(REPO / "README.md") if own and not protected else "none"
    if protected:
        print(
            "README.md shows full-profile results, which a quick call does not replace: this "
            f"call's curves and summary go to {base}/"
        )


def split(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def check_writable(folder: Path) -> None:
    """Raise a one-line UserError unless `folder` can be written, creating nothing (a call that
    stops leaves no folder behind): its nearest existing folder must take a new file."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:  # a file there: NotADirectoryError
        with tempfile.NamedTemporaryFile(dir=existing):
            pass
    except OSError as e:
        raise UserError(f"cannot write to {folder} ({e.strerror}): pick another folder") from None


# Run parameters named in library errors, and the options that set them here.
PARAMETER_OPTIONS = {"data_dir": "--data-dir", "device": "--device", "weights": "--weights"}
# Run settings that have options of their own, which also check them.
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


def set_options(items: list[str]) -> dict[str, object]:
    """The --set values (common.config.parse_sets), refusing settings with options of their own."""
    sets = parse_sets(items)
    if own := next((key for key in sets if key in OWN_OPTIONS), None):
        raise UserError(f"--set {own}: use {OWN_OPTIONS[own]} instead")
    return sets


def ray_excludes(args: argparse.Namespace) -> list[str]:
    """The folders of this run's data and outputs that lie inside the repository: Ray ships the
    repository's code to the workers, never these."""
    folders = (args.data_dir, args.output_dir, args.images_dir, args.results_dir, args.weights_dir)
    out = ["/results/", "/benchmarks/results/"]
    for folder in filter(None, folders):
        path = Path(folder).resolve()
        if path.is_relative_to(REPO) and path != REPO:
            out.append(f"/{path.relative_to(REPO).as_posix()}/")
    return out


def join_cluster(args: argparse.Namespace) -> bool:
    """Connect to the Ray cluster of --ray; return whether each run gets a GPU of it."""
    if args.jobs is not None:
        raise UserError("--jobs and --ray don't mix: Ray runs as many runs at once as fit")
    if args.device not in ("auto", "cpu"):
        raise UserError(
            f"--device {args.device} names a device of this machine: with --ray leave it out "
            "(each run gets a GPU of the cluster) or use --device cpu"
        )
    nodes = connect(args.ray, ray_excludes(args))
    gpus = sum(n.get("GPU", 0) for n in nodes)
    cpus = sum(n.get("CPU", 0) for n in nodes)
    gpu = gpus > 0 and args.device == "auto"
    largest = max((n.get("CPU", 0) for n in nodes), default=0)
    if not gpu and args.ray_cpus > largest:
        raise UserError(
            f"each run would ask for {args.ray_cpus} CPUs, but the largest node of the Ray "
            f"cluster has {largest:g}: lower --ray-cpus"
        )
    print(
        f"Ray cluster at {args.ray}: {len(nodes)} node{'s' * (len(nodes) != 1)}, {gpus:g} GPUs, "
        f"{cpus:g} CPUs; each run asks for "
        + ("one GPU" if gpu else f"{args.ray_cpus} CPU{'s' * (args.ray_cpus != 1)}")
    )
    return gpu


def parse_weights(items: list[str]) -> tuple[str, dict[str, str]]:
    """--weights values: (the torchvision version, {model: one's own file}), files made
    absolute against the caller's directory."""
    version, custom = "V1", {}
    for item in items:
        model, sep, file = item.partition("=")
        if not sep:
            if item not in VERSIONS:
                raise UserError(f"--weights {item}: give V1, V2 or MODEL=FILE")
            version = item
            continue
        check_model(model)
        path = Path(file).expanduser().absolute()
        if not path.is_file():
            raise UserError(
                f"--weights {item}: {path} is not a file: give the path of an ImageNet state "
                f"dict for torchvision's {model}"
            )
        custom[model] = str(path)
    return version, custom


@dataclass
class Plan:
    """What the command asks for (the runs, their profile and devices, the recipe overrides),
    then what the preflight found: every run's config and state, the weights files, the models
    whose pretrained runs cannot run here and why."""

    grid: list[Run]
    profile: str
    overrides: dict[str, object]  # for every run's config: the --set values, profile, device...
    version: str  # torchvision's weights version for the pretrained runs
    custom: dict[str, str]  # model -> one's own weights file
    slots: list[Slot] = field(default_factory=list)  # local runs: one per parallel job
    ray_gpu: bool = False  # on Ray: each run asks for a GPU
    configs: dict[Run, RunConfig] = field(default_factory=dict)
    states: dict[Run, State] = field(default_factory=dict)
    weights: dict[str, str] = field(default_factory=dict)  # model -> its weights file
    not_possible: dict[str, str] = field(default_factory=dict)  # model -> why not

    def runs(self, *states: State) -> list[Run]:
        return [r for r, s in self.states.items() if s in states]


def make_plan(args: argparse.Namespace) -> Plan:
    """The grid, its profile and devices, and the overrides every run's config gets."""
    fractions = [parse_fraction(f) for f in split(args.fractions)]
    try:
        seeds = [int(s) for s in split(args.seeds)]
    except ValueError:
        raise UserError(f"--seeds takes whole numbers, e.g. 0,1,2; got {args.seeds!r}") from None
    for count in ("epochs", "jobs", "ray_cpus"):
        if (value := getattr(args, count)) is not None and value < 1:
            raise UserError(f"--{count.replace('_', '-')} must be 1 or more, got {value}")
    models = split(args.models) if args.models else None
    grid = build_grid(split(args.settings), models, fractions, seeds)
    if not grid:
        raise UserError("the grid is empty: give at least one setting, fraction and seed")
    version, custom = parse_weights(args.weights)
    if unused := sorted(set(custom) - {r.model for r in grid if r.pretrained}):
        raise UserError(
            f"--weights {unused[0]}=...: no pretrained run of {unused[0]} in this grid: check "
            "--models and --settings"
        )
    slots, ray_gpu = [], False
    profile = choose_profile(args)
    if args.ray and not idle(args):
        ray_gpu = join_cluster(args)
        profile = profile or ("full" if ray_gpu else "quick")
    elif not args.ray:
        slots, sharing = job_slots(args.device, args.jobs)
        if sharing and not idle(args):
            print(sharing)
    if profile is None:  # none asked for, none implied by the device or Ray: what the GPUs allow
        profile = default_profile()
        if profile == "quick":
            print(
                "no usable GPU: using --profile quick (short CPU smoke runs; --profile full "
                "trains the full recipe)"
            )
    overrides = set_options(args.set) | dict(
        profile=profile, device=args.device, data_dir=args.data_dir, weights=version
    )
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    return Plan(grid, profile, overrides, version, custom, slots, ray_gpu)


def choose_profile(args: argparse.Namespace) -> str | None:
    """The profile the options imply: --profile; the runs' own with --report-only; quick for
    --device cpu; None when it depends on the GPUs. Says why where it is not asked for."""
    if args.profile:
        return args.profile
    if args.report_only:
        return profile_of_runs(args.output_dir)
    if args.device == "cpu":
        print("--device cpu: using --profile quick (--profile full trains the full recipe)")
        return "quick"
    if args.ray and args.dry_run:  # a dry run does not ask the cluster what it has
        print("--dry-run with --ray: listing the full profile's runs (--profile quick otherwise)")
        return "full"
    return None


def profile_of_runs(output_dir: str) -> str:
    """The one profile of the runs already in `output_dir` (--report-only without --profile)."""
    found = {
        m.get("profile")
        for path in Path(output_dir).glob("*/*/metrics.json")
        if (m := read_json(path))
    }
    if len(found) != 1:
        what = ", ".join(sorted(map(str, found))) or "none"
        raise UserError(
            f"--report-only: the runs in {output_dir} have profiles {what}: choose with --profile"
        )
    return found.pop()


def idle(args: argparse.Namespace) -> bool:
    """True when this call trains nothing (--dry-run, --report-only): it downloads nothing."""
    return args.dry_run or args.report_only


def preflight(args: argparse.Namespace, plan: Plan) -> None:
    """Check what every run needs before any starts (writable folders, the data and its splits,
    the weights), build each run's config once, and find its state."""
    output_dir = Path(args.output_dir)
    if not args.dry_run:
        for folder in (output_dir, Path(args.images_dir), Path(args.results_dir)):
            check_writable(folder)
    plan.weights, plan.not_possible = grid_weights(
        (r.model for r in plan.grid if r.pretrained),
        plan.custom,
        plan.version,
        args.weights_dir,
        download=not idle(args),
        check=not args.report_only,  # each file must fit the model it will train
    )

    def config(run: Run) -> RunConfig:
        file = plan.weights.get(run.model) if run.pretrained else None
        own = {"weights": file} if file and run.model in plan.custom else {}  # 'custom: FILE'
        return run_config(run, output_dir, **(plan.overrides | own), weights_path=file)

    plan.configs = {run: config(run) for run in plan.grid}  # validates every run's settings
    if not args.report_only:
        ensure_cifar10(args.data_dir, download=not args.dry_run)
        labels = load_cifar10(args.data_dir, download=False).train_y
        splits = {(cfg.data_fraction, cfg.seed, cfg.val_size) for cfg in plan.configs.values()}
        for fraction, seed, val_size in splits:  # each must leave every class a training image
            make_splits(labels, val_size, fraction, seed)
    plan.states = {
        run: State.NOT_POSSIBLE
        if run.pretrained and run.model in plan.not_possible
        else state(plan.configs[run])
        for run in plan.grid
    }


def show_plan(args: argparse.Namespace, plan: Plan, todo: list[Run]) -> None:
    """What cannot run and why (a call that would train something but can run none of its runs
    stops there in one line, before it writes anything), the counts, and with --dry-run every
    run's state."""
    blocked = plan.runs(State.NOT_POSSIBLE)
    if blocked:
        why = missing_weights(plan.not_possible, plan.version, args.weights_dir)
        if len(blocked) == len(plan.grid) and not idle(args):
            raise UserError(f"no run of this grid is possible here: {why}")
        print(f"{len(blocked)} of {len(plan.grid)} runs are not possible here: {why}")
    skipped = [r for r in plan.runs(State.DONE) if r not in todo]
    print(
        f"{len(plan.grid)} run{'s' * (len(plan.grid) != 1)}: {len(todo)} to run, "
        f"{len(skipped)} done and skipped, {len(blocked)} not possible; profile {plan.profile}"
    )
    if args.dry_run:
        for run in plan.grid:
            now = plan.states[run]
            reason = failure_reason(plan.configs[run].output_dir) if now == State.FAILED else ""
            print(f"  {now.value:>12}  {run.setting:<10} {run.name}  {reason or ''}")


def dispatch(args: argparse.Namespace, plan: Plan, todo: list[Run]) -> list[tuple[Run, str]]:
    """Run `todo` here or on Ray, showing progress; return the failures."""
    options = dict(
        direct=args.direct,
        kernel=args.kernel,
        keep_checkpoints=args.keep_checkpoints,
        extra_keys=list(plan.overrides),  # the notebooks' parameters among them go there
        force=args.force,
    )
    if args.ray:
        outcomes = run_on_ray(
            todo,
            plan.configs,
            {k: v for k, v in plan.overrides.items() if k != "data_dir"},
            data_dir=args.data_dir,
            gpu=plan.ray_gpu,
            cpus=args.ray_cpus,
            weights=plan.weights,
            options=options,
        )
        resume = (
            "the others keep their last epoch's checkpoint on their Ray node and resume from it "
            "when the next call runs them there"
        )
    else:
        outcomes = run_locally(todo, plan.configs, plan.slots, options)
        resume = "the next call resumes the others from their last epoch"
    return follow(outcomes, len(todo), plan.configs, resume)


def report(
    args: argparse.Namespace, plan: Plan, failures: list[tuple[Run, str]], call: Call
) -> int:
    """Draw the figures, write the summary (and the README's section); the exit status."""
    blocked = plan.runs(State.NOT_POSSIBLE)
    call.missing = {
        r.condition: NotProduced(weights=weights_file(r.model, plan.version)) for r in blocked
    }
    for run, why in failures:
        call.failed.setdefault(run.condition, {})[run.seed] = why
    call.notes = [weights_remedy(plan.not_possible, plan.version)] if blocked else []
    places = (args.output_dir, args.images_dir, args.results_dir)
    if args.direct:
        print("--direct: no scaling notebook (a call without --direct, or --report-only, runs it)")
    else:
        call.figures, scaling_error = execute_scaling(*places, plan.profile, args.kernel)
        if scaling_error:
            print(f"the scaling notebook failed: {scaling_error}")
    readme = None if args.readme == "none" else args.readme
    print(f"summary: {write_report(*places, readme, plan.profile, call)}")
    if len(blocked) == len(plan.grid):
        print("no run of this grid is possible here (see above): nothing was trained")
        return 1
    if failures:
        print(
            f"{len(failures)} run(s) failed (details in each run folder's failed.json and .html):"
        )
        for run, why in failures:
            print(f"  {run.setting} {run.name}: {why}")
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    call = Call(
        "python run_all.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])),
        started=STARTED if argv is None else time.perf_counter(),  # this process's command
    )
    resolve_paths(args)
    if not args.direct:
        check_kernel(args.kernel)
    plan = make_plan(args)
    report_places(args, plan.profile)
    preflight(args, plan)
    todo = plan.runs(State.TODO, State.FAILED) + (plan.runs(State.DONE) if args.force else [])
    todo.sort(key=lambda r: r.cost, reverse=True)  # with parallel runs the grid ends sooner
    if args.report_only:
        print(f"report only: the runs in {args.output_dir} as they are, none trained")
        return report(args, plan, [], call)
    show_plan(args, plan, todo)
    if args.dry_run:
        return 0
    failures = dispatch(args, plan, todo)
    call.trained = len(todo) - len(failures)
    return report(args, plan, failures, call)


def stop(interrupted: KeyboardInterrupt) -> NoReturn:
    """After Ctrl-C or SIGTERM: end every kernel this call started (with what each started) and
    then this process, whose threads hold the direct runs; each unfinished run keeps its last
    checkpoint, from which the next call resumes it."""
    for sig in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C must not cut the stopping short
        signal.signal(sig, signal.SIG_IGN)
    stop_kernels()
    why = interrupted.args[0] if interrupted.args else "finished runs are kept"
    with contextlib.suppress(OSError, ValueError):
        sys.stdout.flush()
    print(f"run_all.py: interrupted; {why}", file=sys.stderr, flush=True)
    os._exit(130)  # without waiting for the threads of runs in flight


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop as Ctrl-C does
    try:
        sys.exit(main())
    except UserError as e:
        sys.exit(f"run_all.py: error: {with_options(str(e), PARAMETER_OPTIONS)}")
    except KeyboardInterrupt as e:
        stop(e)
