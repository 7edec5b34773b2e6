"""The recipe's settings: bad values refused in one line, BiT's step budget, the
values unmeasured for a model, `--show`, and test-time augmentation recorded per run."""

from __future__ import annotations

import json
from typing import Any

import pytest

from common.analysis import build
from common.config import BIT_STEPS, RECIPES, main, make_config, train_images, unmeasured
from common.errors import ConfigError
from common.report import make_metrics, summary_table, variant
from tests.conftest import fake_result


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        (dict(cutout=33), "cutout must be a side in px"),
        (dict(cutout=2.5), "cutout must be a side in px"),
        (dict(pad_mode="edge"), "unknown pad_mode 'edge': choose one of zeros, reflect"),
        (dict(tta="crops"), "unknown tta 'crops': choose one of none, flip"),
        (dict(head_init="ones"), "unknown head_init 'ones'"),
        (dict(mixup=-0.1), "mixup must be 0 (off) or a positive alpha"),
        (dict(resize=24), "resize 24 is below image_size 32"),
        (dict(schedule="steps"), "schedule 'steps' needs lr_drops"),
        (dict(lr_drops=[0.6, 0.3]), "lr_drops must be increasing shares"),
        (dict(lr_drops=[1.5]), "lr_drops must be increasing shares"),
        (dict(warmup_share=1.0), "warmup_share must be a number from 0 up to"),
        (dict(lr_start_factor=1.5), "lr_start_factor must be a multiple of the peak in [0, 1]"),
        (dict(warmup_epochs="none"), "set exactly one of warmup_epochs and warmup_share"),
        (dict(budget="steps"), "unknown budget 'steps': choose one of sqrt, bit"),
    ],
)
def test_new_settings_refuse_bad_values_in_one_line(bad, says):
    with pytest.raises(ConfigError, match=None) as e:
        make_config("resnet18", 1.0, profile="quick", **bad)
    assert says in str(e.value) and "\n" not in str(e.value)


def test_a_model_unmeasured_with_its_recipe_says_which_values(capsys):
    names, why = unmeasured("resnet50", "scratch", "full")
    assert names == ("lr", "weight_decay", "epochs") and "airbench" in why
    main(["--show", "resnet50", "scratch", "1/16"])
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert rows["lr"].endswith("unmeasured for it") and "unmeasured" not in rows["batch_size"]
    assert unmeasured("resnet18", "scratch", "full") == ((), "")
    assert len(unmeasured("resnet101", "scratch", "quick")[0]) == len(RECIPES)  # resnet50's


def test_show_prints_every_value_with_its_source(capsys):
    main(["--show", "resnet50", "pretrained", "1/16", "--set", "lr=0.01"])
    out = capsys.readouterr().out
    assert "lr               0.01" in out and "--set" in out.split("lr  ")[1].split("\n")[0]
    assert "budget bit: BiT's steps" in out and "recipe full pretrained under 20,000 images" in out
    assert all(f"  {name} " in out for name in RECIPES)


def test_a_full_run_records_and_reports_its_test_time_augmentation():
    cfg = make_config("resnet18", 1.0, profile="full", output_dir="/nowhere/x")
    m = json.loads(json.dumps(make_metrics(cfg, fake_result(0.9, epochs=1))))  # as on disk
    assert m["test_tta"] == cfg.tta == "flip" and m["config"]["tta"] == "flip"
    assert variant(m) == ()  # lists (lr_drops) read back from JSON are still the recipe
    assert "| flip |" in summary_table(build([m], "full"))


@pytest.mark.parametrize("fraction", [1 / 16, 0.5, 1.0])
def test_bit_budget_trains_bits_steps_in_whole_epochs(fraction):
    cfg = make_config("resnet50", fraction, True, profile="quick", budget="bit", batch_size=512)
    images = train_images(fraction)
    steps = BIT_STEPS["few"] if images < BIT_STEPS["below"] else BIT_STEPS["many"]
    per_epoch = min(images // cfg.batch_size, cfg.steps_per_epoch)  # quick caps its epochs
    assert cfg.epochs * per_epoch >= steps > (cfg.epochs - 1) * per_epoch
    given = make_config("resnet50", fraction, True, profile="quick", budget="bit", epochs=3)
    assert given.epochs == 3  # given epochs are the run's
    with pytest.raises(ConfigError, match="budget 'sqrt' needs epochs"):
        make_config("resnet50", fraction, True, profile="full", budget="sqrt", epochs="none")


def steps(cfg: Any) -> int:
    """The optimizer steps of a full-profile run: whole batches of its training images."""
    return cfg.epochs * (train_images(cfg.data_fraction) // cfg.batch_size)


def test_fine_tuning_keeps_bits_500_steps_under_20000_images_and_1500_at_most_above():
    small, half, full = (make_config("resnet50", f, True, profile="full") for f in (1 / 16, 0.5, 1))
    per_epoch = train_images(1 / 16) // small.batch_size
    assert BIT_STEPS["few"] <= steps(small) < BIT_STEPS["few"] + per_epoch  # BiT's 500
    assert (small.mixup, small.warmup_share, small.lr_drops) == (0.0, 0.2, [0.4, 0.6, 0.8])
    assert 1400 < steps(full) <= 1500  # about 17 epochs at 100%
    assert half.epochs == round(full.epochs / 0.5**0.5)  # scaled as from scratch
    assert steps(full) > steps(half) > steps(small)
    for cfg in (half, full):  # BiT's shape: 5% warm-up, /10 at 30, 60, 90%, MixUp 0.1
        assert (cfg.warmup_share, cfg.lr_drops, cfg.mixup) == (0.05, [0.3, 0.6, 0.9], 0.1)
