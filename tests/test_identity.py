"""Inputs and identity: --set of what has its own option, lifted caps, --force, which data and
weights a finished run used, a notebook's relative paths, and GPUs for --device cuda --jobs N."""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import pytest
import torch

import run_all
from common import runner
from common.config import make_config
from common.errors import UserError
from common.report import file_identity, make_metrics, save_metrics
from common.runner import Run, State, notebook_config, notebook_parameters, run_config, state
from tests.conftest import REPO, fake_result
from tests.test_run_all import cli_args


@pytest.mark.parametrize(
    ("key", "option"),
    [
        ("seed", "--seeds"),
        ("model", "--models"),
        ("pretrained", "--settings"),
        ("data_fraction", "--fractions"),
    ],
)
def test_set_of_a_grid_axis_names_its_option(key, option):
    # in-process: the real CLI prints a UserError as this one line (tests/test_run_all.py)
    with pytest.raises(UserError) as e:
        run_all.set_options([f"{key}=1"])
    assert str(e.value) == f"--set {key}: use {option} instead"


def test_set_none_lifts_the_quick_caps_into_the_notebook():
    sets = run_all.set_options(["eval_images=None", "steps_per_epoch=None"])
    cfg = run_config(Run("scratch", "resnet18", 1.0, 0), "/tmp/x", profile="quick", **sets)
    assert cfg.eval_images is None and cfg.steps_per_epoch is None
    params = notebook_parameters(cfg, list(sets))
    # the notebook's own call: None parameters keep the recipe, its overrides lift the caps
    again = notebook_config(None, **params)
    assert again.eval_images is None and again.steps_per_epoch is None
    assert make_config(profile="quick", eval_images=None).eval_images == 2000  # unset: recipe


def test_force_retrains_a_finished_run_from_its_start(workdir, capsys):
    args = ("--settings", "scratch", "--models", "resnet18", "--fractions", "1", "--direct")
    assert run_all.main(cli_args(workdir, *args)) == 0
    run = workdir / "runs/scratch/resnet18_data-100_seed0"
    first = json.loads((run / "metrics.json").read_text())
    assert sorted(p.name for p in run.glob("*.pt")) == ["best.pt"]  # no resumable checkpoint
    capsys.readouterr()
    assert run_all.main(cli_args(workdir, *args, "--force")) == 0
    out = capsys.readouterr().out
    assert "1 run: 1 to run" in out and "resuming" not in out
    assert out.count("epoch 1/2: train loss") == 1  # from its first epoch
    second = json.loads((run / "metrics.json").read_text())
    assert second["history"] == first["history"] and second["finished_at"] >= first["finished_at"]


def test_changed_data_or_weights_make_a_done_run_todo(tmp_path, fake_data):
    data = tmp_path / "data"
    shutil.copytree(fake_data, data)
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"weights")
    run = Run("pretrained", "resnet18", 1.0, 0)
    cfg = run_config(
        run, tmp_path / "runs", profile="quick", data_dir=str(data), weights_path=str(weights)
    )
    save_metrics(cfg.output_dir, make_metrics(cfg, fake_result(epochs=1)))
    assert state(cfg) == State.DONE
    for changed in (data / "cifar-10-batches-py" / "test_batch", weights):
        stat = changed.stat()
        os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
        file_identity.cache_clear()  # a new call of run_all.py
        assert state(cfg) == State.TODO
        save_metrics(cfg.output_dir, make_metrics(cfg, fake_result(epochs=1)))
        assert state(cfg) == State.DONE


@pytest.mark.parametrize(
    ("visible", "device", "jobs", "seen"),
    [
        (None, "auto", None, ["0", "1"]),  # one job per GPU by default, each seeing its own
        ("2,3", "cuda", None, ["2", "3"]),  # GPUs named as the machine numbers them
        ("2,3", "cuda:1", None, ["3"]),  # GPU 3, not GPU 0
        (None, "cuda", 3, ["0", "1", "0"]),  # more jobs than GPUs share them, and say so
        (None, "cpu", 2, ["", ""]),  # CPU runs see no GPU
    ],
)
def test_each_job_sees_its_own_gpu(monkeypatch, visible, device, jobs, seen):
    cuda = lambda d: torch.device("cuda" if d == "auto" else d)  # noqa: E731
    monkeypatch.setattr(runner, "resolve_device", cuda)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    if visible:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    slots, note = runner.job_slots(device, jobs)
    assert slots == seen  # a kernel sees that GPU, or none ("")
    assert (note is not None) == (jobs == 3) and (jobs != 3 or "share" in note)


@pytest.mark.parametrize("asked", ["V2", "own file named as torchvision's"])
def test_the_notebook_rebuilds_the_weights_label_run_all_gave_its_run(tmp_path, asked):
    file = tmp_path / "resnet50-11ad3fa6.pth"  # torchvision's V2 file name
    file.write_bytes(b"x")
    weights = "V2" if asked == "V2" else str(file)
    run = Run("pretrained", "resnet50", 1.0, 0)
    cfg = run_config(run, tmp_path, profile="quick", weights=weights, weights_path=str(file))
    own = f"custom: resnet50-11ad3fa6.pth (sha256 {hashlib.sha256(b'x').hexdigest()[:8]})"
    assert cfg.weights == ("V2" if asked == "V2" else own)
    params = notebook_parameters(cfg)
    again = notebook_config(None, **params)  # the notebook's own call
    assert again.training_key() == cfg.training_key()  # the same run: done stays done


def test_a_notebooks_relative_paths_are_relative_to_the_repository():
    cfg = make_config(
        pretrained=True, profile="quick", data_dir="data", output_dir="o", weights_path="w/x.pth"
    )
    assert (cfg.data_dir, cfg.output_dir) == (str(REPO / "data"), str(REPO / "o"))
    assert cfg.weights_path == str(REPO / "w" / "x.pth")
    assert make_config(profile="quick", data_dir="/abs/data").data_dir == "/abs/data"
