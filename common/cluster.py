"""The grid on a Ray cluster: each run a Ray task that hands its files back to the driver.

Nothing assumes a shared file system. The driver puts the CIFAR-10 files, and the ImageNet
weights of pretrained runs, into Ray's object store once; a task writes them to a cache on its
node (once per node), executes the run's notebook there exactly as a local run does, and returns
the run folder's files, which the driver writes into the local output folder. Ray starts a task
again when its worker dies; on the same node the retry resumes from the last epoch's checkpoint.
An interrupted driver cancels its tasks, each of which stops its kernel first.
Ray itself is optional (requirements-cluster.txt) and imported only here, when asked for.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import REPO, RunConfig
from .errors import UserError
from .files import write_with
from .grid import Run, run_config
from .results import METRICS, input_identity, portable
from .rundir import FAILED, Busy, State, mark_finished, record_failure, run_lock, state
from .sweep import Outcome, execute, stop_kernels
from .training import LATEST, PREVIOUS

RETRIES = 3  # times Ray starts a run again after its worker died
CANCEL_GRACE_S = 5.0  # a cancelled task's time to stop its kernel before its worker is killed
CACHE = "big-vs-small"  # the nodes' cache, under their temporary folder

Files = dict[str, bytes]  # a folder's plain files by name


def connect(address: str, excludes: Iterable[str] = ()) -> list[dict[str, float]]:
    """Join the Ray cluster at `address` (host:port of its head, or auto) from one of its nodes,
    shipping this repository's code to the workers (less `excludes`, gitignore patterns);
    return the resources of each live node, e.g. [{"CPU": 16.0, "GPU": 2.0, ...}, ...]."""
    try:
        import ray
    except ImportError:
        install = "pip install -r requirements-cluster.txt"
        raise UserError(f"--ray needs Ray, which is not installed: run `{install}`") from None
    if where := re.fullmatch(r"\[?([^\]/]+?)\]?:(\d+)", address):
        try:  # ray.init waits minutes for an address where nothing listens
            socket.create_connection((where[1], int(where[2])), timeout=5).close()
        except OSError as e:
            raise UserError(
                f"no Ray cluster answers at {address} ({e.strerror or e}): start one with "
                "`ray start --head`, or check the address"
            ) from None
    elif address != "auto":
        raise UserError(f"--ray takes host:port or auto, got {address!r}")
    # Quiet Ray's notice that it no longer ships .git and .venv: neither is needed.
    logging.getLogger("ray._private.worker").addFilter(
        lambda record: "ignored by default when packaging" not in record.getMessage()
    )
    try:
        ray.init(
            address=address,
            runtime_env={"working_dir": str(REPO), "excludes": list(excludes)},
            logging_level="WARNING",
            log_to_driver=False,
        )
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as e:
        raise UserError(
            f"cannot join the Ray cluster at {address}: {first_line(e)} (run run_all.py on a "
            "node of the cluster, with the cluster's Ray and Python versions)"
        ) from None
    return [node["Resources"] for node in ray.nodes() if node["Alive"]]


def first_line(exc: BaseException) -> str:
    """`Type: message`, its first line, without the colour codes Ray puts in its errors."""
    exc = getattr(exc, "cause", None) or exc  # a RayTaskError's own exception
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


def digest(*parts: bytes) -> str:
    """A short hash of `parts` (each length-prefixed, so no two sequences share one)."""
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "little") + part)
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class Bundle:
    """Files in Ray's object store, named by their content. A task gets the reference, which
    Ray does not resolve when it is nested in an argument: the task fetches the files only when
    its node does not hold them yet."""

    key: str
    names: tuple[str, ...]
    ref: Any

    @classmethod
    def put(cls, files: Files) -> Bundle:
        import ray

        key = digest(*(part for n in sorted(files) for part in (n.encode(), files[n])))
        return cls(key, tuple(sorted(files)), ray.put(files))

    def fetch(self) -> Files:
        import ray

        return ray.get(self.ref)

    def materialize(self, folder: Path) -> Path:
        """`folder` holding the files, written on first use (a whole folder appears at once)."""
        if all((folder / name).is_file() for name in self.names):
            return folder
        if folder.exists():  # partly removed by a cleaner of temporary files: start again
            shutil.rmtree(folder, ignore_errors=True)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
        try:
            unpack(self.fetch(), tmp)
            tmp.rename(folder)
        except OSError:  # another task on this node was first
            if not folder.is_dir():
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return folder


def node_cache() -> Path:
    """This user's cache on the node, which no other user can write to."""
    cache = Path(tempfile.gettempdir()) / f"{CACHE}-{os.getuid()}"
    cache.mkdir(mode=0o700, exist_ok=True)
    if cache.stat().st_uid != os.getuid() or cache.stat().st_mode & 0o077:
        raise PermissionError(f"{cache} is open to other users: remove it")
    return cache


def run_task(
    run: Run,
    overrides: dict[str, Any],
    data: Bundle,
    weights: Bundle | None,
    resume: Bundle | None,
    options: dict[str, Any],
) -> tuple[bool, str, Files]:
    """On a worker: execute one run in the node's cache; return (ok, message, the run's files).
    Its folder is named for the training settings, data and weights, so Ray's retry after a worker
    died resumes it on the same node; once packed it is removed (the driver keeps a failed run's
    checkpoints and ships them with the next attempt)."""
    import ray

    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    os.environ["OMP_NUM_THREADS"] = str(max(1, int(cpus)))  # the kernel's torch threads
    cache = node_cache()
    data_dir = data.materialize(cache / "data" / data.key / "cifar-10-batches-py").parent
    paths: dict[str, Any] = {"data_dir": str(data_dir)}
    if weights is not None:
        folder = weights.materialize(cache / "weights" / weights.key)
        paths["weights_path"] = str(folder / weights.names[0])
    cfg = run_config(run, cache / "runs", **paths, **overrides)
    settings = json.dumps(cfg.training_key(), sort_keys=True).encode()
    key = digest(settings, data.key.encode(), (weights.key if weights else "").encode())
    cfg = run_config(run, cache / "runs" / key, **paths, **overrides)
    run_dir = Path(cfg.output_dir)
    if resume is not None and not (run_dir / LATEST).exists():
        unpack(resume.fetch(), run_dir)
    try:
        outcome = execute(run, cfg, **options)
    except KeyboardInterrupt:  # ray.cancel: the run keeps its checkpoint in the node's cache
        stop_kernels(final=False)  # the worker goes on to other tasks
        raise
    files = {
        name: content
        for name, content in pack(run_dir).items()
        if not name.startswith(".") and name != FAILED
    }
    shutil.rmtree(run_dir, ignore_errors=True)
    for empty in (run_dir.parent, run_dir.parent.parent):  # runs/<key>/<setting>
        with contextlib.suppress(OSError):
            empty.rmdir()
    return outcome.ok, outcome.message, files


def run_on_ray(
    todo: list[Run],
    configs: dict[Run, RunConfig],
    overrides: dict[str, Any],
    *,
    data_dir: str,
    gpu: bool,
    cpus: int,
    weights: dict[str, str],
    options: dict[str, Any],
) -> Iterator[Outcome]:
    """Submit every run of `todo` as a Ray task (one GPU each, or `cpus` CPUs) and yield their
    outcomes as they finish, each run's files written into its local folder first.

    `overrides`: the run settings without paths (the worker has its own); `data_dir`: the local
    folder of cifar-10-batches-py/; `weights`: the local weight files by model; `options`:
    `execute`'s keywords. The local run folders stay locked until the last run has ended, so
    that no other process runs them meanwhile."""
    import ray

    task = ray.remote(max_retries=RETRIES)(run_task).options(
        num_gpus=1 if gpu else 0, num_cpus=1 if gpu else cpus
    )
    data, shipped = ship(todo, data_dir, weights)
    pending = {}
    with ExitStack() as locks:
        try:
            for run in todo:
                cfg = configs[run]
                run_dir = Path(cfg.output_dir)
                try:
                    locks.enter_context(run_lock(run_dir))
                except Busy as e:
                    yield Outcome(run, False, str(e))
                    continue
                done = state(cfg) == State.DONE
                if done and not options.get("force"):
                    yield Outcome(run, True, "done by another process")
                    continue
                # of an earlier, unfinished attempt; --force retrains a finished run anew
                checkpoints = {} if done else pack(run_dir, (LATEST, PREVIOUS))
                resume = Bundle.put(checkpoints) if checkpoints else None
                model_weights = shipped.get(run.model) if run.pretrained else None
                # the run's own weights label: one's own file keeps it whatever its name
                mine = dict(overrides, weights=cfg.weights)
                pending[task.remote(run, mine, data, model_weights, resume, options)] = run
            while pending:
                [ref], _ = ray.wait(list(pending), num_returns=1)
                run = pending.pop(ref)
                yield store(run, configs[run], ref, options.get("keep_checkpoints", False))
        finally:  # interrupted (Ctrl-C) while tasks are running: they stop too
            cancel(list(pending))


def ship(
    todo: list[Run], data_dir: str, weights: dict[str, str]
) -> tuple[Bundle, dict[str, Bundle]]:
    """The CIFAR-10 files, and the weights file of each model with a pretrained run in `todo`,
    put into Ray's object store once."""
    data = Bundle.put(pack(Path(data_dir) / "cifar-10-batches-py"))
    needed = {r.model for r in todo if r.pretrained}
    shipped = {
        m: Bundle.put(pack(Path(p).parent, [Path(p).name]))
        for m, p in weights.items()
        if m in needed
    }
    return data, shipped


def cancel(refs: list[Any], grace: float = CANCEL_GRACE_S) -> None:
    """Stop the tasks of `refs`: Ray raises KeyboardInterrupt in each running one, whose run
    stops its kernel and keeps its checkpoint on its node (`run_task`); a task still running
    after `grace` seconds has its worker killed."""
    import ray

    if not refs:
        return
    for ref in refs:
        ray.cancel(ref)
    _, running = ray.wait(refs, num_returns=len(refs), timeout=grace)
    for ref in running:
        ray.cancel(ref, force=True)


def store(run: Run, cfg: RunConfig, ref: Any, keep_checkpoints: bool) -> Outcome:
    """Write a finished task's files into the run's local folder, as a local run leaves them."""
    import ray

    run_dir = Path(cfg.output_dir)
    try:
        ok, message, files = ray.get(ref)
    except ray.exceptions.WorkerCrashedError:
        ok, message, files = False, f"its Ray worker died {RETRIES + 1} times", {}
    except ray.exceptions.RayError as e:
        ok, message, files = False, first_line(e), {}
    try:
        if ok and METRICS in files:
            files[METRICS] = localize(files[METRICS], cfg)
        unpack(files, run_dir)
        if ok:
            mark_finished(run_dir, keep_checkpoints)
        else:
            record_failure(run_dir, message, run_dir / f"{run.name}.ipynb")
    except OSError as e:
        return Outcome(run, False, f"its results could not be written to {run_dir}: {e}")
    return Outcome(run, ok, message)


def localize(raw: bytes, cfg: RunConfig) -> bytes:
    """metrics.json with the worker's paths replaced by the local ones (portable, as every
    metrics.json keeps them)."""
    metrics = json.loads(raw)
    for key in ("data_dir", "output_dir", "weights_path"):
        metrics["config"][key] = portable(getattr(cfg, key), cfg.output_dir)
    metrics["inputs"] = input_identity(cfg.data_dir, cfg.weights_path)  # not the node's copies
    return (json.dumps(metrics, indent=2) + "\n").encode()
