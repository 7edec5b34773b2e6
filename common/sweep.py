"""Executing runs: `execute`, the one function that runs one run in its locked folder, through
its notebook with papermill (with its HTML) or directly in this process; the scaling notebook;
the Jupyter kernel that runs them, and `stop_kernels`, which ends every kernel this process
started (on Ctrl-C)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import RunConfig
from .errors import UserError
from .files import write_text
from .grid import NOTEBOOKS, Run, notebook_parameters
from .results import EXECUTED, load_metrics
from .run import train_and_save
from .rundir import Busy, State, mark_finished, record_failure, run_lock, state
from .training import KEEP_CHECKPOINTS, prune_checkpoints

KERNEL_START_RETRIES = 3
# The Jupyter kernel of the project's virtual environment, which the set-up command registers
# (README) and the notebooks name: `python3` is the Python of whichever Jupyter opens them,
# which need not have this project's packages.
KERNEL = "big-vs-small"
# The process groups of the kernels this process started and has not shut down yet: jupyter_client
# starts each kernel in a session of its own (a terminal's Ctrl-C does not reach it), so each
# leads a group holding whatever it starts in turn.
_KERNELS: set[int] = set()
_KERNELS_LOCK = threading.Lock()
_STOPPED = threading.Event()  # set by a final stop_kernels: a kernel started after it is ended
STOP_GRACE_S = 3.0  # a stopped kernel's time to end on SIGTERM before it gets SIGKILL


def check_kernel(name: str) -> None:
    """Raise a one-line UserError unless Jupyter has the kernel `name` and its Python exists."""
    from jupyter_client.kernelspec import KernelSpecManager

    manager = KernelSpecManager()
    specs = manager.find_kernel_specs()
    register = (
        f"`{sys.executable} -m ipykernel install --sys-prefix --name {name} "
        f'--display-name "Python ({name})"`'
    )
    if name not in specs and name != KERNEL:
        raise UserError(
            f"Jupyter has no kernel named {name!r} (it has: {', '.join(sorted(specs))}): "
            "pick one with --kernel"
        )
    if name not in specs:
        raise UserError(
            f"Jupyter has no kernel named {name!r}: register this environment's with {register}, "
            "or pass --kernel python3"
        )
    program = Path(manager.get_kernel_spec(name).argv[0])
    if program.is_absolute() and not program.exists():  # the environment it named is gone
        raise UserError(f"the Jupyter kernel {name!r} runs {program}, which is gone: {register}")


def _ipc_kernel_manager(env: dict[str, str] | None = None) -> type:
    """A kernel manager talking over Unix sockets in a private temporary folder instead of TCP
    ports: parallel kernels cannot race for the same port or socket, nothing listens on the
    network, and nothing is left beside the notebooks. Its kernels start with this process's
    environment updated by `env` (e.g. the one GPU a job owns), which threads cannot set."""
    from jupyter_client.manager import AsyncKernelManager

    extra = dict(env or {})

    class IPCKernelManager(AsyncKernelManager):
        transport = "ipc"

        async def _async_pre_start_kernel(self, **kw: Any) -> tuple[list[str], dict[str, Any]]:
            kw["env"] = {**os.environ, **kw.get("env", {}), **extra}
            return await super()._async_pre_start_kernel(**kw)

        async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
            await super()._async_launch_kernel(kernel_cmd, **kw)
            self.group = self.provisioner.pgid or self.provisioner.pid
            with _KERNELS_LOCK:
                if not _STOPPED.is_set():
                    _KERNELS.add(self.group)
                    return
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.group, signal.SIGKILL)  # e.g. a retry, started while stopping
            raise KernelStopped("the grid was interrupted")

        def __init__(self, **kwargs: object) -> None:
            super().__init__(**kwargs)
            self.ipc_dir = tempfile.mkdtemp(prefix="kernel-")
            self.ip = os.path.join(self.ipc_dir, "ipc")

        async def _async_cleanup_resources(self, restart: bool = False) -> None:
            await super()._async_cleanup_resources(restart=restart)
            with _KERNELS_LOCK:
                _KERNELS.discard(getattr(self, "group", None))
            if not restart:
                shutil.rmtree(self.ipc_dir, ignore_errors=True)

        cleanup_resources = _async_cleanup_resources

    return IPCKernelManager


class KernelStopped(Exception):
    """A kernel started after `stop_kernels`, and ended at once."""


def stop_kernels(grace: float = STOP_GRACE_S, final: bool = True) -> None:
    """End every kernel this process started, with whatever each started (its process group):
    SIGTERM, then SIGKILL for what is left after `grace` seconds. A run killed so keeps its last
    checkpoint, written atomically, and resumes from it on the next call. `final`: so is every
    kernel started afterwards (the process is about to end)."""
    with _KERNELS_LOCK:
        groups = sorted(_KERNELS)
        _KERNELS.clear()
        if final:
            _STOPPED.set()
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for group in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, sig)
        deadline = time.monotonic() + grace
        while groups and time.monotonic() < deadline:
            groups = [g for g in groups if _group_alive(g)]
            time.sleep(0.05)
        if not groups:
            return


def _group_alive(group: int) -> bool:
    """Whether a process of `group` is left; its leader, our child, is reaped if it ended (else
    its zombie would count as alive)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(group, os.WNOHANG)
    try:
        with contextlib.suppress(PermissionError):  # alive, and not ours to signal
            os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


@dataclass
class Outcome:
    run: Run
    ok: bool
    message: str


def export_html(notebook: Path) -> None:
    """Write `<notebook>.html` beside the executed notebook, readable without Jupyter."""
    from nbconvert import HTMLExporter

    write_text(notebook.with_suffix(".html"), HTMLExporter().from_filename(str(notebook))[0])


def execute_scaling(
    output_dir: str, images_dir: str, results_dir: str, profile: str, kernel: str
) -> tuple[list[Path], str | None]:
    """Run notebooks/scaling.ipynb over every run of `profile` into results/ (with its HTML);
    return the figures it drew and, if it failed, the one-line reason."""
    output = Path(results_dir) / "scaling.ipynb"
    output.parent.mkdir(parents=True, exist_ok=True)  # papermill writes there, making nothing
    folder = Path(images_dir) / "scaling"
    before = {f: f.stat().st_mtime_ns for f in folder.glob("*.png")}
    params = {"output_dir": output_dir, "images_dir": images_dir, "profile": profile}
    try:
        run_notebook(NOTEBOOKS / "scaling.ipynb", output, params, kernel, {})
        error = None
    except Exception as e:
        error = _error_line(e)
    return [f for f in sorted(folder.glob("*.png")) if before.get(f) != f.stat().st_mtime_ns], error


def _error_line(exc: BaseException) -> str:
    """The one line that says why a notebook failed: the exception raised in its cell."""
    import papermill as pm

    failed = isinstance(exc, pm.PapermillExecutionError)
    text = f"{exc.ename}: {exc.evalue}" if failed else f"{type(exc).__name__}: {exc}"
    return text.strip().splitlines()[0]


def execute(
    run: Run,
    cfg: RunConfig,
    *,
    direct: bool = False,
    kernel: str = KERNEL,
    keep_checkpoints: bool = False,
    extra_keys: Iterable[str] = (),
    device: str | None = None,
    env: dict[str, str] | None = None,
    force: bool = False,
) -> Outcome:
    """Execute one run, the only function that does: lock its folder, skip it if done (`force`:
    retrain it from the start), train it (its notebook through papermill, or `direct`ly in this
    process) on `device`, check its record, unlock. A run resumes from its last checkpoint.

    A failure is recorded in failed.json with its one-line reason; a success removes it and
    prunes the resumable checkpoints unless asked to keep them. Notebook runs keep their executed
    notebook and its HTML beside the results; their kernel gets `env` on top of our environment.
    """
    cfg = dataclasses.replace(cfg, device=device) if device else cfg  # not in its training_key
    run_dir = Path(cfg.output_dir)
    output = run_dir / f"{run.name}.ipynb"
    try:
        with run_lock(run_dir):
            if state(cfg) == State.DONE:
                if not force:  # finished by another process
                    return Outcome(run, True, "done by another process")
                prune_checkpoints(run_dir)  # --force retrains, never resumes the finished run
            if direct:
                train_and_save(cfg, keep_checkpoints, executed="direct", direct=True)
            else:
                env = (env or {}) | {EXECUTED: "papermill"}  # the record says how it ran
                env |= {KEEP_CHECKPOINTS: "1"} if keep_checkpoints else {}
                run_notebook(
                    run.notebook, output, notebook_parameters(cfg, extra_keys), kernel, env
                )
            if not load_metrics(run_dir):
                raise RuntimeError("the run finished without writing metrics.json")
            mark_finished(run_dir, keep_checkpoints)
            return Outcome(run, True, "done")
    except Busy as e:
        return Outcome(run, False, str(e))
    except Exception as e:
        reason = _error_line(e)
        if output.exists():
            with contextlib.suppress(Exception):  # the failure matters more than its HTML
                export_html(output)
        record_failure(run_dir, reason, output)
        return Outcome(run, False, reason)


def run_notebook(
    notebook: Path, output: Path, params: dict[str, Any], kernel: str, env: dict[str, str]
) -> None:
    """Execute `notebook` with papermill into `output`, then export it to HTML. The executed
    notebook is written as it runs (so a failure can be read); a run's metrics.json is written
    by its notebook itself. A kernel that dies or fails to start is started again."""
    import papermill as pm

    running = output.with_name(f".{output.stem}.running.ipynb")  # rewritten after every cell
    for attempt in range(1, KERNEL_START_RETRIES + 1):
        try:
            try:
                pm.execute_notebook(
                    str(notebook),
                    str(running),
                    parameters=params,
                    kernel_name=kernel,
                    progress_bar=False,
                    cwd=str(notebook.parent),
                    language="python",
                    kernel_manager_class=_ipc_kernel_manager(env),
                )
            finally:  # keep the executed notebook, error cells included
                if running.exists():
                    os.replace(running, output)
            break
        except pm.PapermillExecutionError:
            raise
        except Exception as e:  # the kernel died or never started
            if attempt == KERNEL_START_RETRIES or not _kernel_trouble(e) or _STOPPED.is_set():
                raise
            time.sleep(attempt)
    if output.exists():
        export_html(output)


def _kernel_trouble(exc: BaseException) -> bool:
    """True for the errors of a kernel that died or did not start, as opposed to code errors."""
    text = f"{type(exc).__name__} {exc}".lower()
    return any(w in text for w in ("kernel", "zmq", "address already in use", "timeout"))
