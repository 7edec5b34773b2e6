"""Model size as an axis: the five depths in the grid, their parameter counts, the joint fit over
data and model size on synthetic truth, and a tiny CPU grid of 3 models x 3 sizes that ends with
the model-size figure and the joint fit in its summary."""

from __future__ import annotations

import numpy as np
import pytest

import common
import run_all
from common.config import SAME_RECIPE, make_config, recipe_model
from common.fits import analyse_joint, fit_joint, joint_leave_out, joint_refusal
from common.models import MODELS, flops_per_image, parameter_count
from common.observations import joint_table, observations
from common.report import Call, write_report
from common.results import make_metrics, parameters, upgrade
from common.runner import BASE_MODELS, Run, build_grid
from common.scaling import record, write_scaling
from tests.conftest import TINY, fake_result
from tests.test_run_all import cli_args
from tests.test_scaling import SIZES, run

DEPTHS = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]
# Synthetic truth in the form of Rosenfeld et al. 2020: e(m, n) = a n^-alpha + b m^-beta + c
TRUTH = dict(a=6.0, alpha=0.5, b=40.0, beta=0.35, c=0.04)
M = np.geomspace(2e5, 6e7, 5)  # parameters
N = np.geomspace(1500, 45000, 5)  # training images


def truth(m: np.ndarray, n: np.ndarray) -> np.ndarray:
    t = TRUTH
    return t["a"] * n ** -t["alpha"] + t["b"] * m ** -t["beta"] + t["c"]


def noisy_grid(seed: int, seeds: int = 3, sd: float = 0.004) -> tuple[np.ndarray, ...]:
    """Every (m, n) cell of M x N with `seeds` runs, the error the truth plus noise."""
    m, n = (v.ravel() for v in np.meshgrid(M, N))
    m, n = np.repeat(m, seeds), np.repeat(n, seeds)
    err = truth(m, n) + np.random.default_rng(seed).normal(0, sd, m.size)
    return m, n, err


def seeds_of(seeds: int) -> np.ndarray:
    """The seed of each run of `noisy_grid`."""
    return np.tile(np.arange(seeds), M.size * N.size)


def test_the_joint_fit_recovers_known_exponents_from_noisy_runs():
    covered = 0
    for seed in range(3):
        joint = analyse_joint(*noisy_grid(seed), seeds_of(3))
        assert joint.models == [int(v) for v in M] and joint.runs == 75
        assert joint.fit.alpha == pytest.approx(TRUTH["alpha"], abs=0.1)
        assert joint.fit.beta == pytest.approx(TRUTH["beta"], abs=0.1)
        covered += joint.alpha[0] <= TRUTH["alpha"] <= joint.alpha[1]
        covered += joint.beta[0] <= TRUTH["beta"] <= joint.beta[1]
    assert covered >= 5  # six 95% intervals: allow one miss
    exact = fit_joint(*noisy_grid(0, seeds=1, sd=0.0))
    assert exact(M[0], N[0]) == pytest.approx(truth(M[0], N[0]), rel=1e-3)


def test_fitted_without_the_largest_model_it_predicts_that_model():
    check = joint_leave_out(*noisy_grid(1), "model", seeds_of(3))
    assert check["tested"] and check["left_out"] == int(M[-1])
    assert [c["n"] for c in check["cells"]] == [int(v) for v in N]
    inside = [c["inside"] for c in check["cells"]]
    assert sum(inside) >= 4  # five 95% intervals
    for cell in check["cells"]:
        assert cell["measured"] == pytest.approx(truth(M[-1], cell["n"]), abs=0.01)


@pytest.mark.parametrize(
    "cells, reason",
    [
        ([(M[i], N[j]) for i in range(2) for j in range(5)], "2 model sizes"),
        ([(M[i], N[j]) for i in range(5) for j in range(2)], "2 training-set sizes"),
        ([(M[i], N[i]) for i in range(5)], "5 (model, size) cells for 5 parameters"),
    ],
)
def test_the_joint_fit_refuses_what_its_points_cannot_identify(cells, reason):
    m, n = (np.repeat(v, 3) for v in zip(*cells, strict=True))
    assert reason in joint_refusal(m, n)
    assert analyse_joint(m, n, truth(m, n)) is None


def test_quick_runs_get_no_joint_fit():
    quick = [run(m, fraction=f, profile="quick") for m in DEPTHS[:3] for f in SIZES]
    assert joint_table(record(quick)).startswith("Quick runs measure no model-size effect")
    assert not any("Joint fit" in line for line in observations(record(quick)))


def test_leaving_out_the_largest_size_of_three_is_not_tested():
    m, n, err = noisy_grid(2)
    keep = n <= N[2]  # three sizes: without the largest, two are left
    check = joint_leave_out(m[keep], n[keep], err[keep], "size")
    assert not check["tested"] and "2 training-set sizes" in check["reason"]


def test_the_five_depths_grow_in_parameters_and_flops():
    counts = [parameter_count(d) for d in DEPTHS]
    assert counts == sorted(counts) and counts[0] > 11e6 and counts[-1] > 58e6
    # the CIFAR stem's 3x3 first convolution has 64 * 3 * (49 - 9) fewer weights than the 7x7
    assert parameter_count("resnet50", "imagenet") - counts[2] == 64 * 3 * 40
    flops = [flops_per_image(d) for d in DEPTHS]
    assert flops == sorted(flops)


def test_every_model_has_a_notebook_a_cost_and_a_recipe():
    runs = [Run("scratch", m, 1.0, 0) for m in MODELS]
    named = {r.model: r.notebook.name for r in runs}
    assert named["resnet18"] == "resnet18_data-100.ipynb"
    assert named["resnet50"] == "resnet50_data-100.ipynb"
    assert all(named[m] == "model.ipynb" for m in MODELS if m not in BASE_MODELS)
    costs = [Run("scratch", d, 0.5, 0).cost for d in DEPTHS]
    assert costs == sorted(costs) and costs[0] == 0.5
    assert all(recipe_model(m) in BASE_MODELS for m in MODELS)  # tuned, or inherited with why
    assert all(why for _, why in SAME_RECIPE.values())
    assert len(build_grid(["scratch", "pretrained"], None, [1 / 16, 0.5, 1.0], [0])) == 13


def test_parameters_are_recorded_and_derived_for_older_records():
    cfg = make_config("resnet34", 1.0, False, 0, "full")
    metrics = make_metrics(cfg, fake_result())
    assert metrics["parameters"] == parameter_count("resnet34", "cifar")
    older = {k: v for k, v in metrics.items() if k not in ("schema", "parameters", "config")}
    assert parameters(upgrade(older)) == metrics["parameters"]  # the full scratch recipe's stem


def test_dry_run_lists_all_five_depths(tmp_path, fake_data, torch_home, no_network, capsys):
    (tmp_path / "data").symlink_to(fake_data, target_is_directory=True)
    args = cli_args(tmp_path, "--models", ",".join(DEPTHS), "--dry-run")
    assert run_all.main(args) == 0
    out = capsys.readouterr().out
    assert "30 runs" in out  # 5 depths x 3 sizes x 2 settings
    for depth in DEPTHS:
        assert f"scratch    {depth}_data-1-16_seed0" in out and f"{depth}_data-100_seed0" in out


def test_a_tiny_grid_of_three_models_ends_with_the_model_size_figure_and_joint_fit(
    tmp_path, fake_data
):
    # trained in-process on the tiny fake data, one step each (the fits need runs, not
    # learning); the full profile, with the quick one's fast ImageNet stem, so that the
    # report fits curves, which it never does for quick runs
    tiny = {**TINY, "epochs": 1, "steps_per_epoch": 1}
    data = common.load_cifar10(fake_data)
    for model in ("resnet18", "resnet34", "resnet50"):
        for fraction in (0.25, 0.5, 1.0):
            cfg = make_config(
                model,
                fraction,
                False,
                0,
                "full",
                stem="imagenet",
                data_dir=str(fake_data),
                output_dir=str(tmp_path / "runs" / "scratch" / f"{model}_{fraction}"),
                device="cpu",
                **tiny,
            )
            net = common.build_model(model, stem=cfg.stem, seed=0)
            common.save_run(cfg, common.train(net, data, cfg, progress=False))
    metrics = [common.load_metrics(p.parent) for p in tmp_path.glob("runs/*/*/metrics.json")]
    figures = write_scaling(record(metrics), tmp_path / "images")
    assert (tmp_path / "images/scaling/error_vs_parameters.png") in figures
    readme = tmp_path / "README.md"
    summary = write_report(
        tmp_path / "runs", tmp_path / "images", tmp_path / "results", readme, "full", Call("test")
    ).read_text()
    assert "### Scaling with model size" in summary
    assert "![error_vs_parameters](../images/scaling/error_vs_parameters.png)" in summary
    assert summary.count("| from scratch | 9 | e(m, n) = ") == 1
    assert "ResNet-34 trains with ResNet-18's recipe" in summary
    text = readme.read_text()
    assert "| ResNet-34 | – | ![resnet34 acc 25%]" in text  # every model with runs has curves
    assert "Joint fit over data and model size, from scratch" in text
