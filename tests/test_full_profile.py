"""The full (GPU) profile end to end through the real CLI on the CPU, its work capped."""

from __future__ import annotations

import json

from common.config import make_config, parse_sets
from tests.conftest import write_test_weights
from tests.test_run_all import cli

# Caps on the work, not on the recipe's shape (stem, resize, schedule, augmentation); the epoch
# rule and the CPU's precision probe are tested where they are computed.
CAPS = ["batch_size=4", "steps_per_epoch=1", "epochs=3", "eval_images=20", "val_size=40"]
CAPS += ["image_size=32", "precision=fp32"]  # the fine-tuned crop as small as the scratch run's


def test_both_settings_of_the_full_profile_train_what_the_recipe_says(tmp_path, fake_data):
    (tmp_path / "data").symlink_to(fake_data, target_is_directory=True)
    own = write_test_weights("resnet18", tmp_path / "weights")
    done = cli(
        tmp_path,
        "--profile=full",
        "--models=resnet18",
        "--fractions=1",
        "--direct",
        f"--weights=resnet18={own}",
        sets=[f"--set={s}" for s in CAPS],
    )
    assert "profile full" in done.stdout
    recorded = {}
    for pretrained in (False, True):
        sets = parse_sets(CAPS) | {"weights": str(own)}
        cfg = make_config("resnet18", 1.0, pretrained, profile="full", **sets)
        run = tmp_path / "runs" / cfg.setting / "resnet18_data-100_seed0"
        m = json.loads((run / "metrics.json").read_text())
        recorded[cfg.setting] = m["config"]
        assert {k: m["config"][k] for k in cfg.training_key()} == cfg.training_key()
        assert m["epochs"] == cfg.epochs == len(m["history"])
    # the branches only the full profile takes: the CIFAR stem, BiT's upsampling before the crop
    assert recorded["scratch"]["stem"] == "cifar" and recorded["pretrained"]["resize"] == 160
