"""A run's folder and its state: the one owner of failed.json, the lock, and of what "the same
run" is (`same_run`: the same training settings, data files and weights file), which decides
whether a run is done (its metrics.json, written by `results.save_metrics`)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Any

from .config import RunConfig
from .files import read_json, write_json
from .results import input_identity, load_metrics
from .training import prune_checkpoints

FAILED = "failed.json"
LOCK = ".lock"


class State(StrEnum):
    """Where a run of the grid stands."""

    DONE = "done"  # complete metrics for the same training settings, data and weights files
    FAILED = "failed"  # its last attempt failed: failed.json says why
    TODO = "todo"
    NOT_POSSIBLE = "not possible"  # it needs what this machine cannot have (ImageNet weights)


class Busy(Exception):
    """Another process holds the run folder's lock."""


def same_run(metrics: dict[str, Any], cfg: RunConfig) -> bool:
    """Whether the finished run `metrics` records is the run `cfg` describes: the same training
    and no input file known on both sides changed (records from before identities were kept, or
    a run whose file was not known, count as the same)."""
    key = cfg.training_key()
    saved = metrics["config"]  # today's schema: load_metrics upgrades older records
    files, now = metrics["inputs"] or {}, input_identity(cfg.data_dir, cfg.weights_path)
    same_files = all(files.get(k) is None or now[k] is None or files[k] == now[k] for k in now)
    return {k: saved.get(k) for k in key} == key and same_files


def state(cfg: RunConfig) -> State:
    """DONE, FAILED or TODO for the run `cfg` describes."""
    metrics = load_metrics(cfg.output_dir)
    if metrics and same_run(metrics, cfg):
        return State.DONE
    return State.FAILED if (Path(cfg.output_dir) / FAILED).exists() else State.TODO


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """An exclusive, non-blocking lock on the run folder, released when the process dies; its
    file is removed when the lock is released, so a finished run leaves none behind."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK
    while True:
        f = open(path, "a")  # noqa: SIM115 - open while the lock is held, closed below
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            raise Busy(f"{run_dir} is being run by another process") from None
        # the holder before us may have removed the file we opened: lock the one there now
        with contextlib.suppress(FileNotFoundError):
            if os.stat(path).st_ino == os.fstat(f.fileno()).st_ino:
                break
        f.close()
    try:
        yield
    finally:
        path.unlink(missing_ok=True)  # while still holding it: no one can lock this file anew
        f.close()


def failure_reason(run_dir: str | Path) -> str | None:
    """The one-line reason of the run's last failure, if failed.json holds one."""
    record = read_json(Path(run_dir) / FAILED)
    return record.get("error") if isinstance(record, dict) else None


def record_failure(run_dir: Path, reason: str, notebook: Path) -> None:
    """Write the run's failed.json: why it failed, where its executed notebook is, and when."""
    write_json(
        run_dir / FAILED,
        {"error": reason, "notebook": str(notebook), "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
    )


def mark_finished(run_dir: Path, keep_checkpoints: bool) -> None:
    """A run that finished: forget its earlier failure, and drop its resumable checkpoints
    (keeping best.pt) unless asked to keep them."""
    (run_dir / FAILED).unlink(missing_ok=True)
    if not keep_checkpoints:
        prune_checkpoints(run_dir)
