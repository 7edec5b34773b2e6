"""Paths as the user typed them, outputs that follow --output-dir, and weights that are missing,
through run_all.py's real CLI run from a directory of the test's own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from common.errors import UserError
from tests.conftest import REPO, TINY, subprocess_env, write_test_weights

TINY_SETS = [f"--set={k}={v}" for k, v in TINY.items()]


def run_all(cwd: Path, *args: str, rc: int = 0) -> subprocess.CompletedProcess:
    """run_all.py started in `cwd`, offline, with a torch cache of cwd's own."""
    cmd = [sys.executable, str(REPO / "run_all.py"), "--profile", "quick", "--device", "cpu"]
    env = subprocess_env(
        TORCH_HOME=str(cwd / "torch_home"),
        HTTPS_PROXY="http://127.0.0.1:9",
        HTTP_PROXY="http://127.0.0.1:9",
    )
    done = subprocess.run(
        [*cmd, *TINY_SETS, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == rc, done.stdout + done.stderr
    return done


@pytest.fixture
def here(tmp_path: Path, fake_data: Path) -> Path:
    (tmp_path / "data").symlink_to(fake_data, target_is_directory=True)
    return tmp_path


def notebooks_folder() -> set[str]:
    return {p.name for p in (REPO / "notebooks").iterdir()}


def test_relative_paths_with_two_jobs_land_where_typed(here):
    before = notebooks_folder()
    write_test_weights("resnet18", here / "w")
    (here / "README.md").write_text("# mine\n")
    args = ("--models", "resnet18", "--fractions", "1/16", "--jobs", "2", "--data-dir", "data")
    folders = ("--output-dir", "out", "--images-dir", "img", "--results-dir", "res")
    done = run_all(here, *args, *folders, "--readme", "README.md", "--weights-dir", "w")
    assert "2 runs: 2 to run" in done.stdout and "FAILED" not in done.stdout
    for setting in ("scratch", "pretrained"):
        assert (here / "out" / setting / "resnet18_data-1-16_seed0" / "metrics.json").exists()
    assert (here / "img" / "finetune" / "resnet18_acc_1-16.png").exists()
    assert (here / "img" / "scaling" / "error_vs_data.png").exists()
    assert (here / "res" / "summary.md").exists() and (here / "res" / "scaling.html").exists()
    assert "<!-- results:start -->" in (here / "README.md").read_text()
    assert notebooks_folder() == before  # nothing landed beside the notebooks


def test_output_dir_alone_keeps_the_report_beside_the_runs(here):
    readme = (REPO / "README.md").read_text()
    grid = ("--settings", "pretrained", "--models", "resnet18", "--fractions", "1/16")
    places = ("--data-dir", "data", "--output-dir", "scratch-area")
    done = run_all(here, *grid, *places, rc=1)  # every run of the grid is impossible: no weights
    assert "no run of this grid is possible here" in done.stderr
    # the message names where it looked, and where to put the file; nothing was written
    assert str(here / "torch_home" / "hub" / "checkpoints") in done.stderr
    assert not (here / "scratch-area").exists()
    run_all(here, "--settings", "scratch", *places, "--report-only")  # a report, no runs
    assert (here / "scratch-area" / "results" / "summary.md").exists()
    assert (here / "scratch-area" / "images" / "scaling" / "error_vs_data.png").exists()
    assert (REPO / "README.md").read_text() == readme


def test_a_weights_dir_that_does_not_exist_is_refused(here, monkeypatch):
    import run_all as cli

    monkeypatch.chdir(here)  # in-process: the real CLI prints a UserError as one line
    with pytest.raises(UserError) as e:
        cli.main(["--data-dir", "data", "--weights-dir", "nowhere"])
    assert f"--weights-dir {here / 'nowhere'} is not a folder" in str(e.value)


def test_a_notebooks_relative_paths_are_relative_to_the_repository():
    from common.config import make_config

    cfg = make_config(
        pretrained=True, profile="quick", data_dir="data", output_dir="o", weights_path="w/x.pth"
    )
    assert (cfg.data_dir, cfg.output_dir) == (str(REPO / "data"), str(REPO / "o"))
    assert cfg.weights_path == str(REPO / "w" / "x.pth")
    assert make_config(profile="quick", data_dir="/abs/data").data_dir == "/abs/data"
