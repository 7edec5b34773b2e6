"""Fits and tests that know when they don't know, on noisy synthetic numbers of known truth."""

from __future__ import annotations

import numpy as np
import pytest

from common.analysis import FLAT, FLOOR, PURE, choose, compare, fit_curve, learning_curve
from common.report import Condition

SIZES = np.repeat([500, 1000, 2000, 4000, 8000, 16000], 3)  # six sizes, three seeds each
SEEDS = np.tile([0, 1, 2], 6)


def truth(n):
    return 3 * np.asarray(n, dtype=float) ** -0.3 + 0.05


def noisy(seed: int, values: np.ndarray, sd: float = 0.005) -> np.ndarray:
    return values + np.random.default_rng(seed).normal(0, sd, values.size)


def curve(err, n=SIZES, seeds=SEEDS):
    runs = [
        {"train_images": int(a), "test_acc": 1 - b, "seed": int(s)}
        for a, b, s in zip(n, err, seeds, strict=True)
    ]
    return learning_curve("scratch", "resnet18", runs)


def test_a_fit_recovers_known_parameters_and_is_flat_without_a_decrease():
    n = np.geomspace(500, 50_000, 8)
    fit = fit_curve(n, 5 * n**-0.5 + 0.05)
    assert fit.a == pytest.approx(5, rel=0.05) and fit.b == pytest.approx(0.5, rel=0.05)
    assert abs(fit.c - 0.05) < 0.01 and "n^-0.50" in fit.describe()
    two = fit_curve([1000, 4000], [0.4, 0.2])  # two sizes: no floor
    assert two.c == 0 and two.b == pytest.approx(0.5) and two(4000) == pytest.approx(0.2)
    for err in ([0.3, 0.3, 0.3], [0.2, 0.3, 0.4]):
        flat = fit_curve([1000, 2000, 4000], err)
        assert flat.a == 0 and flat.c == pytest.approx(np.mean(err)) and "flat" in flat.describe()


def test_a_flat_truth_is_called_flat():
    draws = [noisy(seed, np.full(SIZES.size, 0.3), sd=0.01) for seed in range(20)]
    calls = [choose(SIZES, err)[0] for err in draws]
    assert calls.count(FLAT) >= 17  # AICc with a margin of 2 picks a chance slope now and then
    flat = curve(draws[calls.index(FLAT)])
    assert flat["chosen"] == FLAT and flat["b"] is None and flat["fit"].a == 0


def test_a_power_law_is_found_with_its_exponent_inside_the_interval():
    hits = 0
    for seed in range(5):
        c = curve(noisy(seed, truth(SIZES)))
        assert c["chosen"] in (PURE, FLOOR)
        hits += c["b"][0] <= 0.3 <= c["b"][1]
    assert hits >= 4  # five 95% intervals over three seeds: allow a miss


def test_the_extrapolation_interval_covers_the_held_out_truth():
    covered = 0
    for seed in range(5):
        check = curve(noisy(seed, truth(SIZES)))["check"]
        assert check["fit_on"] == [500, 1000, 2000, 4000, 8000] and check["n"] == 16000
        covered += check["interval"][0] <= truth(16000) <= check["interval"][1]
    assert covered >= 4


def test_fewer_than_three_sizes_are_unfitted_and_one_seed_has_no_interval():
    n = np.repeat([2810, 22500, 45000], 2)
    assert curve(truth(n[:4]), n[:4], np.tile([0, 1], 2))["chosen"] == ""
    one = curve(truth(SIZES[::3]), SIZES[::3], np.zeros(6))
    assert one["b"] is None and one["check"]["interval"] is None


def cell(accs: list[float], seeds: list[int] | None = None) -> Condition:
    seeds = seeds or list(range(len(accs)))
    runs = [{"seed": s, "test_acc": a} for s, a in zip(seeds, accs, strict=True)]
    return Condition("scratch", "resnet18", 1.0, runs)


def test_the_paired_test_finds_a_difference_that_pairs_by_seed_and_other_seeds_go_untested():
    x = [0.70, 0.75, 0.80, 0.72]  # seeds far apart; each second run half a point above
    y = [a + d for a, d in zip(x, (0.005, 0.006, 0.004, 0.005), strict=True)]
    paired = compare("model", cell(y), cell(x))
    assert paired["p"] < 0.01 and paired["interval"][0] > 0
    other = compare("model", cell(y, [10, 11, 12, 13]), cell(x))
    assert other["untested"] == "different seeds" and "p" not in other
    assert compare("model", cell([0.5]), cell(x))["untested"] == "one seed on a side"
    same = compare("model", cell([0.5, 0.6]), cell([0.5, 0.6]))
    assert same["p"] == 1.0 and same["diff"] == 0
