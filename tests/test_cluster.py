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
from types import SimpleNamespace

import pytest
import torch

import run_all
from common.cluster import first_line, pack, unpack
from common.errors import UserError
from tests.test_run_all import cli, cli_args

RUN = "resnet18_data-100_seed0"
EPOCHS = 6  # enough to be mid-run when the worker is killed
ARGS = ("--settings", "scratch", "--models", "resnet18", "--fractions", "1", "--direct")
ARGS += (f"--set=epochs={EPOCHS}",)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def session_pids(sid: int) -> list[int]:
    """The processes of session `sid`: a `ray start` and every Ray process it started."""
    pids = []
    for pid in (int(p.name) for p in Path("/proc").glob("[0-9]*")):
        with contextlib.suppress(OSError):  # ended meanwhile
            if os.getsid(pid) == sid:
                pids.append(pid)
    return pids


def start_head(node_tmp: Path, temp: str) -> tuple[subprocess.Popen, str, str]:
    """`ray start --head` with two CPUs and no GPU; (its process, its address, why a driver
    cannot join it, or "" once one has: a driver can join once the raylet is up)."""
    port = free_port()
    options = (
        f"start --head --block --port={port} --node-ip-address=127.0.0.1 --num-cpus=2 "
        "--num-gpus=0 --include-dashboard=false --disable-usage-stats "
        f"--object-store-memory=200000000 --temp-dir={temp}"
    )
    log = node_tmp / "head.log"
    ray = str(Path(sys.executable).with_name("ray"))
    env = dict(os.environ, TMPDIR=str(node_tmp))  # where the node's cache goes
    with log.open("wb") as out:
        head = subprocess.Popen(
            [ray, *options.split()], env=env, stdout=out, stderr=out, start_new_session=True
        )
    address = f"127.0.0.1:{port}"
    join = [sys.executable, "-c", "import ray, sys; ray.init(address=sys.argv[1])", address]
    probe = subprocess.run(join, capture_output=True, text=True, timeout=300)
    return head, address, "" if probe.returncode == 0 else log.read_text()[-2000:] + probe.stderr


def stop_head(head: subprocess.Popen) -> None:
    for pid in session_pids(head.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    head.wait()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    """A Ray head with our own node cache, started again once if no driver can join it (as
    happened once in CI): its address, node cache, session id and workers' logs."""
    pytest.importorskip("ray", reason="Ray is installed by requirements-dev.txt")
    node_tmp = tmp_path_factory.mktemp("node_tmp")
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # Ray's sockets need a short path
    head, address, why = start_head(node_tmp, temp)
    if why:
        stop_head(head)
        warnings.warn(
            f"the Ray head could not be joined, started again: {why[-300:]}", stacklevel=1
        )
        head, address, why = start_head(node_tmp, temp)
    try:
        assert not why, why
        cache = node_tmp / f"big-vs-small-{os.getuid()}"
        logs = Path(temp, "session_latest", "logs")
        yield SimpleNamespace(address=address, cache=cache, session=head.pid, logs=logs)
    finally:
        stop_head(head)
        shutil.rmtree(temp, ignore_errors=True)


def metrics(folder: Path) -> dict:
    return json.loads((folder / "runs/scratch" / RUN / "metrics.json").read_text())


@pytest.mark.xdist_group("cluster")
def test_on_ray_a_killed_worker_is_retried_and_the_run_gives_the_files_of_a_local_run(
    cluster, workdir, tmp_path_factory
):
    driver = cli(workdir, *ARGS, "--ray", cluster.address, background=True)
    deadline = time.time() + 300
    while not list(cluster.cache.glob(f"runs/*/scratch/{RUN}/checkpoint.pt")):
        assert driver.poll() is None and time.time() < deadline, driver.communicate()[0]
        time.sleep(0.1)
    commands = {
        pid: Path(f"/proc/{pid}/cmdline").read_bytes() for pid in session_pids(cluster.session)
    }
    workers = [pid for pid, command in commands.items() if command.startswith(b"ray::run_task")]
    assert workers, "no Ray worker is running the task"
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    out, _ = driver.communicate(timeout=600)
    assert driver.returncode == 0, out
    assert "1 node, 0 GPUs, 2 CPUs; each run asks for 1 CPU" in out
    assert "1 run: 1 to run" in out and "ResNet-18 from scratch" in out
    # the retry's worker resumed the run (Ray keeps the workers' output in its session)
    logs = cluster.logs.glob("worker-*.out")
    assert any("resuming resnet18 from epoch" in log.read_text() for log in logs)
    config = metrics(workdir)["config"]  # the driver's folders, not the node's
    assert config["output_dir"] == "."
    assert Path(workdir / "runs/scratch" / RUN, config["data_dir"]).samefile(workdir / "data")
    assert "| ResNet-18 | 100% | scratch |" in (workdir / "results/summary.md").read_text()
    assert not list(cluster.cache.glob("runs/*/*/*")), "the nodes keep no finished run"
    # the same run here, uninterrupted, with the task's one thread: the same files and numbers
    local = tmp_path_factory.mktemp("local")
    (local / "data").symlink_to(workdir / "data", target_is_directory=True)
    own = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert run_all.main(cli_args(local, *ARGS)) == 0
    finally:
        torch.set_num_threads(own)
    ray_run, local_run = (d / "runs/scratch" / RUN for d in (workdir, local))
    assert {p.name for p in ray_run.iterdir()} == {p.name for p in local_run.iterdir()}
    a, b = metrics(workdir), metrics(local)
    assert a["threads"] == b["threads"] == 1 and len(a["history"]) == EPOCHS
    assert a["history"] == b["history"] and a["test_acc"] == b["test_acc"]


@pytest.mark.xdist_group("cluster")
def test_a_node_too_small_for_the_runs_is_refused(cluster, tmp_path):
    import ray

    try:
        with pytest.raises(UserError, match="the largest node of the Ray cluster has 2: lower"):
            run_all.main(
                [
                    "--output-dir",
                    str(tmp_path / "runs"),
                    "--ray",
                    cluster.address,
                    "--ray-cpus",
                    "3",
                ]
            )
    finally:
        ray.shutdown()
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--ray", "ray://head:10001"), "--ray takes host:port or auto, got 'ray://head:10001'"),
        (("--ray", "auto", "--jobs", "2"), "--jobs and --ray don't mix"),
        (("--ray", "auto", "--device", "cuda:1"), "with --ray leave it out"),
        (("--ray", "auto", "--ray-cpus", "0"), "--ray-cpus must be 1 or more"),
        (("--ray", f"127.0.0.1:{free_port()}"), "no Ray cluster answers at 127.0.0.1:"),
    ],
)
def test_bad_ray_options_are_refused_before_anything_runs(tmp_path, args, message):
    pytest.importorskip("ray")
    with pytest.raises(UserError, match=re.escape(message)):
        run_all.main(["--output-dir", str(tmp_path / "runs"), *args])
    assert not (tmp_path / "runs").exists()


def test_without_ray_the_option_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails
    with pytest.raises(UserError, match="pip install -r requirements-cluster.txt"):
        run_all.main(["--output-dir", str(tmp_path / "runs"), "--ray", "auto"])


def test_files_travel_whole_and_metrics_json_is_written_last(tmp_path, monkeypatch):
    files = {"metrics.json": b"{}", "best.pt": b"\0weights", "a.png": b"png"}
    unpack(files, tmp_path)
    assert pack(tmp_path) == files
    assert pack(tmp_path, ["best.pt", "checkpoint.pt"]) == {"best.pt": b"\0weights"}
    written = []
    monkeypatch.setattr("common.cluster.write_with", lambda path, *a, **k: written.append(path))
    unpack(files, tmp_path)
    assert written[-1].name == "metrics.json" and len(written) == len(files)


def test_a_task_error_is_told_by_its_cause_in_one_line():
    error = Exception("\x1b[36mray::run_task()\x1b[39m (pid=7, ip=10.0.0.2)\nTraceback ...")
    error.cause = OSError(28, "No space left on device")
    assert first_line(error) == "OSError: [Errno 28] No space left on device"
    assert first_line(ValueError("\x1b[31mbad\x1b[0m\nmore")) == "ValueError: bad"
