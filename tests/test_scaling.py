"""Power-law fits, extrapolation, observations and scaling figures on synthetic numbers."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import nbformat
import numpy as np
import papermill as pm
import pytest

from common.config import make_config
from common.files import write_json
from common.fits import extrapolate, fit_power_law
from common.observations import extrapolation_table, observations
from common.runner import NOTEBOOKS
from common.scaling import load_all, profile_line, record, write_scaling

SIZES = {1 / 16: 2810, 0.5: 22500, 1.0: 45000}


def run(
    model: str = "resnet18",
    setting: str = "scratch",
    fraction: float = 1.0,
    seed: int = 0,
    acc: float = 0.5,
    profile: str = "full",
) -> dict[str, Any]:
    """A metrics.json record with every documented key."""
    return {
        "model": model,
        "setting": setting,
        "pretrained": setting == "pretrained",
        "data_fraction": fraction,
        "seed": seed,
        "epochs": 1,
        "profile": profile,
        "train_images": SIZES[fraction],
        "test_images": 10_000,
        "test_acc": acc,
        "best_val_acc": acc,
        "best_epoch": 1,
        "wall_time_s": 60.0 * (1 + seed),
        "device": "cpu",
        "hardware": "test CPU",
        "finished_at": f"2026-01-01T00:00:{seed:02d}+00:00",
        "steps_per_epoch": 4,
        "config": make_config(model, fraction, setting == "pretrained", seed, profile).to_dict(),
        "torch": "x",
        "torchvision": "y",
        "history": [{"epoch": 1, "train_loss": 1, "train_acc": 0.5, "val_loss": 1, "val_acc": 0.5}],
    }


def grid(profile: str = "full") -> list[dict[str, Any]]:
    """Both settings, both models, three sizes, two seeds; error falls with size."""
    out = []
    for setting, bonus in (("scratch", 0.0), ("pretrained", 0.05)):
        for model, edge in (("resnet18", 0.0), ("resnet50", 0.02)):
            for fraction in SIZES:
                for seed in (0, 1):
                    err = 3 * SIZES[fraction] ** -0.4 + 0.05 - bonus - edge + 0.002 * seed
                    out.append(run(model, setting, fraction, seed, 1 - err, profile))
    return out


def test_fit_recovers_known_parameters():
    n = np.geomspace(500, 50_000, 8)
    fit = fit_power_law(n, 5 * n**-0.5 + 0.05)
    assert fit.a == pytest.approx(5, rel=0.05) and fit.b == pytest.approx(0.5, rel=0.05)
    assert abs(fit.c - 0.05) < 0.01 and fit.points == 8
    assert fit(n) == pytest.approx(5 * n**-0.5 + 0.05, rel=1e-3)
    assert fit.describe().startswith("e(n) = 5") and "n^-0.50" in fit.describe()


def test_fit_two_points_is_a_pure_power_law():
    fit = fit_power_law([1000, 4000], [0.4, 0.2])
    assert fit.c == 0 and fit.b == pytest.approx(0.5)
    assert fit(1000) == pytest.approx(0.4) and fit(4000) == pytest.approx(0.2)


@pytest.mark.parametrize(
    "n, err",
    [
        ([1000], [0.3]),  # one point
        ([1000, 1000, 1000], [0.3, 0.2, 0.25]),  # one size, several seeds
        ([1000, 2000, 4000], [0.3, 0.3, 0.3]),  # flat
        ([1000, 2000, 4000], [0.2, 0.3, 0.4]),  # increasing
        ([1000, 4000], [0.2, 0.3]),  # two points, increasing
    ],
)
def test_fit_is_flat_without_a_decrease(n, err):
    fit = fit_power_law(n, err)
    assert fit.a == 0 and fit.b == 0 and fit.c == pytest.approx(np.mean(err))
    assert fit.flat and "flat" in fit.describe() and np.isfinite(fit(np.array(n))).all()


def test_fit_handles_repeated_sizes_and_zero_errors():
    n = [100, 100, 200, 200, 400, 400, 800, 800]
    fit = fit_power_law(n, [0.5, 0.48, 0.3, 0.32, 0.2, 0.22, 0.1, 0.12])
    assert fit.points == 8 and fit.b > 0 and 0 <= fit.c < 0.1
    zero = fit_power_law(n, [0.5, 0.48, 0.3, 0.32, 0.1, 0.12, 0.0, 0.01])
    assert all(math.isfinite(v) for v in (zero.a, zero.b, zero.c))
    assert np.isfinite(zero(np.array(n))).all()


def test_extrapolation_predicts_the_held_out_size():
    n = np.repeat([500, 1000, 2000, 4000, 8000], 2)
    check = extrapolate(n, 5 * n**-0.5 + 0.05)
    assert check["fit_on"] == [500, 1000, 2000, 4000] and check["n"] == 8000
    assert check["measured"] == pytest.approx(5 * 8000**-0.5 + 0.05)
    assert abs(check["predicted"] - check["measured"]) < 1e-3
    assert extrapolate([500, 500, 1000, 1000], [0.3, 0.31, 0.2, 0.21]) is None


def test_scaling_points_and_table():
    metrics = grid()
    lines = record(metrics).lines
    assert [(line.setting, line.model) for line in lines[:2]] == [
        ("scratch", "resnet18"),
        ("scratch", "resnet50"),
    ]
    assert len(lines[0].points) == 6
    assert lines[0].points[0] == (2810, pytest.approx(3 * 2810**-0.4 + 0.05))
    table = extrapolation_table(record(metrics))
    assert table.count("\n") == 2 + 4 and "| 2,810, 22,500 | " in table and "| 45,000 |" in table
    short = extrapolation_table(record([r for r in metrics if r["data_fraction"] != 0.5]))
    assert short.count("needs 3+ data sizes") == 4


def seeds(model: str, accs: list[float]) -> list[dict[str, Any]]:
    return [run(model, seed=i, acc=a) for i, a in enumerate(accs)]


def test_a_clear_win_is_named_with_its_paired_test_and_p():
    text = observations(
        record(seeds("resnet18", [0.70, 0.71, 0.72]) + seeds("resnet50", [0.80, 0.81, 0.79]))
    )
    assert "ResNet-50 minus ResNet-18 is +9.00 points" in text[0]
    assert "80.00 ± 1.00% (n=3)" in text[0] and "paired t-test over 3 seeds: p = " in text[0]
    assert "Holm-adjusted over the 1 test of test accuracy this report makes" in text[0]
    assert "< 0.05, a difference beyond seed noise" in text[0]
    assert text[-1].startswith("Budget-bound: not checked")


def test_overlapping_seeds_and_single_seeds_make_no_claim():
    text = observations(
        record(seeds("resnet18", [0.70, 0.75, 0.72]) + seeds("resnet50", [0.71, 0.74, 0.73]))
    )
    assert "beyond seed noise" not in text[0] and "≥ 0.05, not a clear difference" in text[0]
    single = observations(record(seeds("resnet18", [0.70]) + seeds("resnet50", [0.90])))
    assert "not tested (one seed on a side)" in single[0] and "beyond seed noise" not in single[0]


def paired_cells(fraction: float, shift: float) -> list[dict[str, Any]]:
    """ResNet-50 `shift` above ResNet-18 in every seed, over seeds far apart from each other."""
    base = [0.60, 0.70, 0.80, 0.65]
    return [
        r
        for s, acc in enumerate(base)
        for r in (
            run("resnet18", fraction=fraction, seed=s, acc=acc),
            run("resnet50", fraction=fraction, seed=s, acc=acc + shift + 0.001 * s),
        )
    ]


def test_only_the_paired_test_finds_a_difference_that_pairs_by_seed():
    (text,) = [t for t in observations(record(paired_cells(1.0, 0.01))) if "minus" in t]
    assert "paired t-test over 4 seeds" in text and "beyond seed noise" in text
    # the same runs with seeds that do not pair: Welch's test, and the seeds' spread hides it
    unpaired = [
        dict(r, seed=r["seed"] + 10 * (r["model"] == "resnet50")) for r in paired_cells(1.0, 0.01)
    ]
    (text,) = [t for t in observations(record(unpaired)) if "minus" in t]
    assert "Welch's t-test over 4 seeds" in text and "not a clear difference" in text


def gains(fraction: float, diffs: list[float]) -> list[dict[str, Any]]:
    """ResNet-50 `diffs[s]` above ResNet-18 in seed s, over seeds far apart."""
    base = [0.60, 0.70, 0.80, 0.65]
    return [run("resnet18", fraction=fraction, seed=s, acc=a) for s, a in enumerate(base)] + [
        run("resnet50", fraction=fraction, seed=s, acc=a + d)
        for s, (a, d) in enumerate(zip(base, diffs, strict=True))
    ]


def test_holm_over_three_comparisons_removes_one_that_holds_alone():
    runs = gains(1 / 16, [0.020, 0.021, 0.022, 0.023])  # clear
    runs += gains(0.5, [0.002, 0.012, 0.006, 0.010])  # p < 0.05 alone, not after Holm
    runs += gains(1.0, [0.010, -0.010, 0.005, -0.004])  # no difference
    text = [t for t in observations(record(runs)) if "minus" in t]
    assert len(text) == 3 and all("over the 3 tests of test accuracy" in t for t in text)
    raw = [float(t.split("over 4 seeds: p = ")[1].split(",")[0]) for t in text]
    assert sum(p < 0.05 for p in raw) == 2
    assert sum("beyond seed noise" in t for t in text) == 1
    (half,) = [t for t in text if t.startswith("From scratch, 50%")]
    assert "paired t-test" in half and "≥ 0.05, not a clear difference" in half


def test_quick_runs_are_a_pipeline_check_with_no_claims():
    (text,) = observations(record(grid(profile="quick")))
    assert text.startswith("Quick profile: these runs check that the pipeline works end to end")
    assert "none is stated, tested or fitted" in text
    assert not any(w in text for w in ("t-test", "AIC", "beats", "points above", "minus"))


def test_observations_cover_pretraining_and_curves():
    text = observations(record(grid(profile="full")))
    gaps = [t for t in text if "fine-tuned minus from scratch" in t]
    assert len(gaps) == 6 and all("+5.00 points" in t for t in gaps)
    curves = [t for t in text if "AICc (" in t]
    assert len(curves) == 4 and all("b = " in t and "e_N = " in t and "β_N = " in t for t in curves)
    assert all("t-interval over the seeds' own fits" in t for t in curves)
    # three sizes: the 3-parameter curve is exact, and the bullet says how to test it
    assert all("is not tested; `--fractions 1/16,1/8,25%,50%,100%`" in t for t in curves)
    assert observations(record([])) == ["No runs to compare yet."]


def test_budget_bound_is_said_only_from_twice_the_budget_runs():
    runs = paired_cells(1.0, 0.0)
    for r in runs:
        r["config"] = dict(r["config"], epochs=10)
    longer = [
        dict(
            r,
            config=dict(r["config"], epochs=20),
            test_acc=r["test_acc"] + 0.02 + 0.001 * r["seed"],
            finished_at="2025-01-01T00:00:00+00:00",
        )
        for r in runs
    ]
    text = observations(record(runs + longer))
    assert text[-1].startswith("Budget: 2 of the 2 cells with twice-the-budget runs")
    assert sum("twice the epochs minus the recipe's epochs" in t for t in text) == 2
    assert observations(record(runs))[-1].startswith("Budget-bound: not checked")


def test_observations_call_a_flat_cloud_flat():
    rng = np.random.default_rng(3)
    metrics = [
        run(fraction=f, seed=s, acc=0.3 + rng.normal(0, 0.01)) for f in SIZES for s in range(3)
    ]
    (curve,) = [t for t in observations(record(metrics)) if "AICc (" in t]
    assert "prefers the flat line" in curve and "show no fall of test error" in curve
    assert "b = " not in curve


def test_write_scaling_writes_four_pngs(tmp_path):
    for metrics in (grid(profile="quick"), [run()], []):
        paths = write_scaling(record(metrics), tmp_path)
        assert [p.name for p in paths] == [
            "error_vs_data.png",
            "error_vs_parameters.png",
            "accuracy_vs_time.png",
            "pretrained_gap.png",
        ]
        assert all(p.parent == tmp_path / "scaling" and p.stat().st_size > 0 for p in paths)


def test_the_figures_name_their_profile_once():
    assert profile_line(grid(profile="quick")) == (
        "quick profile: short CPU smoke runs, not converged results"
    )
    assert profile_line(grid()) == "profile: full"
    assert profile_line(grid() + grid(profile="quick")).count("quick") == 2  # name, then note


def write_runs(root: Path, metrics: list[dict[str, Any]]) -> None:
    for i, m in enumerate(metrics):
        write_json(root / m["setting"] / f"run{i}_{m['profile']}" / "metrics.json", m)


def test_load_all_picks_the_profile_with_most_runs(tmp_path):
    write_runs(tmp_path, grid(profile="quick") + [run(profile="full")])
    assert {m["profile"] for m in load_all(tmp_path, None)} == {"quick"}
    assert len(load_all(tmp_path, None)) == 24 and len(load_all(tmp_path, "full")) == 1


def test_notebook_runs_with_papermill(tmp_path):
    path = NOTEBOOKS / "scaling.ipynb"  # kept clean by tests/test_notebooks.py
    assert set(pm.inspect_notebook(str(path))) == {"output_dir", "images_dir", "profile"}
    write_runs(tmp_path / "runs", grid())
    pm.execute_notebook(
        str(path),
        str(tmp_path / "executed.ipynb"),
        parameters={"output_dir": str(tmp_path / "runs"), "images_dir": str(tmp_path / "images")},
        progress_bar=False,
    )
    assert len(list((tmp_path / "images" / "scaling").glob("*.png"))) == 4
    executed = nbformat.read(tmp_path / "executed.ipynb", as_version=4)
    outputs = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs]
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 4
    assert any("fine-tuned minus from scratch" in o.get("text", "") for o in outputs)


def test_the_quick_figure_has_no_data_size_axis_uses_percent_and_no_bars_for_one_seed():
    from common.scaling import plot_error_vs_data

    fig = plot_error_vs_data(record(grid(profile="quick")[::2]))  # seed 0 only
    ax = fig.axes[0]
    assert ax.get_xscale() == "linear" and "not how many it trains on" in ax.get_xlabel()
    assert ax.get_ylabel() == "test accuracy (%)" and "one seed, no error bars" in ax.get_title()
    assert not [c for c in ax.containers if c.has_yerr]
    assert all(20 < y < 100 for line in ax.lines for y in line.get_ydata())
