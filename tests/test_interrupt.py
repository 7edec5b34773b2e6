"""Ctrl-C and SIGTERM stop every run of run_all.py: its notebook kernels (--jobs 2), its direct
runs (in-process), its Ray tasks; each run keeps its last checkpoint, and the next call resumes
it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.test_run_all import cli

RUNS = ("resnet18_data-100_seed0", "resnet18_data-100_seed1")
# Two runs at once, long enough (in epochs of two tiny steps, a checkpoint after each) to be
# mid-run when they are signalled, even when the slower has only its first checkpoint (5 epochs
# were not, under load), and short enough to finish on the call that resumes them.
EPOCHS = 12
ARGS = (
    "--settings=scratch",
    "--models=resnet18",
    "--fractions=1",
    "--seeds=0,1",
    "--jobs=2",
    f"--set=epochs={EPOCHS}",
)
MARK = "BIG_VS_SMALL_INTERRUPT_TEST"  # in the environment of every process of the call


@pytest.fixture
def workdir(tmp_path, fake_data):
    (tmp_path / "data").symlink_to(fake_data, target_is_directory=True)
    return tmp_path


def marked(mark: str) -> list[int]:
    """The processes whose environment holds MARK=mark: run_all.py and every process it started
    (kernels sit in sessions of their own, so no process group or session finds them all)."""
    needle = f"{MARK}={mark}".encode()
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if needle in (proc / "environ").read_bytes().split(b"\0"):
                found.append(int(proc.name))
        except OSError:  # ended meanwhile, or not ours
            continue
    return found


def wait_for(condition, seconds: float, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, proc.communicate(timeout=30)[0]
        time.sleep(0.1)


def signal_mid_run(workdir: Path, sig: int, *extra: str) -> tuple[int, str, float]:
    """Start the grid, signal run_all.py once every run has written a checkpoint newer than
    any before, and wait for the call to end: (its exit status, its output, when no process
    of it was left, in seconds after the signal)."""
    dirs = [workdir / "runs" / "scratch" / run for run in RUNS]
    before = {d: (d / "checkpoint.pt").stat().st_mtime_ns if d.exists() else 0 for d in dirs}
    mark = f"{workdir}-{sig}"
    proc = cli(workdir, *ARGS, *extra, background=True, env={MARK: mark})

    def checkpointed() -> bool:
        files = [d / "checkpoint.pt" for d in dirs]
        return all(f.exists() and f.stat().st_mtime_ns > before[f.parent] for f in files)

    wait_for(checkpointed, 300, proc)
    assert len(marked(mark)) >= (1 if "--direct" in extra else 3)  # run_all.py and 2 kernels
    proc.send_signal(sig)  # to run_all.py alone, not its group: it must stop the rest itself
    signalled = time.monotonic()
    output = proc.communicate(timeout=30)[0]
    wait_for(lambda: not marked(mark), 10, proc)
    return proc.returncode, output, time.monotonic() - signalled


def test_a_signal_stops_every_run_and_the_next_call_resumes_them(workdir):
    # notebook runs, two kernels at once, Ctrl-C
    rc, output, took = signal_mid_run(workdir, signal.SIGINT)
    assert rc == 130 and "interrupted; finished runs are kept; the next call resumes" in output
    assert all(f"scratch/{run} at epoch" in output for run in RUNS), output
    assert took < 10
    for run in RUNS:
        run_dir = workdir / "runs" / "scratch" / run
        assert (run_dir / "checkpoint.pt").exists() and not (run_dir / "metrics.json").exists()
    # direct runs, in run_all.py's own threads, SIGTERM: they resume, and stop again
    rc, output, took = signal_mid_run(workdir, signal.SIGTERM, "--direct")
    assert rc == 130 and all(f"resuming scratch/{run} from epoch" in output for run in RUNS)
    assert took < 10
    # the next call resumes both and finishes them
    done = cli(workdir, *ARGS, "--direct")
    assert all(f"resuming scratch/{run} from epoch" in done.stdout for run in RUNS), done.stdout
    for run in RUNS:
        metrics = json.loads((workdir / "runs" / "scratch" / run / "metrics.json").read_text())
        assert len(metrics["history"]) == EPOCHS


class FakeRay:
    """Ray as run_on_ray uses it, where Ctrl-C comes while the driver waits for its tasks:
    records what is cancelled; one task stops when cancelled, the other does not."""

    def __init__(self) -> None:
        self.cancelled: list[tuple[str, bool]] = []
        self.waits = 0

    def remote(self, **kw: object):
        class Task:
            def options(self, **kw: object) -> Task:
                return self

            def remote(self, run, *args: object) -> str:
                return f"task {run.seed}"

        return lambda function: Task()

    def put(self, value: object) -> str:
        return "object"

    def wait(self, refs: list[str], num_returns: int = 1, timeout: float | None = None):
        self.waits += 1
        if self.waits == 1:
            raise KeyboardInterrupt  # Ctrl-C
        stopped = [r for r in refs if r == "task 0"]
        return stopped, [r for r in refs if r not in stopped]

    def cancel(self, ref: str, force: bool = False) -> None:
        self.cancelled.append((ref, force))

    def get_runtime_context(self) -> SimpleNamespace:  # a worker's
        return SimpleNamespace(get_assigned_resources=lambda: {"CPU": 1.0})


def test_an_interrupted_ray_driver_cancels_its_tasks(tmp_path, fake_data, monkeypatch):
    from common import cluster
    from common.runner import Run, run_config

    ray = FakeRay()
    monkeypatch.setitem(sys.modules, "ray", ray)
    runs = [Run("scratch", "resnet18", 1.0, seed) for seed in (0, 1)]
    configs = {r: run_config(r, tmp_path / "runs", profile="quick") for r in runs}
    outcomes = cluster.run_on_ray(
        runs,
        configs,
        {"profile": "quick"},
        data_dir=str(fake_data),
        gpu=False,
        cpus=1,
        weights={},
        options={},
    )
    with pytest.raises(KeyboardInterrupt):
        next(outcomes)
    # each asked to stop (its run then stops its kernel), the one still running killed
    assert ray.cancelled == [("task 0", False), ("task 1", False), ("task 1", True)]
    assert not list((tmp_path / "runs").glob("*/*/.lock"))  # the local folders are unlocked


def test_a_cancelled_ray_task_stops_its_kernel_and_keeps_its_checkpoint(tmp_path, monkeypatch):
    from common import cluster
    from common.runner import Run

    monkeypatch.setitem(sys.modules, "ray", FakeRay())
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the node's cache goes here
    stopped = []
    monkeypatch.setattr(cluster, "stop_notebooks", lambda **kw: stopped.append(kw))

    def cancelled(run, cfg, **options):  # ray.cancel raises KeyboardInterrupt mid-run
        Path(cfg.output_dir).mkdir(parents=True)
        (Path(cfg.output_dir) / "checkpoint.pt").write_bytes(b"epoch 1")
        raise KeyboardInterrupt

    monkeypatch.setattr(cluster, "execute", cancelled)
    data = cluster.Bundle("data", (), None)  # no files: nothing to fetch
    run = Run("scratch", "resnet18", 1.0, 0)
    with pytest.raises(KeyboardInterrupt):
        cluster.run_task(run, {"profile": "quick"}, data, None, None, {})
    assert stopped == [{"final": False}]  # its kernel, and the worker takes further tasks
    assert list(tmp_path.glob(f"big-vs-small-*/runs/*/scratch/{run.name}/checkpoint.pt"))
