"""Overheads bounded by design, counted on a full-profile run: checkpoint writes, evaluation
passes, host-device copies and syncs; checkpoints on a wall-clock interval; resume anywhere."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

import common.data as data_module
import common.training as train_module
from common.config import make_config
from common.data import load_cifar10
from common.training import eval_every, resume
from tests.conftest import TINY
from tests.test_train import die_at_evaluation, fit, tiny_model


@pytest.fixture(scope="module")
def data(fake_data):
    return load_cifar10(fake_data, download=False)


def count_calls(monkeypatch, counts: Counter, name: str, owner: object, attr: str) -> None:
    real = getattr(owner, attr)

    def counted(*args, **kwargs):
        counts[name] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, attr, counted)


def test_full_profile_1_16_run_has_bounded_overheads(data, tmp_path, monkeypatch):
    # The full recipe's 1/16 cell (104 epochs, all its defaults), on a tiny model and batch.
    small = dict(device="cpu", batch_size=8, eval_images=20, val_size=40, precision="fp32")
    cfg = make_config("resnet18", 1 / 16, profile="full", output_dir=str(tmp_path), **small)
    assert cfg.epochs == 104 and cfg.checkpoint_every >= 60
    assert (cfg.max_evals, cfg.eval_share) == (50, 0.5)
    counts: Counter = Counter()
    for name, owner, attr in [
        ("copies", data_module, "to_device"),
        ("syncs", torch.Tensor, "item"),
        ("syncs", torch.Tensor, "tolist"),
        ("syncs", torch.Tensor, "cpu"),
        ("checkpoints", train_module, "save_state"),
        ("evaluations", train_module, "evaluate"),
    ]:
        count_calls(monkeypatch, counts, name, owner, attr)
    in_step_loop: list[Counter] = []
    real_epoch = train_module.train_epoch

    def watched_epoch(*args, **kwargs):
        before = counts.copy()
        out = real_epoch(*args, **kwargs)
        in_step_loop.append(counts - before)
        return out

    monkeypatch.setattr(train_module, "train_epoch", watched_epoch)
    # a second an epoch on the run's clock, whatever this machine's load: 104 s, less than
    # checkpoint_every (on the real clock, a run slowed past it also saves mid-run)
    fake_clock(monkeypatch, per_epoch=1)
    result = fit(data, cfg, tmp_path)

    assert len(result["history"]) == 104 and len(in_step_loop) == 104
    # one copy per epoch (its order and augmentation draws), no sync inside the steps
    assert all(c["copies"] == 1 and c["syncs"] == 0 for c in in_step_loop)
    # every 3rd epoch and the last: 10 validation images for 8 training images an epoch allow
    # every 3rd under eval_share (and 104 / max_evals rounded up is 3 too)
    evaluated = [h["epoch"] for h in result["history"] if "val_acc" in h]
    assert evaluated == [*range(3, 104, 3), 104] and result["evaluations"] == 35
    assert counts["evaluations"] == 36  # 35 validation passes and the final test
    assert counts["checkpoints"] == 1  # the run took less than checkpoint_every: the end only
    # the rest of the run: a sync per evaluation pass, per read-back of the training figures,
    # and per tensor of best.pt (a copy to the host)
    best_pt = len(tiny_model().state_dict())
    assert counts["syncs"] <= 2 * counts["evaluations"] + counts["checkpoints"] + best_pt
    assert result["best_epoch"] in evaluated


def fake_clock(monkeypatch, per_epoch: float) -> None:
    """The run's clock advances `per_epoch` seconds with every training epoch, and only then."""
    now, real_epoch = [0.0], train_module.train_epoch

    def epoch_then_tick(*args):
        out = real_epoch(*args)
        now[0] += per_epoch
        return out

    monkeypatch.setattr(train_module, "train_epoch", epoch_then_tick)
    monkeypatch.setattr(train_module, "clock", lambda: now[0])


def test_the_cadence_bounds_evaluation_images_per_training_image():
    cfg = make_config("resnet18", profile="quick", epochs=10, max_evals=10, eval_share=0.5)
    # 40 validation images against 16 training images: every 5th epoch keeps the share at 0.5,
    # although max_evals would allow every epoch
    assert eval_every(cfg, train_images=16, val_images=40) == 5
    assert eval_every(cfg, train_images=1000, val_images=40) == 1


def test_checkpoints_follow_the_wall_clock_and_a_kill_loses_at_most_the_interval_anywhere(
    data, tmp_path, monkeypatch
):
    cfg = make_config(
        "resnet18",
        profile="quick",
        **(TINY | dict(epochs=7, steps_per_epoch=1, checkpoint_every=250, device="cpu")),
    )
    fake_clock(monkeypatch, per_epoch=100)
    saved, real_save = [], train_module.save_state

    def save(run_dir, cfg, parts, run):
        real_save(run_dir, cfg, parts, run)
        saved.append(len(run["history"]))

    monkeypatch.setattr(train_module, "save_state", save)
    reference = fit(data, cfg, tmp_path / "reference")
    # saved before a 100-s epoch would take the unsaved time past 250 s, and at the end
    assert saved == [2, 4, 6, 7]
    with die_at_evaluation(monkeypatch, 6):  # epoch 6's, before its checkpoint
        fit(data, cfg, tmp_path / "killed")
    kept = resume(tmp_path / "killed", cfg, {})
    assert len(kept["history"]) == 4 and cfg.checkpoint_every >= (6 - 4) * 100
    resumed = fit(data, cfg, tmp_path / "killed")
    assert resumed["history"] == reference["history"]
    assert resumed["test_acc"] == reference["test_acc"]
