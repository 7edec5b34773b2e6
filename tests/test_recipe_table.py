"""Every (profile, setting, model, fraction) resolves to the configuration pinned in
tests/fixtures/resolved_configs.json: an edit that changes what a run trains with fails here."""

from __future__ import annotations

import json
from itertools import product
from pathlib import Path

from common.config import COLUMNS, LIFT, PROFILES, RECIPES, SETTINGS, make_config
from common.models import MODELS

FIXTURE = Path(__file__).parent / "fixtures" / "resolved_configs.json"
CASES = [{}, {"budget": "bit"}, {"val_size": 20000}, {"warmup_epochs": 2}, {"epochs": 7}]
CASES += [{"steps_per_epoch": 3}, {"eval_images": LIFT}]
FRACTIONS = ("1/16", "1/4", "0.5", "1")


def resolved() -> dict[str, dict]:
    """Every pinned configuration, by 'profile setting model fraction overrides'."""
    out = {}
    for profile, setting, model, fraction in product(PROFILES, SETTINGS, MODELS, FRACTIONS):
        for over in CASES if model in ("resnet18", "resnet50") else CASES[:1]:
            shown = json.dumps({k: "none" if v == LIFT else v for k, v in over.items()})
            cfg = make_config(model, fraction, setting == "pretrained", profile=profile, **over)
            out[f"{profile} {setting} {model} {fraction} {shown}"] = {
                k: v for k, v in cfg.to_dict().items() if k not in ("data_dir", "output_dir")
            }
    return out


def test_every_run_resolves_as_pinned():
    assert all(len(values) == len(COLUMNS) for values in RECIPES.values())
    before, now = json.loads(FIXTURE.read_text()), resolved()
    assert now.keys() == before.keys()
    changed = [k for k in before if now[k] != before[k]]
    assert not changed, f"{len(changed)} configurations changed, e.g. {changed[:3]}"
