"""run_all.py through its real CLI: the grid, skipping, failures, bad input, kill and resume."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import run_all
from common.errors import UserError
from common.models import weights_file
from common.runner import BASE_MODELS, EXTRA_MODEL
from tests.conftest import REPO, TINY, subprocess_env, write_test_weights

TINY_SETS = [f"--set={k}={v}" for k, v in TINY.items()]


def cli_args(tmp_path: Path, *args: str, sets: list[str] = TINY_SETS) -> list[str]:
    """run_all.py's arguments with all its outputs under tmp_path (`sets`: the --set options,
    TINY by default)."""
    readme = tmp_path / "README.md"
    if not readme.exists():
        readme.write_text("# test\n")
    return [
        "--data-dir",
        str(tmp_path / "data"),
        "--output-dir",
        str(tmp_path / "runs"),
        "--images-dir",
        str(tmp_path / "images"),
        "--results-dir",
        str(tmp_path / "results"),
        "--readme",
        str(readme),
        "--profile",
        "quick",
        "--device",
        "cpu",
        *sets,
        *args,
    ]


def cli(
    tmp_path: Path,
    *args: str,
    torch_home: Path | None = None,
    check_rc: int | None = 0,
    background: bool = False,
    env: dict[str, str | None] | None = None,
    sets: list[str] = TINY_SETS,
):
    """Run run_all.py with all its outputs under tmp_path (`env`: extra environment, None
    removes a variable)."""
    cmd = [sys.executable, str(REPO / "run_all.py"), *cli_args(tmp_path, *args, sets=sets)]
    # Offline, whatever the test host has: downloads hit a closed local port.
    env = subprocess_env(
        TORCH_HOME=str(torch_home or tmp_path / "torch_home"),
        HTTPS_PROXY="http://127.0.0.1:9",
        HTTP_PROXY="http://127.0.0.1:9",
        **(env or {}),
    )
    if background:
        return subprocess.Popen(
            cmd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    if check_rc is not None:
        assert done.returncode == check_rc, done.stdout + done.stderr
    return done


@pytest.fixture
def workdir(tmp_path, fake_data):
    (tmp_path / "data").symlink_to(fake_data, target_is_directory=True)
    return tmp_path


def cache_with_weights(tmp_path: Path) -> Path:
    """A torchvision cache with test weights for the models of the default grid."""
    home = tmp_path / "torch_home"
    for model in (*BASE_MODELS, EXTRA_MODEL):
        write_test_weights(model, home / "hub" / "checkpoints")
    return home


@pytest.fixture(scope="module")
def grid(tmp_path_factory, fake_data) -> SimpleNamespace:
    """The default grid at 100% (every model and setting: 5 runs) with --jobs 2 and every
    model's weights at hand, then the same call again (--direct): one grid that several tests
    read (its runs, report and console), as the end-to-end tests share runs rather than each
    starting its own (tests that use it run in one worker: the `grid` xdist group)."""
    workdir = tmp_path_factory.mktemp("grid")
    (workdir / "data").symlink_to(fake_data, target_is_directory=True)
    home = cache_with_weights(workdir)
    started = time.perf_counter()
    # without the workers' OMP_NUM_THREADS (tests/conftest.py): run_all.py splits the cores
    first = cli(
        workdir, "--fractions", "1", "--jobs", "2", torch_home=home, env={"OMP_NUM_THREADS": None}
    )
    elapsed = time.perf_counter() - started
    summary = (workdir / "results" / "summary.md").read_text()  # the second call rewrites it
    second = cli(workdir, "--fractions", "1", "--direct", torch_home=home)  # it only skips
    return SimpleNamespace(
        workdir=workdir, first=first, second=second, elapsed=elapsed, summary=summary
    )


@pytest.mark.xdist_group("grid")
def test_the_grid_with_weights_then_everything_is_skipped(grid):
    workdir = grid.workdir
    assert "5 runs: 5 to run" in grid.first.stdout
    runs = sorted(
        p.parent.relative_to(workdir / "runs").as_posix()
        for p in (workdir / "runs").glob("*/*/metrics.json")
    )
    assert len(runs) == 5 and "pretrained/resnext50_32x4d_data-100_seed0" in runs
    for setting, folder in (("scratch", "from-scratch"), ("pretrained", "finetune")):
        for model in ("resnet18", "resnet50"):
            for metric in ("acc", "loss"):
                assert (workdir / "images" / folder / f"{model}_{metric}_100.png").exists()
        for run in (workdir / "runs" / setting).iterdir():
            assert (run / f"{run.name}.ipynb").exists() and (run / f"{run.name}.html").exists()
            assert (run / "best.pt").exists() and not (run / "checkpoint.pt").exists()
            assert not (run / ".lock").exists()  # released and removed
            assert json.loads((run / "metrics.json").read_text())["executed"] == "papermill"
    assert (workdir / "images/finetune/resnext50_32x4d_acc_100.png").exists()
    summary = (workdir / "results" / "summary.md").read_text()
    assert "| ResNeXt50_32x4d | 100% | pretrained |" in summary and "not produced" not in summary
    assert "<!-- results:start -->" in (workdir / "README.md").read_text()
    assert "5 runs: 0 to run, 5 done and skipped" in grid.second.stdout
    assert "ERROR" not in grid.first.stdout + grid.first.stderr  # the kernels' shutdown noise


@pytest.mark.xdist_group("grid")
def test_the_summary_gives_the_grids_measured_time(grid):
    # --jobs 2 on a CPU: the summary's grid time is the call's own, within 20% of what the
    # caller measured around the whole command; the runs shared the CPU, so none counts as
    # one device's time
    summary = grid.summary
    took = re.search(r"the call that trained 5 of the 5 runs above took ([\d.]+) (s|min)", summary)
    assert took, summary
    seconds = float(took[1]) * (60 if took[2] == "min" else 1)
    assert abs(seconds - grid.elapsed) <= 0.2 * grid.elapsed, (seconds, grid.elapsed)


@pytest.mark.xdist_group("grid")
def test_a_console_that_is_a_pipe_gets_one_numbered_line_per_run(grid):
    lines = [line for line in grid.first.stdout.splitlines() if re.match(r"\[\d/5\] ", line)]
    assert [line[:5] for line in lines] == [f"[{i}/5]" for i in range(1, 6)]
    assert "\r" not in grid.first.stdout + grid.first.stderr


def test_without_weights_the_pretrained_runs_are_reported_not_possible(
    workdir, torch_home, no_network, capsys
):
    # nothing possible: one line naming every missing file and where to put them; no summary,
    # figure or folder (in-process: the real CLI prints the UserError as its one line)
    with pytest.raises(UserError) as e:
        run_all.main(cli_args(workdir, "--settings", "pretrained"))
    message, out = str(e.value), capsys.readouterr().out
    assert message.startswith("no run of this grid is possible here") and "\n" not in message
    assert all(weights_file(m) in message for m in (*BASE_MODELS, EXTRA_MODEL))
    assert "--weights-dir" in message and "docs/offline.md" in message and not out.strip()
    made = {p.name for p in workdir.iterdir()} - {"data", "README.md"}
    assert not made  # no runs/, images/, results/, nor the torch cache the download made

    args = ("--fractions", "1/16", "--models", "resnet18", "--direct")  # no notebook needed
    done = cli(workdir, *args, torch_home=workdir / "empty_home")
    [line] = [line for line in done.stdout.splitlines() if "not possible here" in line]
    assert line.startswith("1 of 2 runs are not possible here: the ImageNet weights of resnet18")
    assert weights_file("resnet18") in line and "--weights-dir" in line
    summary = (workdir / "results" / "summary.md").read_text()
    assert "not produced: needs ImageNet weights" in summary
    assert (workdir / "runs/scratch/resnet18_data-1-16_seed0/metrics.json").exists()
    assert not (workdir / "runs/pretrained").exists()

    listing = cli(workdir, *args, "--dry-run")
    assert "done  scratch    resnet18_data-1-16_seed0" in listing.stdout
    assert "not possible  pretrained" in listing.stdout


def test_a_failing_run_is_isolated_recorded_and_retried(workdir):
    home = workdir / "torch_home"
    good = write_test_weights("resnet18", home / "hub" / "checkpoints")
    state = torch.load(good)
    torch.save(
        {
            k: v.float().fill_(float("nan")) if v.is_floating_point() else v
            for k, v in state.items()
        },
        good,
    )  # fits the model, but trains to NaN
    args = ("--models", "resnet18", "--fractions", "1")
    first = cli(workdir, *args, torch_home=home, check_rc=1)
    failed = workdir / "runs/pretrained/resnet18_data-100_seed0/failed.json"
    assert "TrainingError" in json.loads(failed.read_text())["error"]
    assert "1 run(s) failed" in first.stdout and "diverged" in first.stdout
    assert (workdir / "runs/scratch/resnet18_data-100_seed0/metrics.json").exists()
    assert "failed: seed 0: TrainingError" in (workdir / "results/summary.md").read_text()

    write_test_weights("resnet18", home / "hub" / "checkpoints")
    second = cli(workdir, *args, "--direct", torch_home=home)  # the retry needs no notebook
    assert "2 runs: 1 to run, 1 done and skipped" in second.stdout
    assert not failed.exists()


def test_sigkill_mid_grid_then_resume_matches_an_uninterrupted_run(workdir, tmp_path_factory):
    args = (
        "--settings",
        "scratch",
        "--models",
        "resnet18",
        "--fractions",
        "1",
        "--set=epochs=4",
        "--set=weight_decay=5e-05",  # reaches the notebook a float (YAML reads JSON's as text)
        "--keep-checkpoints",
    )
    proc = cli(workdir, *args, background=True)
    checkpoint = workdir / "runs/scratch/resnet18_data-100_seed0/checkpoint.pt"
    deadline = time.time() + 300
    while not checkpoint.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert checkpoint.exists(), proc.communicate()[0]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(2)  # the orphaned kernel notices its parent is gone and exits
    listed = cli(workdir, *args, "--dry-run").stdout
    assert re.search(r"todo  scratch    resnet18_data-100_seed0  resumes at epoch \d of 4", listed)
    resumed = cli(workdir, *args)
    assert "resuming scratch/resnet18_data-100_seed0 from epoch" in resumed.stdout

    clean = tmp_path_factory.mktemp("clean")
    os.symlink(workdir / "data", clean / "data")
    cli(clean, *args, "--direct")  # the same numbers without a notebook (its own test above)
    a, b = (
        json.loads((d / "runs/scratch/resnet18_data-100_seed0/metrics.json").read_text())
        for d in (workdir, clean)
    )
    assert a["history"] == b["history"] and a["test_acc"] == b["test_acc"]
    assert a["config"]["weight_decay"] == b["config"]["weight_decay"] == 5e-05
    assert "1 to run" in resumed.stdout


def test_two_processes_never_run_the_same_cell_twice(workdir):
    args = ("--settings", "scratch", "--models", "resnet18", "--fractions", "1/16,1")
    procs = [cli(workdir, *args, background=True) for _ in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    trained = sum(o.count("ResNet-18 from scratch") for o in outputs)
    skipped = sum(o.count("another process") for o in outputs)
    assert trained + skipped >= 2 and all(p.returncode in (0, 1) for p in procs), outputs
    notebooks = list((workdir / "runs/scratch").glob("*/*.ipynb"))
    assert len(notebooks) == 2
    for nb in notebooks:  # each executed once: one training log, never a resumed second one
        assert nb.read_text().count("epoch 1/2: train loss") == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--models", "vgg16"), "unknown model 'vgg16'"),
        (("--settings", "transfer"), "unknown setting 'transfer'"),
        (("--fractions", "1.5"), "outside (0, 1]"),
        (("--fractions", "1/1000"), "leaves a class with no training image"),
        (("--epochs", "0"), "--epochs must be 1 or more"),
        (("--set=batch_size=-4",), "batch_size must be a positive whole number"),
        (("--set=image_size=16",), "below the 32 px"),
        (("--set=colour=red",), "unknown parameter(s) colour"),
        (("--seeds", "a,b"), "--seeds takes whole numbers"),
        (("--set=data_dir=/elsewhere",), "use --data-dir instead"),
        (("--set=weights=V2",), "use --weights instead"),
        (("--weights", "V3"), "--weights V3: give V1, V2 or MODEL=FILE"),
        (("--weights", "resnet50=nope.pth"), "nope.pth is not a file"),
        (("--kernel", "no-such"), "no kernel named 'no-such' (it has: "),
        pytest.param(
            ("--device", "cuda"),
            "no GPU is visible",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU"),
        ),
    ],
)
def test_bad_input_gets_one_line_before_any_work(workdir, torch_home, no_network, args, message):
    # In-process: the CLI prints exactly this message as its one line (the test below).
    with pytest.raises(UserError) as e:
        run_all.main(cli_args(workdir, *args))
    assert message in str(e.value) and "\n" not in str(e.value)
    assert not list(workdir.glob("runs/*/*"))  # no run started


def test_without_the_project_kernel_it_says_how_to_register_it(monkeypatch):
    from jupyter_client.kernelspec import KernelSpecManager

    monkeypatch.setattr(KernelSpecManager, "find_kernel_specs", lambda self: {"python3": "/k"})
    with pytest.raises(UserError) as e:
        run_all.main(["--dry-run"])  # before anything else is looked at
    assert "-m ipykernel install --sys-prefix --name big-vs-small" in str(e.value)
    assert "or pass --kernel python3" in str(e.value) and "\n" not in str(e.value)


def test_bad_input_through_the_real_cli_is_one_line_and_no_traceback(workdir):
    one_line_error(cli(workdir, "--models", "vgg16", check_rc=1), "unknown model 'vgg16'")
    assert not list(workdir.glob("runs/*/*"))


def one_line_error(done: subprocess.CompletedProcess, message: str) -> None:
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in done.stderr, done.stderr


def test_no_data_and_no_network(workdir):
    (workdir / "data").unlink()
    (workdir / "data").mkdir()
    done = cli(workdir, check_rc=1)
    one_line_error(done, "could not be downloaded")
    # the library names the notebook's parameter; the command line puts its own option there
    assert "point --data-dir at its parent" in done.stderr and "`data_dir`" not in done.stderr


def test_malformed_data_folder(workdir, tmp_path_factory, torch_home, no_network):
    broken = tmp_path_factory.mktemp("broken")
    (broken / "cifar-10-batches-py").mkdir()
    (broken / "cifar-10-batches-py" / "data_batch_1").write_text("junk")
    (workdir / "data").unlink()
    (workdir / "data").symlink_to(broken, target_is_directory=True)
    with pytest.raises(UserError, match="is incomplete") as e:  # in-process, as above
        run_all.main(cli_args(workdir))
    assert "\n" not in str(e.value)


def test_weights_that_do_not_fit_are_refused(workdir, torch_home, no_network):
    folder = workdir / "weights"
    wrong = write_test_weights("resnet18", folder)
    wrong.rename(folder / weights_file("resnet50"))
    with pytest.raises(UserError, match="does not fit resnet50") as e:  # in-process, as above
        run_all.main(cli_args(workdir, "--models", "resnet50", "--weights-dir", str(folder)))
    assert "\n" not in str(e.value)


def test_each_weights_version_is_looked_for_under_its_own_file_name(
    workdir, torch_home, no_network, capsys
):
    args = cli_args(workdir, "--settings", "pretrained", "--weights", "V2", "--dry-run")
    assert run_all.main(args) == 0
    out = capsys.readouterr().out
    [line] = [line for line in out.splitlines() if "not possible here" in line]
    # torchvision's V2 files, and ResNet-18's V1, the only version it has
    for file in ("resnet50-11ad3fa6.pth", "resnext50_32x4d-1a0047aa.pth", "resnet18-f37072fd.pth"):
        assert file in line


def test_unwritable_output_folder(workdir, torch_home, no_network):
    (workdir / "afile").write_text("")
    with pytest.raises(UserError, match="cannot write to"):  # in-process, as the test above
        run_all.main(cli_args(workdir, "--output-dir", str(workdir / "afile" / "runs")))


@pytest.mark.xdist_group("grid")
def test_parallel_jobs_give_the_same_metrics_as_one_job(grid, tmp_path_factory):
    # the grid's --jobs 2 gave each run half the cores as torch threads; one job with as many
    # threads (CPU numbers change with the thread count, float rounding) gives the same run
    share = max(1, len(os.sched_getaffinity(0)) // 2)
    serial = tmp_path_factory.mktemp("serial")
    (serial / "data").symlink_to(grid.workdir / "data", target_is_directory=True)
    args = ("--settings", "scratch", "--models", "resnet18", "--fractions", "1")
    cli(serial, *args, "--jobs", "1", "--direct", env={"OMP_NUM_THREADS": str(share)})
    run = "resnet18_data-100_seed0"
    a, b = (
        json.loads((d / "runs/scratch" / run / "metrics.json").read_text())
        for d in (grid.workdir, serial)
    )
    assert a["threads"] == b["threads"] == share
    assert a["history"] == b["history"] and a["test_acc"] == b["test_acc"]


def test_direct_runs_need_no_notebook_and_report_only_reports_them(
    workdir, torch_home, no_network, monkeypatch
):
    args = ("--models", "resnet18", "--settings", "scratch", "--fractions", "1")
    monkeypatch.setattr("common.runner.check_kernel", lambda k: pytest.fail("looked for a kernel"))
    assert run_all.main(cli_args(workdir, *args, "--direct")) == 0  # trains in this process
    run_dir = workdir / "runs" / "scratch" / "resnet18_data-100_seed0"
    assert (run_dir / "metrics.json").exists() and not list(run_dir.glob("*.ipynb"))
    assert json.loads((run_dir / "metrics.json").read_text())["executed"] == "direct"
    monkeypatch.undo()
    monkeypatch.setattr(run_all, "dispatch", lambda *a: pytest.fail("trained in --report-only"))
    assert run_all.main(cli_args(workdir, *args, "--report-only")) == 0
    summary = (workdir / "results" / "summary.md").read_text()
    assert "| ResNet-18 | 100% | scratch | – |" in summary
    assert (workdir / "images" / "from-scratch" / "resnet18_acc_100.png").exists()


def test_report_only_takes_the_profile_of_the_runs_it_finds(tmp_path):
    args = run_all.parse_args(["--report-only", "--output-dir", str(tmp_path)])
    for profile, name in (("full", "a"), ("full", "b")):
        (tmp_path / "scratch" / name).mkdir(parents=True)
        (tmp_path / "scratch" / name / "metrics.json").write_text(json.dumps({"profile": profile}))
    assert run_all.choose_profile(args) == "full"
    (tmp_path / "scratch" / "b" / "metrics.json").write_text(json.dumps({"profile": "quick"}))
    with pytest.raises(UserError, match="have profiles full, quick: choose with --profile"):
        run_all.choose_profile(args)


def test_device_cpu_is_a_cpu_run_of_the_quick_profile(workdir, capsys):
    args = ["--data-dir", str(workdir / "data"), "--output-dir", str(workdir / "runs"), *TINY_SETS]
    assert run_all.main([*args, "--device", "cpu", "--settings", "scratch", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "--device cpu: using --profile quick" in out and "profile quick" in out


def test_a_dry_run_on_ray_does_not_connect(workdir, monkeypatch, capsys):
    monkeypatch.setattr("common.cluster.connect", lambda *a: pytest.fail("connected"))
    args = ["--data-dir", str(workdir / "data"), "--output-dir", str(workdir / "runs"), *TINY_SETS]
    assert run_all.main([*args, "--ray", "auto", "--settings", "scratch", "--dry-run"]) == 0
    assert "6 runs: 6 to run" in capsys.readouterr().out


def test_progress_to_a_file_gives_one_line_per_run(tmp_path, capsys):
    from common.report import make_metrics, save_metrics
    from common.runner import Outcome, Run, follow, run_config
    from tests.conftest import fake_result

    runs = [Run("scratch", "resnet18", 1.0, seed) for seed in (0, 1)]
    configs = {r: run_config(r, tmp_path, profile="quick") for r in runs}
    save_metrics(configs[runs[0]].output_dir, make_metrics(configs[runs[0]], fake_result()))
    outcomes = iter([Outcome(runs[0], True, "done"), Outcome(runs[1], False, "Boom: no")])
    assert follow(outcomes, runs, configs) == [(runs[1], "Boom: no")]
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].startswith("[1/2] ResNet-18 from scratch") and "\r" not in out + err
    assert lines[1] == "[2/2] FAILED scratch resnet18_data-100_seed1 (100%): Boom: no"


def test_the_bar_shows_the_epoch_of_each_notebook_in_flight_and_an_interrupt_what_resumes(
    tmp_path,
):
    from common.runner import LATEST, Run, in_flight, resume_note, run_config

    runs = [Run("scratch", "resnet18", 1.0, seed) for seed in (0, 1)]
    configs = {r: run_config(r, tmp_path, profile="quick") for r in runs}
    folder = Path(configs[runs[0]].output_dir)
    folder.mkdir(parents=True)
    lines = ["resnet18 epoch 1/4: train loss 2.1", "resnet18 epoch 2/4: train loss 1.9"]
    (folder / f"{runs[0].name}.ipynb").write_text(json.dumps({"cells": [{"outputs": lines}]}))
    assert in_flight(runs, configs, since=0) == "resnet18_data-100_seed0 epoch 2/4"
    assert in_flight(runs, configs, since=time.time() + 60) == ""  # an older call's notebook
    key = configs[runs[0]].training_key()
    torch.save({"key": key, "history": [{}, {}]}, folder / LATEST)
    assert resume_note(runs, configs) == (
        "finished runs are kept; the next call resumes scratch/resnet18_data-100_seed0 at epoch 2"
        "; 1 unfinished run(s) start over (no checkpoint yet)"
    )
