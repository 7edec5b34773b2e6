"""run_all.py: the notebook grid through its real CLI, and in-process the direct runs, skipping,
failures, the lock, the report and bad input."""

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
import torch

import run_all
from common.errors import UserError
from common.models import weights_file
from common.report import make_metrics, save_metrics
from common.runner import BASE_MODELS, EXTRA_MODEL, Run, execute, run_config, run_lock
from tests.conftest import REPO, TINY, fake_result, subprocess_env, write_test_weights

TINY_SETS = [f"--set={k}={v}" for k, v in TINY.items()]
CPU = ["--profile", "quick", "--device", "cpu"]
ONE_RUN = ("--settings", "scratch", "--models", "resnet18", "--fractions", "1")


def cli_args(tmp_path: Path, *args: str, sets: list[str] = TINY_SETS) -> list[str]:
    """run_all.py's arguments with all its outputs under tmp_path (`sets`: the --set options)."""
    readme = tmp_path / "README.md"
    if not readme.exists():
        readme.write_text("# test\n")
    folders = {"data": "data", "output": "runs", "images": "images", "results": "results"}
    paths = [
        x for option, folder in folders.items() for x in (f"--{option}-dir", str(tmp_path / folder))
    ]
    return [*paths, "--readme", str(readme), *CPU, *sets, *args]


def cli(
    tmp_path: Path,
    *args: str,
    torch_home: Path | None = None,
    check_rc: int | None = 0,
    background: bool = False,
    env: dict[str, str | None] | None = None,
    sets: list[str] = TINY_SETS,
    cwd: Path | None = None,
):
    """Run run_all.py offline with all its outputs under tmp_path, or in `cwd` with `args` as
    typed (`env`: extra environment, None removes a variable)."""
    typed = [*CPU, *sets, *args] if cwd else cli_args(tmp_path, *args, sets=sets)
    cmd = [sys.executable, str(REPO / "run_all.py"), *typed]
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
    done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=900)
    if check_rc is not None:
        assert done.returncode == check_rc, done.stdout + done.stderr
    return done


def one_line_error(done: subprocess.CompletedProcess, message: str) -> None:
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in done.stderr, done.stderr


def test_the_notebook_grid_lands_where_typed_then_everything_is_skipped(
    workdir, monkeypatch, capsys
):
    # papermill, every path relative to where the command runs, a weights folder; the report
    write_test_weights("resnet18", workdir / "w")
    (workdir / "README.md").write_text("# mine\n")
    before = {p.name for p in (REPO / "notebooks").iterdir()}
    args = ("--settings", "pretrained", "--models", "resnet18", "--fractions", "1")
    args += ("--data-dir", "data", "--output-dir", "out", "--images-dir", "img")
    args += ("--results-dir", "res", "--readme", "README.md", "--weights-dir", "w")
    # weight_decay reaches the notebook a float (papermill reads YAML, where JSON's is text)
    sets = [*TINY_SETS, "--set=weight_decay=5e-05"]
    started = time.perf_counter()
    first = cli(workdir, *args, sets=sets, cwd=workdir)
    elapsed = time.perf_counter() - started
    assert "1 run: 1 to run" in first.stdout and "FAILED" not in first.stdout
    assert "ERROR" not in first.stdout + first.stderr  # the kernel's shutdown noise
    run = workdir / "out/pretrained/resnet18_data-100_seed0"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["executed"] == "papermill" and metrics["config"]["weight_decay"] == 5e-05
    assert (run / "best.pt").exists() and not (run / "checkpoint.pt").exists()
    assert not (run / ".lock").exists() and (run / f"{run.name}.html").exists()
    outputs = [
        o for c in nbformat.read(run / f"{run.name}.ipynb", 4).cells for o in c.get("outputs", [])
    ]
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the curves inline
    assert any("test acc" in o.get("text", "") for o in outputs)
    # the epoch bars share stdout with the epoch lines: in Jupyter a stderr output of its own
    # stayed behind as an empty pink stripe once a bar was cleared
    assert not [o for o in outputs if o.get("name") == "stderr"]
    assert (workdir / "img/finetune/resnet18_acc_100.png").exists()
    assert (workdir / "img/scaling/error_vs_data.png").exists()
    assert (workdir / "res/scaling.html").exists()
    summary = (workdir / "res/summary.md").read_text()
    assert "| ResNet-18 | 100% | pretrained |" in summary
    assert "<!-- results:start -->" in (workdir / "README.md").read_text()
    assert {p.name for p in (REPO / "notebooks").iterdir()} == before
    # the summary's grid time is the call's own, within 20% of what the caller measured
    took = re.search(r"the call that trained 1 of the 1 runs? above took ([\d.]+) (s|min)", summary)
    assert took, summary
    seconds = float(took[1]) * (60 if took[2] == "min" else 1)
    assert abs(seconds - elapsed) <= 0.2 * elapsed, (seconds, elapsed)
    # the notebook's record is this run's: the next call skips it
    monkeypatch.chdir(workdir)
    assert run_all.main([*CPU, *sets, *args, "--dry-run"]) == 0
    assert "1 run: 0 to run, 1 done and skipped" in capsys.readouterr().out


def test_without_weights_the_pretrained_runs_are_reported_not_possible(
    workdir, torch_home, no_network, capsys
):
    # nothing possible: one line naming every missing file and where to put them; no summary,
    # figure or folder
    with pytest.raises(UserError) as e:
        run_all.main(cli_args(workdir, "--settings", "pretrained"))
    message, out = str(e.value), capsys.readouterr().out
    assert message.startswith("no run of this grid is possible here") and "\n" not in message
    assert all(weights_file(m) in message for m in (*BASE_MODELS, EXTRA_MODEL))
    assert str(torch_home / "hub" / "checkpoints") in message and "docs/offline.md" in message
    assert "--weights-dir" in message and not out.strip()
    assert not {p.name for p in workdir.iterdir()} - {"data", "README.md"}

    args = ("--fractions", "1/16", "--models", "resnet18", "--direct")
    assert run_all.main(cli_args(workdir, *args)) == 0
    [line] = [x for x in capsys.readouterr().out.splitlines() if "not possible here" in x]
    assert line.startswith("1 of 2 runs are not possible here: the ImageNet weights of resnet18")
    assert weights_file("resnet18") in line and "--weights-dir" in line
    summary = (workdir / "results" / "summary.md").read_text()
    assert "not produced: needs ImageNet weights" in summary
    assert (workdir / "runs/scratch/resnet18_data-1-16_seed0/metrics.json").exists()
    assert not (workdir / "runs/pretrained").exists()

    assert run_all.main(cli_args(workdir, *args, "--dry-run")) == 0
    listing = capsys.readouterr().out
    assert "done  scratch    resnet18_data-1-16_seed0" in listing
    assert "not possible  pretrained" in listing


def test_a_failing_run_is_isolated_recorded_and_retried(
    workdir, torch_home, no_network, monkeypatch, capsys
):
    # --direct: trained in this process, no kernel looked for, no notebook written
    monkeypatch.setattr("common.runner.check_kernel", lambda k: pytest.fail("looked for a kernel"))
    folder = torch_home / "hub" / "checkpoints"
    good = write_test_weights("resnet18", folder)
    nan = {
        k: v.float().fill_(float("nan")) if v.is_floating_point() else v
        for k, v in torch.load(good).items()
    }
    torch.save(nan, good)  # fits the model, but trains to NaN
    args = cli_args(workdir, "--models", "resnet18", "--fractions", "1", "--direct")
    assert run_all.main(args) == 1
    out = capsys.readouterr().out
    failed = workdir / "runs/pretrained/resnet18_data-100_seed0/failed.json"
    assert "TrainingError" in json.loads(failed.read_text())["error"]
    assert "1 run(s) failed" in out and "diverged" in out
    scratch = workdir / "runs/scratch/resnet18_data-100_seed0"
    assert json.loads((scratch / "metrics.json").read_text())["executed"] == "direct"
    assert not list(scratch.glob("*.ipynb"))
    assert "failed: seed 0: TrainingError" in (workdir / "results/summary.md").read_text()

    write_test_weights("resnet18", folder)
    assert run_all.main(args) == 0
    assert "2 runs: 1 to run, 1 done and skipped" in capsys.readouterr().out
    assert not failed.exists()


def test_a_run_another_process_holds_or_finished_is_left_to_it(workdir, capsys):
    # flock locks an open file: this test's hold stands for another process's
    run_dir = workdir / "runs/scratch/resnet18_data-100_seed0"
    with run_lock(run_dir):
        assert run_all.main(cli_args(workdir, *ONE_RUN, "--direct")) == 1
    assert "being run by another process" in capsys.readouterr().out
    assert not (run_dir / "metrics.json").exists() and not (run_dir / "failed.json").exists()
    # found finished once its lock is held: the other process trained it, this one does not
    run = Run("scratch", "resnet18", 1.0, 0)
    cfg = run_config(run, workdir / "runs", profile="quick", data_dir=str(workdir / "data"))
    save_metrics(cfg.output_dir, make_metrics(cfg, fake_result()))
    record = (run_dir / "metrics.json").read_bytes()
    assert execute(run, cfg, direct=True).message == "done by another process"
    assert (run_dir / "metrics.json").read_bytes() == record


def test_report_only_reports_the_runs_it_finds_beside_them_and_trains_none(workdir, capsys):
    # --output-dir alone: the report goes beside the runs, the repository's README untouched
    readme, out = (REPO / "README.md").read_text(), workdir / "out"
    with pytest.raises(UserError, match="no finished run in"):  # nothing to report
        run_all.choose_profile(run_all.parse_args(["--report-only", "--output-dir", str(out)]))
    cfg = run_config(Run("scratch", "resnet18", 1.0, 0), out, profile="quick")
    save_metrics(cfg.output_dir, make_metrics(cfg, fake_result()))
    args = ["--output-dir", str(out), "--data-dir", str(workdir / "data"), *ONE_RUN]
    assert run_all.main([*args, "--seeds", "0,1", "--report-only", "--direct"]) == 0
    assert "report only" in capsys.readouterr().out
    assert "| ResNet-18 | 100% | scratch | – |" in (out / "results/summary.md").read_text()
    assert (out / "images/from-scratch/resnet18_acc_100.png").exists()
    assert not (out / "scratch/resnet18_data-100_seed1").exists()  # the other seed: not trained
    assert (REPO / "README.md").read_text() == readme
    # its profile is that of most runs it finds
    for seed in (1, 2):
        other = run_config(Run("scratch", "resnet18", 1.0, seed), out, profile="full")
        save_metrics(other.output_dir, make_metrics(other, fake_result()))
    assert run_all.choose_profile(run_all.parse_args([*args, "--report-only"])) == "full"


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
    # in-process: the CLI prints exactly this message as its one line (test_no_data_...)
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
    assert "--kernel" in str(e.value) and "\n" not in str(e.value)


def test_no_data_and_no_network_is_one_line_and_no_traceback(workdir):
    (workdir / "data").unlink()
    (workdir / "data").mkdir()
    done = cli(workdir, check_rc=1)  # the real CLI
    one_line_error(done, "could not be downloaded")
    # the library names the notebook's parameter; the command line puts its own option there
    assert "point --data-dir at its parent" in done.stderr and "`data_dir`" not in done.stderr
    assert not list(workdir.glob("runs/*/*"))


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


def test_a_weights_dir_that_does_not_exist_is_refused(workdir, monkeypatch):
    monkeypatch.chdir(workdir)
    with pytest.raises(UserError) as e:
        run_all.main(["--data-dir", "data", "--weights-dir", "nowhere"])
    assert f"--weights-dir {workdir / 'nowhere'} is not a folder" in str(e.value)


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


def test_device_cpu_is_a_cpu_run_of_the_quick_profile(workdir, capsys):
    args = ["--data-dir", str(workdir / "data"), "--output-dir", str(workdir / "runs"), *TINY_SETS]
    assert run_all.main([*args, "--device", "cpu", "--settings", "scratch", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "--device cpu: using --profile quick" in out and "profile quick" in out


def test_a_dry_run_on_ray_does_not_connect(workdir, monkeypatch, capsys):
    monkeypatch.setattr("common.cluster.join", lambda *a: pytest.fail("joined"))
    args = ["--data-dir", str(workdir / "data"), "--output-dir", str(workdir / "runs"), *TINY_SETS]
    assert run_all.main([*args, "--ray", "auto", "--settings", "scratch", "--dry-run"]) == 0
    assert "6 runs: 6 to run" in capsys.readouterr().out


def test_progress_to_a_file_gives_one_line_per_run(tmp_path, capsys):
    from common.runner import Outcome, follow

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
    from common.runner import LATEST, in_flight, resume_note

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
