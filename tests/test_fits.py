"""Fits that know when they don't know, on noisy synthetic curves whose truth is known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from common.fits import (
    BOOTSTRAP,
    FLAT,
    FLOOR,
    PURE,
    T_INTERVAL,
    analyse,
    choose,
    extrapolate,
    holm,
    paired,
    welch,
)

SIZES = np.repeat([500, 1000, 2000, 4000, 8000, 16000], 3)  # six sizes, three seeds each
SEEDS = np.tile([0, 1, 2], 6)


def truth(n: np.ndarray | float) -> np.ndarray | float:
    return 3 * np.asarray(n, dtype=float) ** -0.3 + 0.05


def noisy(seed: int, values: np.ndarray, sd: float = 0.005) -> np.ndarray:
    return values + np.random.default_rng(seed).normal(0, sd, values.size)


def test_a_flat_truth_is_called_flat():
    draws = [noisy(seed, np.full(SIZES.size, 0.3), sd=0.01) for seed in range(20)]
    calls = [choose(SIZES, err)[0] for err in draws]
    # AICc with a margin of 2 still picks a chance slope now and then (about 1 in 20 for one
    # extra parameter): most draws, not all, must read flat
    assert calls.count(FLAT) >= 17
    curve = analyse(SIZES, draws[calls.index(FLAT)], SEEDS)
    assert curve.chosen == FLAT and curve.b is None and curve.beta_n == 0
    assert curve.e_n_interval[0] < 0.3 < curve.e_n_interval[1]


def test_a_power_law_with_b_03_is_found_with_03_inside_its_interval():
    hits = 0
    for seed in range(5):
        curve = analyse(SIZES, noisy(seed, truth(SIZES)), SEEDS)
        assert curve.chosen in (PURE, FLOOR) and not curve.exact
        hits += curve.b[0] <= 0.3 <= curve.b[1]
        assert curve.b[0] < curve.fit.b < curve.b[1]
    assert hits >= 4  # a 95% interval over three seeds a size: allow one miss in five


def test_e_n_and_beta_n_are_the_curve_at_the_largest_size():
    curve = analyse(SIZES, noisy(1, truth(SIZES)), SEEDS)
    slope = 3 * 0.3 * 16000**-0.3 * math.log(2)  # -de/dlog2(n) of the truth at N
    assert curve.e_n_interval[0] < truth(16000) < curve.e_n_interval[1]
    assert curve.beta_n_interval[0] < slope < curve.beta_n_interval[1]
    assert curve.e_n == pytest.approx(curve.fit(16000))


def test_the_extrapolation_interval_covers_the_held_out_truth():
    covered = 0
    for seed in range(5):
        check = extrapolate(SIZES, noisy(seed, truth(SIZES)), SEEDS)
        assert check["fit_on"] == [500, 1000, 2000, 4000, 8000] and check["n"] == 16000
        lo, hi = check["interval"]
        covered += lo <= truth(16000) <= hi
    assert covered >= 4


def test_three_sizes_make_the_three_parameter_fit_exact():
    n = np.repeat([2810, 22500, 45000], 2)
    curve = analyse(n, noisy(0, truth(n), sd=0.002), np.tile([0, 1], 3))
    assert curve.exact and curve.sizes == [2810, 22500, 45000]


def test_one_seed_a_size_has_no_interval():
    n = np.array([500, 1000, 2000, 4000, 8000])
    curve = analyse(n, truth(n))
    assert curve.b is None and curve.e_n_interval is None
    assert extrapolate(n, truth(n))["interval"] is None


@pytest.mark.parametrize("shift", [0.0, 0.5, 1.0, 3.0])
def test_welch_matches_the_t_tail_in_closed_form(shift):
    # two runs a group with equal spread: Welch's df is exactly 2, where Student's t has
    # P(|T| > t) = 1 - t / sqrt(2 + t^2)
    t, p = welch([0.0, 1.0], [shift, 1.0 + shift])
    assert t == pytest.approx(-shift / math.sqrt(0.5))
    assert p == pytest.approx(1 - abs(t) / math.sqrt(2 + t * t), abs=1e-9)


def test_welch_separates_clear_and_overlapping_groups():
    assert welch([0.70, 0.71, 0.72], [0.80, 0.81, 0.79])[1] < 0.001
    assert welch([0.70, 0.75, 0.72], [0.71, 0.74, 0.73])[1] > 0.5
    assert welch([0.7], [0.8, 0.9]) is None
    assert welch([0.5, 0.5], [0.5, 0.5]) == (0.0, 1.0)


def test_three_seeds_get_a_t_interval_and_many_a_bootstrap():
    curve = analyse(SIZES, noisy(2, truth(SIZES)), SEEDS)
    assert curve.how == T_INTERVAL
    # the same runs without knowing their seeds cannot be paired: no interval at three seeds
    assert analyse(SIZES, noisy(2, truth(SIZES))).how == ""
    many = np.repeat([500, 1000, 2000, 4000], 8)
    assert analyse(many, noisy(2, truth(many)), np.tile(range(8), 4), boot=50).how == BOOTSTRAP


def test_a_paired_difference_that_only_the_paired_test_finds():
    # seeds differ a lot from each other, each seed's second run is 0.5 points above its first
    x = np.array([0.70, 0.75, 0.80, 0.72])
    y = x + np.array([0.005, 0.006, 0.004, 0.005])
    assert paired(y, x)[1] < 0.01 and welch(y, x)[1] > 0.5
    assert paired([0.5], [0.6]) is None and paired([0.5, 0.6], [0.5, 0.6]) == (0.0, 1.0)


def test_holm_multiplies_the_smallest_p_by_the_family_size_and_keeps_order():
    assert holm([0.017, 0.24, 0.11]) == pytest.approx([0.051, 0.24, 0.22])
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.9, 0.9]) == [1.0, 1.0] and holm([0.6, 0.01]) == [0.6, 0.02]
