"""One row = one configuration: runs that trained differently are never averaged together."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from common.config import (
    BIT_STEPS,
    RECIPES,
    main,
    make_config,
    sources,
    train_images,
    unmeasured,
)
from common.errors import ConfigError
from common.observations import observations
from common.readme import README_END, README_START
from common.report import Call, summary_table, write_report
from common.results import (
    FORMER_DEFAULTS,
    group_conditions,
    make_metrics,
    split_configurations,
    variant,
)
from common.runner import State, state
from common.scaling import load_all, record
from tests.conftest import fake_result


def metrics(fraction: float, seed: int, acc: float, when: str, **overrides: Any) -> dict:
    cfg = make_config(
        model="resnet18",
        data_fraction=fraction,
        seed=seed,
        profile="quick",
        output_dir=f"/nowhere/{seed}",
        **overrides,
    )
    m = make_metrics(cfg, fake_result(acc, epochs=1))
    m["finished_at"] = when
    return m


def write(root: Path, runs: list[dict]) -> None:
    for i, m in enumerate(runs):
        folder = root / "scratch" / f"run{i}"
        folder.mkdir(parents=True)
        (folder / "metrics.json").write_text(json.dumps(m))


def mixed() -> list[dict]:
    """Yesterday's runs at lr 0.01 and today's at the recipe's lr, same cells, same seeds."""
    old = [
        metrics(f, s, 0.2, "2026-01-01T00:00:00", lr=0.01) for f in (1 / 16, 1.0) for s in (0, 1)
    ]
    new = [metrics(f, s, 0.6, "2026-01-02T00:00:00") for f in (1 / 16, 1.0) for s in (0, 1)]
    return old + new


def test_variant_names_what_differs_from_the_recipe():
    old, new = mixed()[0], mixed()[-1]
    assert variant(old) == (("lr", 0.01),) and variant(new) == ()
    assert variant(metrics(1.0, 0, 0.5, "x", epochs=2, lr=0.01)) == (("epochs", 2), ("lr", 0.01))


def test_cells_group_by_configuration_not_only_by_cell():
    cells = group_conditions(mixed())
    assert len(cells) == 4 and all(c.stat("test_acc")[2] == 2 for c in cells)
    assert sorted({c.label for c in cells}) == ["lr: recipe", "lr=0.01"]
    alone = group_conditions(metrics(1.0, s, 0.5, "x", epochs=2) for s in (0, 1))
    assert [c.label for c in alone] == [""]  # one configuration: nothing to tell apart
    main, others = split_configurations(mixed())  # 4 runs each: the latest configuration
    assert {m["test_acc"] for m in main} == {0.6} and {m["test_acc"] for m in others} == {0.2}
    stray = metrics(1.0, 0, 0.9, "2026-01-03T00:00:00", epochs=1)  # a later notebook run
    main, others = split_configurations([*mixed(), stray])
    assert {m["test_acc"] for m in main} == {0.6} and len(main) == 4  # it redefines nothing
    assert len(others) == 5 and stray in others


def test_a_setting_of_one_configuration_has_no_label_beside_another_of_two():
    tuned = [metrics(1.0, s, 0.9, "x", pretrained=True, epochs=2) for s in (0, 1)]
    cells = group_conditions(mixed() + tuned)
    labels = {(c.setting, c.label) for c in cells}
    assert labels == {("scratch", "lr: recipe"), ("scratch", "lr=0.01"), ("pretrained", "")}


def test_report_keeps_two_configurations_in_one_folder_apart(tmp_path):
    write(tmp_path / "runs", mixed())
    readme = tmp_path / "README.md"
    readme.write_text(f"# t\n{README_START}\n{README_END}\n")
    summary = write_report(
        tmp_path / "runs", tmp_path / "images", tmp_path / "results", readme, "quick", Call("cmd")
    ).read_text()
    # today's runs alone in the recipe rows; yesterday's in rows that name their lr
    assert (
        summary.count("| scratch (lr: recipe) | – | 100 |") == 2 and "60.00 ± 0.00 (n=2)" in summary
    )
    assert summary.count("| scratch (lr=0.01) | – | 100 |") == 2 and "20.00 ± 0.00 (n=2)" in summary
    assert "40.00" not in summary  # never the average of the two
    assert "4 runs of 1 other configuration (lr=0.01)" in summary
    section = readme.read_text()
    assert "left out of the curves, figures, fits and observations" in section
    assert {m["test_acc"] for m in load_all(tmp_path / "runs", "quick")} == {0.6}


def test_a_v2_grid_is_one_configuration_whose_weights_label_the_rows(tmp_path):
    def run(model: str, pretrained: bool, weights: str, when: str) -> dict:
        cfg = make_config(
            model, 1.0, pretrained, 0, "quick", output_dir="/nowhere", weights=weights
        )
        m = make_metrics(cfg, fake_result(0.5, epochs=1))
        m["finished_at"] = when
        return m

    # what `--weights V2` leaves: ResNet-18 stays V1, ResNet-50 takes V2, scratch runs beside
    runs = [
        run("resnet18", False, "V2", "2026-01-01T00:00:01"),
        run("resnet18", True, "V2", "2026-01-01T00:00:02"),
        run("resnet50", True, "V2", "2026-01-01T00:00:03"),
    ]
    latest, others = split_configurations(runs)
    assert len(latest) == 3 and not others  # none left out of the curves, figures and fits
    rows = {(c.setting, c.model): c.runs[0]["config"]["weights"] for c in group_conditions(runs)}
    assert rows == {
        ("scratch", "resnet18"): None,
        ("pretrained", "resnet18"): "V1",
        ("pretrained", "resnet50"): "V2",
    }


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


def test_one_warm_up_given_replaces_the_other():
    full = make_config("resnet18", 1.0, profile="full")
    assert full.warmup_share is not None and full.warmup_epochs is None
    epochs = make_config("resnet18", 1.0, profile="full", warmup_epochs=2)
    assert (epochs.warmup_epochs, epochs.warmup_share) == (2.0, None)
    share = make_config("resnet18", 1.0, profile="quick", warmup_share=0.1)
    assert (share.warmup_epochs, share.warmup_share) == (None, 0.1)


def test_a_model_unmeasured_with_its_recipe_says_which_values():
    names, why = unmeasured("resnet50", "scratch", "full")
    assert names == ("lr", "weight_decay", "epochs") and "airbench" in why
    rows = {name: where for name, _, where in sources("resnet50", "scratch", "1/16", "full", {})}
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
    assert "| flip |" in summary_table(group_conditions([m]), {})
    quick = metrics(1.0, 0, 0.5, "x")
    assert "| none |" in summary_table(group_conditions([quick]), {})


def test_a_best_epoch_at_the_last_one_is_not_called_budget_bound():
    # a schedule that ends at lr 0 nearly always gives it: only twice-the-budget runs can tell
    runs = []
    for fraction in (1 / 16, 1.0):
        for seed in range(3):
            cfg = make_config("resnet18", fraction, seed=seed, profile="full", output_dir="/x")
            runs.append(make_metrics(cfg, fake_result(0.5 + seed / 100, epochs=4)))
    (bullet,) = [b for b in observations(record(runs)) if b.startswith("Budget")]
    assert bullet.startswith("Budget-bound: not checked") and "budget-bound)" not in bullet


def test_a_run_recorded_before_the_new_settings_existed_is_done_if_it_had_them_off(tmp_path):
    cfg = make_config("resnet18", 1.0, profile="quick", output_dir=str(tmp_path), data_dir="/x")
    m = make_metrics(cfg, fake_result(0.5, epochs=1))
    del m["schema"]  # as written before these settings (and the schema version) existed
    for key in FORMER_DEFAULTS:
        del m["config"][key]
    (tmp_path / "metrics.json").write_text(json.dumps(m))
    assert state(cfg) == State.DONE
    cutout = make_config(
        "resnet18", 1.0, profile="quick", output_dir=str(tmp_path), data_dir="/x", cutout=4
    )
    assert state(cutout) == State.TODO  # it did not train with cutout


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


@pytest.mark.parametrize("fraction", [0.5, 1.0])
def test_bits_cited_10000_steps_are_one_setting_away(fraction):
    cfg = make_config("resnet50", fraction, True, profile="full", budget="bit")
    per_epoch = train_images(fraction) // cfg.batch_size
    assert BIT_STEPS["many"] <= steps(cfg) < BIT_STEPS["many"] + per_epoch


def test_a_new_fine_tuned_grid_leaves_the_former_scratch_runs_in_place():
    def run(pretrained: bool, when: str, **sets) -> dict:
        cfg = make_config("resnet50", 1.0, pretrained, 0, "quick", output_dir="/nowhere", **sets)
        m = make_metrics(cfg, fake_result(0.5, epochs=1))
        m["finished_at"] = when
        return m

    # scratch runs of another recipe, then fine-tuned runs of today's, then scratch of today's
    former = run(False, "2026-01-01T00:00:01", lr=0.01)
    tuned = run(True, "2026-01-01T00:00:02")
    latest, others = split_configurations([former, tuned])
    assert latest == [former, tuned] and not others  # each setting keeps its own latest
    today = run(False, "2026-01-01T00:00:03")
    latest, others = split_configurations([former, tuned, today])
    assert latest == [tuned, today] and others == [former]
