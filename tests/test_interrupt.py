"""Ctrl-C, SIGTERM and kill -9 stop every run of run_all.py: its notebook kernels (--jobs 2), its
direct runs, its Ray tasks; each run keeps its last checkpoint, and the next call resumes it to
the numbers of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import run_all
from tests.test_run_all import cli, cli_args

RUNS = ("resnet18_data-100_seed0", "resnet18_data-100_seed1")
# Two runs at once, long enough (in epochs of one tiny step, a checkpoint after each) to be
# mid-run at each of three signals, and short enough to finish on the call that resumes them.
EPOCHS = 16
ARGS = ("--settings=scratch", "--models=resnet18", "--fractions=1", f"--set=epochs={EPOCHS}")
ARGS += ("--set=steps_per_epoch=1",)
LAST = "--set=checkpoint_every=3600"  # not in the training's key: the calls that finish save once
MARK = "BIG_VS_SMALL_INTERRUPT_TEST"  # in the environment of every process of the call
# run_all.py's share of the cores for each of two CPU jobs; the direct calls train with as many
# threads, as CPU numbers change with the thread count
SHARE = str(max(1, len(os.sched_getaffinity(0)) // 2))


def marked(mark: str) -> dict[int, list[bytes]]:
    """The processes whose environment holds MARK=mark, with their environments: run_all.py and
    every process it started (kernels sit in sessions of their own)."""
    needle, found = f"{MARK}={mark}".encode(), {}
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if needle in (env := (proc / "environ").read_bytes().split(b"\0")):
                found[int(proc.name)] = env
        except OSError:  # ended meanwhile, or not ours
            continue
    return found


def wait_for(condition, seconds: float, proc) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, proc.communicate(timeout=30)[0]
        time.sleep(0.1)


def signal_mid_run(workdir: Path, sig: int, *extra: str, env: dict) -> tuple[int, str, dict]:
    """Start the grid, signal run_all.py once every run has written a checkpoint newer than
    any before, and wait for the call to end: (its exit status, its output, its processes)."""
    dirs = [workdir / "runs" / "scratch" / run for run in RUNS]
    before = {d: (d / "checkpoint.pt").stat().st_mtime_ns if d.exists() else 0 for d in dirs}
    mark = f"{workdir}-{sig}"
    proc = cli(
        workdir, *ARGS, "--seeds=0,1", "--jobs=2", *extra, background=True, env=env | {MARK: mark}
    )

    def checkpointed() -> bool:
        files = [d / "checkpoint.pt" for d in dirs]
        return all(f.exists() and f.stat().st_mtime_ns > before[f.parent] for f in files)

    wait_for(checkpointed, 300, proc)
    processes = marked(mark)
    if sig == signal.SIGKILL:
        os.killpg(proc.pid, sig)  # all of it, at once: nothing runs a handler
    else:
        proc.send_signal(sig)  # to run_all.py alone, not its group: it must stop the rest itself
    signalled = time.monotonic()
    output = proc.communicate(timeout=30)[0]
    wait_for(lambda: not marked(mark), 10, proc)
    assert time.monotonic() - signalled < 10
    return proc.returncode, output, processes


def test_a_signal_stops_every_run_and_the_next_call_resumes_them(workdir, tmp_path_factory, capsys):
    # notebook runs, two kernels at once, each with its share of the cores; Ctrl-C
    rc, output, processes = signal_mid_run(workdir, signal.SIGINT, env={"OMP_NUM_THREADS": None})
    assert len(processes) >= 3  # run_all.py and two kernels at least
    shared = [env for env in processes.values() if f"OMP_NUM_THREADS={SHARE}".encode() in env]
    assert len(shared) >= 2  # each notebook's papermill and kernel
    assert rc == 130 and "interrupted; finished runs are kept; the next call resumes" in output
    assert all(f"scratch/{run} at epoch" in output for run in RUNS), output
    for run in RUNS:
        run_dir = workdir / "runs" / "scratch" / run
        kept = [(run_dir / f).exists() for f in ("checkpoint.pt", "checkpoint.prev.pt")]
        assert any(kept) and not (run_dir / "metrics.json").exists()  # prev: mid-replace
    # direct runs, in run_all.py's own threads: SIGTERM, then kill -9; each time they resume
    threads = {"OMP_NUM_THREADS": SHARE}
    rc, output, _ = signal_mid_run(workdir, signal.SIGTERM, "--direct", env=threads)
    assert rc == 130 and all(f"resuming scratch/{run} from epoch" in output for run in RUNS)
    rc, _, _ = signal_mid_run(workdir, signal.SIGKILL, "--direct", env=threads)
    assert rc == -signal.SIGKILL
    assert run_all.main(cli_args(workdir, *ARGS, "--seeds=0,1", "--dry-run")) == 0
    listed = capsys.readouterr().out
    assert all(f"todo  scratch    {run}  resumes at epoch" in listed for run in RUNS), listed
    # the next call finishes both, as an uninterrupted run of seed 0 (in this process, as many
    # threads as they had)
    clean = tmp_path_factory.mktemp("clean")
    (clean / "data").symlink_to(workdir / "data", target_is_directory=True)
    own = torch.get_num_threads()
    torch.set_num_threads(int(SHARE))
    try:
        assert run_all.main(cli_args(workdir, *ARGS, "--seeds=0,1", "--direct", LAST)) == 0
        assert run_all.main(cli_args(clean, *ARGS, "--seeds=0", "--direct", LAST)) == 0
    finally:
        torch.set_num_threads(own)
    out = capsys.readouterr().out
    assert all(f"resuming scratch/{run} from epoch" in out for run in RUNS), out
    a, b = (
        json.loads((d / "runs/scratch" / RUNS[0] / "metrics.json").read_text())
        for d in (workdir, clean)
    )
    assert len(a["history"]) == EPOCHS
    assert a["history"] == b["history"] and a["test_acc"] == b["test_acc"]


class FakeRay:
    """Ray as run_on_ray uses it, where Ctrl-C comes while the driver waits for its tasks:
    records what is cancelled; one task stops when cancelled, the other does not."""

    def __init__(self) -> None:
        self.cancelled: list[tuple[str, bool]] = []
        self.waits = 0

    def remote(self, **kw: object):
        return lambda function: SimpleNamespace(remote=lambda run, *args: f"task {run.seed}")

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
    overrides = {"profile": "quick"}
    outcomes = cluster.run_on_ray(runs, configs, overrides, str(fake_data), False, 1, {}, {})
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
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the worker's threads, restored for this process
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
    stopped = []
    monkeypatch.setattr(cluster, "stop_notebooks", lambda **kw: stopped.append(kw))

    def cancelled(run, cfg, **options):  # ray.cancel raises KeyboardInterrupt mid-run
        Path(cfg.output_dir).mkdir(parents=True)
        (Path(cfg.output_dir) / "checkpoint.pt").write_bytes(b"epoch 1")
        raise KeyboardInterrupt

    monkeypatch.setattr(cluster, "execute", cancelled)
    run = Run("scratch", "resnet18", 1.0, 0)
    with pytest.raises(KeyboardInterrupt):  # data: no files, nothing to fetch
        cluster.run_task(run, {"profile": "quick"}, ("data", (), None), None, {}, {})
    assert stopped == [{"final": False}]  # its kernel, and the worker takes further tasks
    assert list(tmp_path.glob(f"big-vs-small-*/runs/*/scratch/{run.name}/checkpoint.pt"))
