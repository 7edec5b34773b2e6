"""run_all.py --ray against a real local Ray cluster, and --ray's bad-input errors."""

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import pytest

import common.cluster
from common.cluster import first_line, localize, pack, unpack
from common.errors import UserError
from common.runner import Run, run_config
from tests.conftest import REPO
from tests.test_run_all import cli, one_line_error

RUN = "resnet18_data-100_seed0"
ARGS = ("--settings", "scratch", "--models", "resnet18", "--fractions", "1/16,1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def session_pids(sid: int) -> list[int]:
    """The processes of session `sid`: a `ray start` and every Ray process it started."""
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile
            continue
        if int(fields[3]) == sid:  # state, ppid, pgrp, session
            pids.append(int(proc.name))
    return pids


def start_head(temp: Path, node_tmp: Path) -> tuple[subprocess.Popen, str]:
    """`ray start --head` on loopback with two CPUs and no GPU, its output in node_tmp/head.log;
    return it and its address once a driver can join it (its raylet up, not only its GCS port),
    or raise with the head's last lines and its processes' warnings and errors."""
    port = free_port()
    with (node_tmp / "head.log").open("ab") as log:
        start = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "ray"),
                "start",
                "--head",
                "--block",
                f"--port={port}",
                "--node-ip-address=127.0.0.1",
                "--num-cpus=2",
                "--num-gpus=0",
                "--include-dashboard=false",
                "--disable-usage-stats",
                "--object-store-memory=200000000",
                f"--temp-dir={temp}",
            ],
            env=dict(os.environ, TMPDIR=str(node_tmp), PYTHONUNBUFFERED="1"),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    address = f"127.0.0.1:{port}"
    join = [sys.executable, "-c", "import ray, sys; ray.init(address=sys.argv[1])", address]
    try:
        probe = subprocess.run(join, capture_output=True, text=True, timeout=300)
        why = probe.stderr if probe.returncode else ""
    except subprocess.TimeoutExpired:
        why = "ray.init did not return in 300 s\n"
    if why or start.poll() is not None:
        tail = (node_tmp / "head.log").read_text()[-2000:] + why
        for log in (temp / "session_latest/logs").glob("*.out"):  # their warnings and errors
            tail += "".join(f"{log.name}: {line}\n" for line in warnings_in(log))
        stop_head(start, temp)
        raise RuntimeError(f"the test's Ray head at {address} cannot be joined:\n{tail}")
    return start, address


def warnings_in(log: Path) -> list[str]:
    """The warning, error and fatal lines of a Ray process's log ("[time W pid tid] ...")."""
    return [line for line in log.read_text().splitlines() if re.match(r"\[[^]]* [WEF] \d", line)]


def stop_head(start: subprocess.Popen, temp: Path) -> None:
    """Kill the head and every Ray process it started; remove its temporary folder."""
    for pid in session_pids(start.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    start.wait()
    shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    """A Ray head node on loopback with two worker CPUs and no GPU; its nodes' cache (their
    temporary folder) is this fixture's own. Yields (address, cache folder, session id). The
    tests that use it run in one worker (the `cluster` xdist group): one cluster, started once.
    A head that cannot be joined is started once more, with a warning (in CI one once took no
    driver, then died); a second failure shows the head's and the driver's last lines."""
    pytest.importorskip("ray", reason="Ray is installed by requirements-dev.txt")
    node_tmp = tmp_path_factory.mktemp("node_tmp")
    for attempt in range(2):
        temp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))  # Ray's sockets need a short path
        try:
            start, address = start_head(temp, node_tmp)
            break
        except RuntimeError as e:
            if attempt:
                raise
            warnings.warn(str(e), stacklevel=1)
    yield address, node_tmp / f"big-vs-small-{os.getuid()}", start.pid
    stop_head(start, temp)


@pytest.fixture
def workdir(tmp_path, fake_data):
    (tmp_path / "data").symlink_to(fake_data, target_is_directory=True)
    return tmp_path


def metrics(folder: Path, run: str = RUN) -> dict:
    return json.loads((folder / "runs/scratch" / run / "metrics.json").read_text())


@pytest.mark.xdist_group("cluster")
def test_the_grid_on_ray_gives_the_files_of_a_local_run(cluster, workdir):
    address, cache, _ = cluster
    first = cli(workdir, *ARGS, "--ray", address)
    assert "1 node, 0 GPUs, 2 CPUs; each run asks for 1 CPU" in first.stdout
    assert "2 runs: 2 to run" in first.stdout and first.stdout.count("ResNet-18 from scratch") == 2
    for run in ("resnet18_data-1-16_seed0", RUN):
        folder = workdir / "runs/scratch" / run
        for name in (f"{run}.ipynb", f"{run}.html", "metrics.json", "best.pt", "acc.png"):
            assert (folder / name).is_file(), name
        assert not (folder / "checkpoint.pt").exists() and not (folder / "failed.json").exists()
        assert metrics(workdir, run)["config"]["output_dir"] == "."  # the run folder itself
        assert metrics(workdir, run)["threads"] == 1  # the task's one CPU
    assert (workdir / "images/from-scratch/resnet18_acc_100.png").is_file()
    assert "| ResNet-18 | 100% | scratch |" in (workdir / "results/summary.md").read_text()
    assert not list(cache.glob("runs/*/*/*")), "the nodes keep no finished run"

    again = cli(workdir, *ARGS, "--ray", address)
    assert "2 runs: 0 to run, 2 done and skipped" in again.stdout


@pytest.mark.xdist_group("cluster")
def test_a_killed_worker_has_its_run_retried_and_resumed(cluster, workdir, tmp_path_factory):
    address, cache, session = cluster
    args = ("--settings", "scratch", "--models", "resnet18", "--fractions", "1")
    args += ("--set=epochs=4",)
    driver = cli(workdir, *args, "--ray", address, background=True)
    deadline = time.time() + 300
    while not list(cache.glob(f"runs/*/scratch/{RUN}/checkpoint.pt")) and time.time() < deadline:
        assert driver.poll() is None, driver.communicate()[0]
        time.sleep(0.2)
    workers = [
        pid
        for pid in session_pids(session)
        if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::run_task")
    ]
    assert workers, "no Ray worker is running the task"
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    out, _ = driver.communicate(timeout=600)
    assert driver.returncode == 0, out
    notebook = (workdir / "runs/scratch" / RUN / f"{RUN}.ipynb").read_text()
    assert "resuming" in notebook  # the retry went on from the killed run's checkpoint

    # The numbers of an uninterrupted local run on one thread, as the task's one CPU has.
    ref = tmp_path_factory.mktemp("local")
    (ref / "data").symlink_to(workdir / "data", target_is_directory=True)
    cli(ref, *args, "--direct", env={"OMP_NUM_THREADS": "1"})  # no notebook: the same numbers
    a, b = metrics(workdir), metrics(ref)
    assert len(a["history"]) == 4 and a["history"] == b["history"]
    assert a["test_acc"] == b["test_acc"]


@pytest.mark.xdist_group("cluster")
def test_runs_that_no_node_can_hold_are_refused(cluster, workdir):
    done = cli(workdir, *ARGS, "--ray", cluster[0], "--ray-cpus", "3", check_rc=1)
    one_line_error(done, "the largest node of the Ray cluster has 2: lower --ray-cpus")


def test_an_address_where_no_cluster_answers(workdir):
    pytest.importorskip("ray")
    done = cli(workdir, "--ray", f"127.0.0.1:{free_port()}", check_rc=1)
    one_line_error(done, "no Ray cluster answers at 127.0.0.1:")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--ray", "somewhere"), "--ray takes host:port or auto, got 'somewhere'"),
        (("--ray", "ray://head:10001"), "--ray takes host:port or auto"),
        (("--ray", "auto", "--jobs", "2"), "--jobs and --ray don't mix"),
        (("--ray", "auto", "--device", "cuda:1"), "with --ray leave it out"),
        (("--ray", "auto", "--ray-cpus", "0"), "--ray-cpus must be 1 or more"),
    ],
)
def test_bad_ray_options_are_refused_before_anything_runs(tmp_path, args, message):
    pytest.importorskip("ray")
    import run_all

    with pytest.raises(UserError, match=re.escape(message)):
        run_all.main(["--output-dir", str(tmp_path / "runs"), *args])
    assert not (tmp_path / "runs").exists()


def test_without_ray_the_option_says_how_to_install_it(workdir, tmp_path):
    fake = tmp_path / "no_ray" / "ray"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('No module named ray')\n")
    done = cli(workdir, "--ray", "auto", check_rc=1, env={"PYTHONPATH": f"{fake.parent}:{REPO}"})
    one_line_error(done, "pip install -r requirements-cluster.txt")


def test_files_travel_whole_and_metrics_json_is_written_last(tmp_path, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    for name, data in (("metrics.json", b"{}"), ("best.pt", b"\0weights"), ("a.png", b"png")):
        (src / name).write_bytes(data)
    files = pack(src)
    written = []
    monkeypatch.setattr(
        common.cluster, "write_with", lambda path, *a, **k: written.append(Path(path).name)
    )
    unpack(files, tmp_path / "dst")
    assert written[-1] == "metrics.json" and sorted(written) == sorted(files)
    monkeypatch.undo()
    unpack(files, tmp_path / "dst")
    assert pack(tmp_path / "dst") == files
    assert pack(src, ["best.pt", "checkpoint.pt"]) == {"best.pt": b"\0weights"}


def test_metrics_from_a_worker_name_the_driver_folders(tmp_path):
    cfg = run_config(Run("scratch", "resnet18", 1.0, 0), tmp_path / "runs", profile="quick")
    worker = {"config": {"data_dir": "/node/data", "output_dir": "/node/x"}, "test_acc": 0.5}
    local = json.loads(localize(json.dumps(worker).encode(), cfg))
    assert cfg.output_dir == str(tmp_path / "runs/scratch" / RUN)
    # the driver's folders, portable: the run folder, the data relative to it (or the repository)
    assert local["config"]["output_dir"] == "." and local["test_acc"] == 0.5
    data = Path(cfg.output_dir, local["config"]["data_dir"])
    assert data.resolve() == Path(cfg.data_dir).resolve() or local["config"]["data_dir"] == "data"


def test_a_task_error_is_told_by_its_cause_in_one_line():
    error = Exception("\x1b[36mray::run_task()\x1b[39m (pid=7, ip=10.0.0.2)\nTraceback ...")
    error.cause = OSError(28, "No space left on device")
    assert first_line(error) == "OSError: [Errno 28] No space left on device"
    assert first_line(ValueError("\x1b[31mbad\x1b[0m\nmore")) == "ValueError: bad"
