"""The full (GPU) profile through the real CLI on the CPU, capped: every line of its path runs,
from the CPU's precision probe to the CIFAR stem, the epoch rule and the upsampling branch."""

from __future__ import annotations

import hashlib
import json

import pytest

from common.config import make_config
from common.data import load_cifar10
from tests.conftest import write_test_weights
from tests.test_run_all import cli

# Caps on the size of the work, never on the recipe's shape (epochs, stem, cadence, precision).
CAPS = [
    "--set=batch_size=4",
    "--set=steps_per_epoch=1",
    "--set=eval_images=20",
    "--set=val_size=40",
]


def metrics_of(workdir, setting, name):
    return json.loads((workdir / "runs" / setting / name / "metrics.json").read_text())


def test_full_scratch_run_uses_the_cifar_stem_and_the_epoch_rule(tmp_path, fake_data):
    (tmp_path / "data").symlink_to(fake_data, target_is_directory=True)
    cache = tmp_path / "cache"
    done = cli(
        tmp_path,
        "--profile=full",
        "--settings=scratch",
        "--models=resnet18",
        "--fractions=1",
        "--direct",  # in run_all.py's process: the pretrained test below takes the notebook
        sets=CAPS,
        env={"XDG_CACHE_HOME": str(cache)},
    )
    assert "profile full" in done.stdout
    m = metrics_of(tmp_path, "scratch", "resnet18_data-100_seed0")
    assert m["config"]["stem"] == "cifar" and m["profile"] == "full"
    assert m["epochs"] == m["planned_epochs"] == 26  # airbench's 26 epochs at 100%
    assert make_config("resnet18", 1 / 4, profile="full").epochs == 52  # / sqrt(1/4)
    # airbench's recipe: cutout, reflect padding, flip test-time augmentation, the triangle
    c = m["config"]
    assert (c["cutout"], c["pad_mode"], c["tta"], c["schedule"]) == (
        12,
        "reflect",
        "flip",
        "triangle",
    )
    assert m["test_tta"] == "flip" and "| flip |" in (tmp_path / "results/summary.md").read_text()
    lrs = [h["lr"] for h in m["history"]]  # one step an epoch: the lr after each step
    peak = int(c["warmup_share"] * 26)
    assert max(lrs) == pytest.approx(c["lr"]) and lrs.index(max(lrs)) + 1 == peak
    # from lr_start_factor x the peak, up one step's share of the climb, to 0 at the end
    first = c["lr_start_factor"] + (1 - c["lr_start_factor"]) / (c["warmup_share"] * 26)
    assert lrs[0] == pytest.approx(c["lr"] * first, rel=0.05) and lrs[-1] == pytest.approx(0.0)
    # 10 validation images against 4 training images an epoch: every 5th epoch (and the last)
    # keeps them at eval_share = 0.5 per training image (max_evals = 50 would allow every 2nd)
    assert m["evaluations"] == 6
    assert [h["epoch"] for h in m["history"] if "val_acc" in h] == [*range(5, 26, 5), 26]
    # precision auto on a CPU: measured here, cached, recorded
    assert m["precision"] in ("fp32", "bf16 autocast + channels-last")
    probe = json.loads((cache / "big-vs-small" / "precision.json").read_text())
    assert any("resnet18, cifar stem | 32 px | batch 4" in key for key in probe)
    run = tmp_path / "runs" / "scratch" / "resnet18_data-100_seed0"
    assert (run / "best.pt").exists() and not (run / "checkpoint.pt").exists()


def test_full_pretrained_run_upsamples_through_the_imagenet_stem(tmp_path, fake_data):
    (tmp_path / "data").symlink_to(fake_data, target_is_directory=True)
    weights = tmp_path / "weights"
    own = write_test_weights("resnet18", weights).rename(weights / "mine.pth")
    cli(
        tmp_path,
        "--profile=full",
        "--settings=pretrained",
        "--models=resnet18",
        "--fractions=1",
        f"--weights=resnet18={own}",
        sets=[*CAPS, "--set=image_size=48", "--set=precision=fp32", "--set=epochs=2",
              "--set=warmup_epochs=1"],
    )  # fmt: skip
    m = metrics_of(tmp_path, "pretrained", "resnet18_data-100_seed0")
    assert m["config"]["stem"] == "imagenet" and m["config"]["image_size"] == 48
    # BiT-HyperRule: resize then crop, zero head, the step schedule, MixUp from 20k images
    recipe = make_config("resnet18", 1.0, True, profile="full", val_size=40).to_dict()
    for key in ("resize", "head_init", "schedule", "lr_drops", "mixup", "weight_decay", "tta"):
        assert m["config"][key] == recipe[key]
    # a warm-up in epochs, given through the notebook's overrides, replaces the recipe's share
    assert (m["config"]["warmup_epochs"], m["config"]["warmup_share"]) == (1.0, None)
    run_dir = tmp_path / "runs" / "pretrained" / "resnet18_data-100_seed0"
    assert m["pretrained"] and (run_dir / m["config"]["weights_path"]).resolve() == own.resolve()
    label = f"custom: mine.pth (sha256 {hashlib.sha256(own.read_bytes()).hexdigest()[:8]})"
    assert m["config"]["weights"] == label  # never taken for torchvision's
    assert f"| pretrained | {label} |" in (tmp_path / "results" / "summary.md").read_text()
    assert m["epochs"] == 2 and m["precision"] == "fp32"  # the epoch rule: the test above
    assert m["train_images"] == len(load_cifar10(fake_data, download=False).train_y) - 40
