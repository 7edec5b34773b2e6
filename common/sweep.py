"""Executing runs with papermill: one notebook per run, locked, recorded as done or failed."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .checkpoint import prune_checkpoints
from .config import RunConfig
from .files import write_json, write_text
from .grid import FAILED, Run, notebook_parameters, status
from .results import load_metrics

KERNEL_START_RETRIES = 3


def _ipc_kernel_manager() -> type:
    """A kernel manager talking over Unix sockets instead of TCP ports: parallel kernels cannot
    race for the same port, and nothing listens on the network."""
    from jupyter_client.manager import AsyncKernelManager

    class IPCKernelManager(AsyncKernelManager):
        transport = "ipc"

    return IPCKernelManager


class Busy(Exception):
    """Another process holds the run's lock."""


@dataclass
class Outcome:
    run: Run
    ok: bool
    message: str


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """An exclusive, non-blocking lock on the run folder, released when the process dies."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / ".lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Busy(f"{run_dir} is being run by another process") from None
        yield


def export_html(notebook: Path) -> Path:
    """Write `<notebook>.html` beside the executed notebook, readable without Jupyter."""
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_filename(str(notebook))
    html = notebook.with_suffix(".html")
    write_text(html, body)
    return html


def _error_line(exc: BaseException) -> str:
    """The one line that says why a notebook failed: the exception raised in its cell."""
    import papermill as pm

    if isinstance(exc, pm.PapermillExecutionError):
        return f"{exc.ename}: {exc.evalue}".strip().splitlines()[0]
    return f"{type(exc).__name__}: {exc}".strip().splitlines()[0]


def execute(run: Run, cfg: RunConfig, kernel: str = "python3", keep_checkpoints: bool = False,
            extra_keys: Iterable[str] = (), device: str | None = None) -> Outcome:
    """Execute the run's notebook with papermill into its folder and export it to HTML.

    The executed notebook is written as it runs (so a failure can be read), metrics.json is
    written by the notebook itself. A failure is recorded in failed.json with its one-line
    reason; a success removes it and prunes the resumable checkpoints unless asked to keep them.
    A kernel that fails to start (a port race among parallel kernels) is started again.
    """
    import papermill as pm

    run_dir = Path(cfg.output_dir)
    output = run_dir / f"{run.name}.ipynb"
    running = run_dir / f".{run.name}.running.ipynb"  # papermill rewrites it after every cell
    params = notebook_parameters(cfg, extra_keys) | ({"device": device} if device else {})
    try:
        with run_lock(run_dir):
            if status(run, cfg) == "done":  # finished by another process meanwhile
                return Outcome(run, True, "done by another process")
            for attempt in range(1, KERNEL_START_RETRIES + 1):
                try:
                    try:
                        pm.execute_notebook(str(run.notebook), str(running), parameters=params,
                                            kernel_name=kernel, progress_bar=False,
                                            cwd=str(run.notebook.parent), language="python",
                                            kernel_manager_class=_ipc_kernel_manager())
                    finally:  # keep the executed notebook, error cells included
                        if running.exists():
                            os.replace(running, output)
                    break
                except pm.PapermillExecutionError:
                    raise
                except Exception as e:  # the kernel died or never started
                    if attempt == KERNEL_START_RETRIES or not _kernel_trouble(e):
                        raise
                    time.sleep(attempt)
            if output.exists():
                export_html(output)
            if not load_metrics(run_dir):
                raise RuntimeError("the notebook finished without writing metrics.json")
            (run_dir / FAILED).unlink(missing_ok=True)
            if not keep_checkpoints:
                prune_checkpoints(run_dir)
            return Outcome(run, True, "done")
    except Busy as e:
        return Outcome(run, False, str(e))
    except Exception as e:
        reason = _error_line(e)
        if output.exists():
            try:
                export_html(output)
            except Exception:  # the failure itself matters more than its HTML copy
                pass
        write_json(run_dir / FAILED, {"error": reason, "notebook": str(output),
                                      "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        return Outcome(run, False, reason)


def _kernel_trouble(exc: BaseException) -> bool:
    """True for the errors of a kernel that died or did not start, as opposed to code errors."""
    text = f"{type(exc).__name__} {exc}".lower()
    return any(w in text for w in ("kernel", "zmq", "address already in use", "timeout"))
