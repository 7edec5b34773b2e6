"""The full (GPU) profile through the real CLI on the CPU, capped: every line of its path runs,
from the CPU's precision probe to the CIFAR stem, the epoch rule and the upsampling branch."""

from __future__ import annotations

import hashlib
import json

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
        "--fractions=1/4",
        sets=CAPS,
        env={"XDG_CACHE_HOME": str(cache)},
    )
    assert "profile full" in done.stdout
    m = metrics_of(tmp_path, "scratch", "resnet18_data-25_seed0")
    assert m["config"]["stem"] == "cifar" and m["profile"] == "full"
    assert m["epochs"] == m["planned_epochs"] == 52  # 26 epochs at 100%, / sqrt(1/4)
    # 10 validation images against 4 training images an epoch: every 5th epoch (and the last)
    # keeps them at eval_share = 0.5 per training image (max_evals = 50 would allow every 2nd)
    assert m["evaluations"] == 11
    assert [h["epoch"] for h in m["history"] if "val_acc" in h] == [*range(5, 52, 5), 52]
    # precision auto on a CPU: measured here, cached, recorded
    assert m["precision"] in ("fp32", "bf16 autocast + channels-last")
    probe = json.loads((cache / "big-vs-small" / "precision.json").read_text())
    assert any("resnet18, cifar stem | 32 px | batch 4" in key for key in probe)
    run = tmp_path / "runs" / "scratch" / "resnet18_data-25_seed0"
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
        sets=[*CAPS, "--set=image_size=48", "--set=precision=fp32", "--set=epochs=2"],
    )
    m = metrics_of(tmp_path, "pretrained", "resnet18_data-100_seed0")
    assert m["config"]["stem"] == "imagenet" and m["config"]["image_size"] == 48
    assert m["pretrained"] and m["config"]["weights_path"] == str(own)
    label = f"custom: mine.pth (sha256 {hashlib.sha256(own.read_bytes()).hexdigest()[:8]})"
    assert m["config"]["weights"] == label  # never taken for torchvision's
    assert f"| pretrained | {label} |" in (tmp_path / "results" / "summary.md").read_text()
    assert m["epochs"] == 2 and m["precision"] == "fp32"  # the epoch rule: the test above
    assert m["train_images"] == len(load_cifar10(fake_data, download=False).train_y) - 40
