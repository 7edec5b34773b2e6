"""The grid on a Ray cluster with no shared file system: data and weights go through the object
store once, each run executes as a Ray task in its node's cache, and its files come back to the
driver's output folder. Ray is optional (requirements-cluster.txt) and imported only here."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import torch

from . import runner
from .config import REPO, RunConfig
from .errors import UserError
from .files import write_with
from .report import METRICS, input_identity, portable
from .runner import Outcome, Run, execute, stop_notebooks
from .training import LATEST, PREVIOUS

RETRIES = 3  # times Ray starts a run again after its worker died
CANCEL_GRACE_S = 5.0  # a cancelled task's time to stop its kernel before its worker is killed

Files = dict[str, bytes]  # a folder's plain files by name
Bundle = tuple[str, tuple[str, ...], Any]  # files in the object store: (key, names, reference)


def join(
    address: str, device: str, jobs: int | None, cpus: int, repo: Path, folders: list[str | None]
) -> bool:
    """Join --ray's cluster, shipping `repo` less the `folders` in it; whether runs get GPUs."""
    if jobs is not None:
        raise UserError("--jobs and --ray don't mix: Ray runs as many runs at once as fit")
    if device not in ("auto", "cpu"):
        raise UserError(
            f"--device {device} names a device of this machine: with --ray leave it out "
            "(each run gets a GPU of the cluster) or use --device cpu"
        )
    try:
        import ray
    except ImportError:
        install = "pip install -r requirements-cluster.txt"
        raise UserError(f"--ray needs Ray, which is not installed: run `{install}`") from None
    if where := re.fullmatch(r"\[?([^\]/]+?)\]?:(\d+)", address):
        try:  # ray.init waits minutes for an address where nothing listens
            socket.create_connection((where[1], int(where[2])), timeout=5).close()
        except OSError as e:
            why = f"no Ray cluster answers at {address} ({e.strerror or e})"
            raise UserError(f"{why}: start one (ray start --head) or check the address") from None
    elif address != "auto":
        raise UserError(f"--ray takes host:port or auto, got {address!r}")
    excludes = ["/results/", "/benchmarks/results/"]
    for path in (Path(f).resolve() for f in folders if f):
        if path.is_relative_to(repo) and path != repo:
            excludes.append(f"/{path.relative_to(repo).as_posix()}/")
    env = {"working_dir": str(REPO), "excludes": excludes}
    try:
        ray.init(address, runtime_env=env, logging_level="WARNING", log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as e:
        why = f"cannot join the Ray cluster at {address}: {first_line(e)}"
        raise UserError(f"{why} (run this on a node of it, with its Ray and Python)") from None
    nodes = [node["Resources"] for node in ray.nodes() if node["Alive"]]
    gpus, cpus_in_all = (sum(n.get(r, 0) for n in nodes) for r in ("GPU", "CPU"))
    gpu = gpus > 0 and device == "auto"
    largest = max((n.get("CPU", 0) for n in nodes), default=0)
    if not gpu and cpus > largest:
        raise UserError(
            f"each run would ask for {cpus} CPUs, but the largest node of the Ray cluster has "
            f"{largest:g}: lower --ray-cpus"
        )
    each = "one GPU" if gpu else f"{cpus} CPU{'s' * (cpus != 1)}"
    print(
        f"Ray cluster at {address}: {len(nodes)} node{'s' * (len(nodes) != 1)}, {gpus:g} GPUs, "
        f"{cpus_in_all:g} CPUs; each run asks for {each}"
    )
    return gpu


def first_line(exc: BaseException) -> str:
    """`Type: message` of a (Ray task's) error, its first line, without Ray's colour codes."""
    exc = getattr(exc, "cause", None) or exc
    text = re.sub(r"\x1b\[[0-9;]*m", "", f"{type(exc).__name__}: {exc}").strip()
    return text.splitlines()[0]


def pack(folder: Path, names: Iterable[str] | None = None) -> Files:
    """The plain files of `folder` (or those of `names` that exist), by name."""
    paths = [folder / n for n in names] if names is not None else sorted(folder.iterdir())
    return {p.name: p.read_bytes() for p in paths if p.is_file()}


def unpack(files: Files, folder: Path) -> None:
    """Write `files` into `folder`, each atomically, metrics.json last (it marks a run done)."""
    for name in sorted(files, key=lambda n: n == METRICS):
        write_with(folder / name, lambda f, data=files[name]: f.write(data), mode="wb")


def put(files: Files) -> Bundle:
    """`files` in the object store, named by content; Ray leaves a reference nested in a task's
    arguments unresolved, so a node fetches them only when it lacks them."""
    import ray

    key = hashlib.sha256(b"".join(files[name] for name in sorted(files))).hexdigest()[:16]
    return key, tuple(sorted(files)), ray.put(files)


def materialize(bundle: Bundle, folder: Path) -> Path:
    """`folder` holding the bundle's files, fetched where one is missing."""
    import ray

    _, names, ref = bundle
    if not all((folder / name).is_file() for name in names):
        unpack(ray.get(ref), folder)
    return folder


def run_task(
    run: Run,
    overrides: dict[str, Any],
    data: Bundle,
    weights: Bundle | None,
    checkpoints: Files,
    options: dict[str, Any],
) -> tuple[bool, str, Files]:
    """On a worker: execute one run in a folder named for its training and inputs, so that a
    retry on this node resumes it; (ok, message, the run's files)."""
    import ray

    threads = max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1)))
    os.environ["OMP_NUM_THREADS"] = str(threads)  # a kernel's torch threads
    torch.set_num_threads(threads)  # a direct run's, in this worker
    cache = Path(tempfile.gettempdir()) / f"big-vs-small-{os.getuid()}"
    cache.mkdir(mode=0o700, exist_ok=True)
    if (mode := cache.stat()).st_uid != os.getuid() or mode.st_mode & 0o077:
        raise PermissionError(f"{cache} is open to other users: remove it")
    data_dir = materialize(data, cache / "data" / data[0] / "cifar-10-batches-py").parent
    paths: dict[str, Any] = {"data_dir": str(data_dir)}
    if weights is not None:
        folder = materialize(weights, cache / "weights" / weights[0])
        paths["weights_path"] = str(folder / weights[1][0])
    inputs = repr((run, overrides, data[0], weights and weights[0]))
    key = hashlib.sha256(inputs.encode()).hexdigest()[:16]
    cfg = runner.run_config(run, cache / "runs" / key, **paths, **overrides)
    run_dir = Path(cfg.output_dir)
    if not (run_dir / LATEST).exists():  # a retry on this node resumes its own
        unpack(checkpoints, run_dir)
    try:
        outcome = execute(run, cfg, **options)
    except KeyboardInterrupt:  # ray.cancel: the checkpoint stays, the worker takes other tasks
        stop_notebooks(final=False)
        raise
    files = pack(run_dir)
    shutil.rmtree(cache / "runs" / key, ignore_errors=True)  # the driver keeps the checkpoints
    kept = {n: b for n, b in files.items() if not n.startswith(".") and n != runner.FAILED}
    return outcome.ok, outcome.message, kept


def run_on_ray(
    todo: list[Run],
    configs: dict[Run, RunConfig],
    overrides: dict[str, Any],
    data_dir: str,
    gpu: bool,
    cpus: int,
    weights: dict[str, str],
    options: dict[str, Any],
) -> Iterator[Outcome]:
    """Run `todo` as Ray tasks (one GPU or `cpus` CPUs each), yielding outcomes as they finish,
    each run's files written into its local folder first; those stay locked until all end."""
    import ray

    task = ray.remote(num_gpus=int(gpu), num_cpus=1 if gpu else cpus, max_retries=RETRIES)(run_task)
    data = put(pack(Path(data_dir) / "cifar-10-batches-py"))
    ship = functools.cache(lambda path: put(pack(Path(path).parent, [Path(path).name])))
    pending = {}
    with ExitStack() as locks:
        try:
            for run in todo:
                cfg = configs[run]
                try:
                    locks.enter_context(runner.run_lock(Path(cfg.output_dir)))
                except runner.Busy as e:
                    yield Outcome(run, False, str(e))
                    continue
                done = runner.state(cfg) == runner.State.DONE
                if done and not options.get("force"):
                    yield Outcome(run, True, "done by another process")
                    continue
                # an unfinished attempt's checkpoints; --force retrains a finished run anew
                saved = {} if done else pack(Path(cfg.output_dir), (LATEST, PREVIOUS))
                path = weights.get(run.model) if run.pretrained else None
                # the run's own weights label, which a local weights file keeps whatever its name
                mine = dict(overrides, weights=cfg.weights)
                pending[task.remote(run, mine, data, path and ship(path), saved, options)] = run
            while pending:
                [ref], _ = ray.wait(list(pending), num_returns=1)
                run = pending.pop(ref)
                cfg, run_dir = configs[run], Path(configs[run].output_dir)
                try:
                    ok, message, files = ray.get(ref)
                except ray.exceptions.RayError as e:  # its worker died RETRIES + 1 times, say
                    ok, message, files = False, first_line(e), {}
                if ok and METRICS in files:  # the driver's paths, portable; its inputs' identity
                    metrics = json.loads(files[METRICS])
                    for key in ("data_dir", "output_dir", "weights_path"):
                        metrics["config"][key] = portable(getattr(cfg, key), cfg.output_dir)
                    metrics["inputs"] = input_identity(cfg.data_dir, cfg.weights_path)
                    files[METRICS] = (json.dumps(metrics, indent=2) + "\n").encode()
                try:  # as a local run leaves them
                    unpack(files, run_dir)
                    if ok:
                        runner.mark_finished(run_dir)
                    else:
                        runner.record_failure(run_dir, message, run_dir / f"{run.name}.ipynb")
                except OSError as e:
                    ok, message = False, f"its results could not be written to {run_dir}: {e}"
                yield Outcome(run, ok, message)
        finally:  # Ctrl-C: each task stops its kernel; those still running after a grace die
            refs = list(pending)
            for ref in refs:
                ray.cancel(ref)
            if refs:
                _, running = ray.wait(refs, num_returns=len(refs), timeout=CANCEL_GRACE_S)
                for ref in running:
                    ray.cancel(ref, force=True)
