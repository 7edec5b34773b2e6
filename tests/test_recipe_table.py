"""The recipe table resolves every (profile, setting, model, fraction) as the layered recipes did.

tests/fixtures/resolved_configs.json holds the configurations that `make_config` resolved before
the recipes became one table (written by the same loop as `resolved` below, on that code).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from common.config import COLUMNS, LIFT, RECIPES, make_config
from common.models import MODELS

FIXTURE = Path(__file__).parent / "fixtures" / "resolved_configs.json"
CASES = [{}, {"budget": "bit"}, {"val_size": 20000}, {"warmup_epochs": 2}, {"epochs": 7}]
CASES += [{"steps_per_epoch": 3}, {"eval_images": LIFT}]


def resolved() -> dict[str, dict]:
    """Every pinned configuration, by 'profile setting model fraction overrides'."""
    out = {}
    for profile in ("full", "quick"):
        for pretrained in (False, True):
            for model in MODELS:
                for fraction in ("1/16", "1/4", "0.5", "1"):
                    for over in CASES if model in ("resnet18", "resnet50") else CASES[:1]:
                        shown = {k: "none" if v == LIFT else v for k, v in over.items()}
                        setting = "pretrained" if pretrained else "scratch"
                        key = f"{profile} {setting} {model} {fraction} "
                        key += json.dumps(shown, sort_keys=True)
                        cfg = make_config(
                            model=model,
                            data_fraction=fraction,
                            pretrained=pretrained,
                            profile=profile,
                            output_dir="/x",
                            data_dir="/d",
                            **over,
                        ).to_dict()
                        out[key] = {
                            k: v for k, v in cfg.items() if k not in ("data_dir", "output_dir")
                        }
    return out


def test_every_run_resolves_as_before_the_table():
    before = json.loads(FIXTURE.read_text())
    now = resolved()
    assert now.keys() == before.keys()
    changed = [k for k in before if now[k] != before[k]]
    assert not changed, f"{len(changed)} configurations changed, e.g. {changed[:3]}"


def test_every_row_has_a_value_per_column():
    assert all(len(values) == len(COLUMNS) for values in RECIPES.values())


@pytest.mark.parametrize("fraction", ["1/16", "1"])
def test_the_table_column_is_what_a_run_trains_with(fraction):
    cfg = make_config("resnet50", fraction, pretrained=True, profile="full")
    column = 2 if fraction == "1/16" else 1  # BiT's regimes: under / from 20,000 images
    assert cfg.mixup == RECIPES["mixup"][column] and cfg.budget == RECIPES["budget"][column]
