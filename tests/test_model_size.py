"""Model size as an axis: the five depths, their parameter counts, and the joint fit over data and
model size (Rosenfeld et al. 2020) on synthetic truth, refused where its runs cannot identify it."""

from __future__ import annotations

import numpy as np
import pytest

from common.analysis import build, fits, joint, joint_refusal, write_scaling
from common.config import SAME_RECIPE, recipe_model
from common.models import MODELS, flops_per_image, parameter_count
from common.runner import BASE_MODELS, Run, build_grid
from tests.test_results import record

DEPTHS = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]
TRUTH = dict(a=6.0, alpha=0.5, b=40.0, beta=0.35, c=0.04)  # e(m, n) = a n^-alpha + b m^-beta + c
M = np.geomspace(2e5, 6e7, 5)  # parameters
N = np.geomspace(1500, 45000, 5)  # training images


def truth(m, n):
    t = TRUTH
    return t["a"] * n ** -t["alpha"] + t["b"] * m ** -t["beta"] + t["c"]


def runs(seed: int, m=M, n=N, seeds: int = 3, sd: float = 0.004) -> list[dict]:
    """Every (m, n) cell with `seeds` runs, the error the truth plus noise."""
    rng = np.random.default_rng(seed)
    return [
        {
            "parameters": int(mi),
            "train_images": int(ni),
            "test_acc": 1 - truth(mi, ni) - rng.normal(0, sd),
            "seed": s,
            "model": "resnet18",
        }
        for mi in m
        for ni in n
        for s in range(seeds)
    ]


def test_the_joint_fit_recovers_known_exponents_from_noisy_runs():
    covered = 0
    for seed in range(3):
        j = joint("scratch", runs(seed))
        assert j["runs"] == 75 and not j["refused"]
        assert j["fit"].data.b == pytest.approx(TRUTH["alpha"], abs=0.1)
        assert j["fit"].model.b == pytest.approx(TRUTH["beta"], abs=0.1)
        covered += j["alpha"][0] <= TRUTH["alpha"] <= j["alpha"][1]
        covered += j["beta"][0] <= TRUTH["beta"] <= j["beta"][1]
    assert covered >= 5  # six 95% intervals: allow one miss


def test_fitted_without_the_largest_model_it_predicts_that_model():
    inside = 0
    for seed in range(3):
        check = joint("scratch", runs(seed))["check"]
        assert check["model"] == int(M[-1]) and not check["reason"]
        assert [c["n"] for c in check["cells"]] == [int(v) for v in N]
        inside += sum(c["inside"] for c in check["cells"])
    assert inside >= 13  # fifteen 95% intervals over three seeds
    three = joint("scratch", runs(2, m=M[:3]))["check"]  # two models left: not tested
    assert "2 model sizes" in three["reason"] and not three["cells"]


def test_the_joint_fit_refuses_what_its_points_cannot_identify():
    for cells, reason in (
        ([(M[i], N[j]) for i in range(2) for j in range(5)], "2 model sizes"),
        ([(M[i], N[j]) for i in range(5) for j in range(2)], "2 training-set sizes"),
        ([(M[i], N[i]) for i in range(5)], "5 (model, size) cells for 5 parameters"),
    ):
        m, n = (np.repeat(v, 3) for v in zip(*cells, strict=True))
        assert reason in joint_refusal(m, n)


def test_three_models_at_three_sizes_get_the_joint_fit_and_the_model_size_figure(tmp_path):
    models = ("resnet18", "resnet34", "resnet50")
    grid = [
        record(f, s, 0.5 + f / 4 + i / 50 + s / 200, model)
        for i, model in enumerate(models)
        for f in (1 / 16, 0.5, 1.0)
        for s in (0, 1)
    ]
    a = build(grid, "full")
    assert [j["refused"] for j in a.joints] == [""] and "fit, from scratch (18 runs)" in fits(a)
    assert "(ResNet-50), predicting it: not tested: 2 model sizes" in fits(a)
    assert "error_vs_parameters.png" in [p.name for p in write_scaling(a, tmp_path)]
    assert not build([r for r in grid if r["model"] != "resnet34"], "quick").joints


def test_the_five_depths_grow_in_parameters_and_flops():
    counts = [parameter_count(d) for d in DEPTHS]
    assert counts == sorted(counts) and counts[0] > 11e6 and counts[-1] > 58e6
    # the CIFAR stem's 3x3 first convolution has 64 * 3 * (49 - 9) fewer weights than the 7x7
    assert parameter_count("resnet50", "imagenet") - counts[2] == 64 * 3 * 40
    assert record(model="resnet34")["parameters"] == counts[1]
    flops = [flops_per_image(d) for d in DEPTHS]
    assert flops == sorted(flops)


def test_every_model_has_a_notebook_a_cost_and_a_recipe():
    named = {m: Run("scratch", m, 1.0, 0).notebook.name for m in MODELS}
    assert named["resnet18"] == "resnet18_data-100.ipynb"
    assert all(named[m] == "model.ipynb" for m in MODELS if m not in BASE_MODELS)
    costs = [Run("scratch", d, 0.5, 0).cost for d in DEPTHS]
    assert costs == sorted(costs) and costs[0] == 0.5
    assert all(recipe_model(m) in BASE_MODELS for m in MODELS)
    assert all(why for _, why in SAME_RECIPE.values())
    assert len(build_grid(["scratch", "pretrained"], None, [1 / 16, 0.5, 1.0], [0])) == 13
    assert len(build_grid(["scratch", "pretrained"], DEPTHS, [1 / 16, 0.5, 1.0], [0])) == 30
