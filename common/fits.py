"""Learning-curve statistics that say when they do not know: power-law fits compared with
simpler curves by AICc, intervals over seeds (a t-interval over each seed's own fit at five
seeds or fewer, a bootstrap only beyond), Hoiem et al.'s e_N and β_N, the joint fit over data
and model size (Rosenfeld et al. 2020) with its leave-one-out check, and the tests between two
groups of seeds: paired t where the runs pair by seed, Welch's t where they do not, with Holm's
correction across a family. The optimizers and the t distribution are scipy's."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import least_squares
from scipy.stats import t as student
from scipy.stats import ttest_ind, ttest_rel

EPS = 1e-6  # errors of 0 are clipped to this so that their logarithm exists
# Where the least-squares search for a floor c starts, as shares of the smallest error: the
# objective is not convex in c, so it starts from both ends of [0, min(err)) and the middle
FLOOR_STARTS = (0.0, 0.5, 0.9)
BOOT = 400  # bootstrap resamples; the 2.5% and 97.5% quantiles then rest on 10 values each
LEVEL = 0.95  # every interval here is a 95% interval
T_SEEDS = 5  # up to this many seeds a group, intervals are t-intervals: a bootstrap over so few
# seeds is too narrow (it cannot draw values beyond those seen)
DELTA_AIC = 2.0  # a more complex curve must lower AICc by more than this to be preferred
T_INTERVAL, BOOTSTRAP = "t-interval over the seeds' own fits", "bootstrap over seeds"
FLAT, PURE, FLOOR = "flat line", "pure power law", "power law with floor"
PARAMS = {FLAT: 1, PURE: 2, FLOOR: 3}


@dataclass(frozen=True)
class PowerLaw:
    """e(n) = a · n^-b + c, fitted to `points` (n, error) pairs."""

    a: float
    b: float
    c: float
    points: int

    def __call__(self, n: ArrayLike) -> np.ndarray | float:
        values = self.a * np.asarray(n, dtype=float) ** -self.b + self.c
        return float(values) if np.ndim(values) == 0 else values

    @property
    def flat(self) -> bool:
        """True when the fit found no decrease with n."""
        return self.a == 0 or self.b == 0

    def describe(self) -> str:
        if self.flat:
            return f"e(n) = {self.c:.3g} (flat)"
        return f"e(n) = {self.a:.3g} · n^-{exponent(self.b)} + {self.c:.3g}"


def exponent(b: float) -> str:
    """b with 2 decimals, or 1 significant digit when that would read 0.00."""
    return f"{b:.2f}" if b >= 0.005 else f"{b:.1g}"


def _line_start(x: np.ndarray, y: np.ndarray) -> tuple[float, float] | None:
    """(A, b) of the least-squares line log y = log A - b log x, a starting point for the
    optimizer; None where y does not fall with x (or is not positive)."""
    if np.any(y <= 0):
        return None
    slope, icpt = np.polyfit(np.log(x), np.log(y), 1)
    return (float(np.exp(icpt)), float(-slope)) if slope < 0 else None


def _solve(
    xs: list[np.ndarray], err: np.ndarray, floor: bool, starts: list, upper: ArrayLike
) -> tuple[np.ndarray, float] | None:
    """Least squares in err space of sum_i A_i · x_i^-b_i (+ c with `floor`), parameters
    (A_1, b_1, ..., c) between 0 and `upper`, by scipy's trust region reflective method with
    the analytic Jacobian, from each of `starts`: the parameters and sum of squared residuals
    of the lowest, or None when every search leaves finite numbers."""
    logs = [np.log(x) for x in xs]

    def powers(p: np.ndarray) -> list[np.ndarray]:
        return [x ** -p[2 * i + 1] for i, x in enumerate(xs)]

    def residuals(p: np.ndarray) -> np.ndarray:
        fitted = sum(p[2 * i] * xb for i, xb in enumerate(powers(p)))
        return fitted + (p[-1] if floor else 0.0) - err

    def jacobian(p: np.ndarray) -> np.ndarray:
        columns = []
        for i, xb in enumerate(powers(p)):
            columns += [xb, -p[2 * i] * xb * logs[i]]
        return np.stack(columns + ([np.ones_like(err)] if floor else []), axis=1)

    upper = np.asarray(upper, dtype=float)
    inside = upper.copy()  # trf starts strictly inside the bounds
    inside[np.isfinite(upper)] *= 1 - 1e-9
    best = None
    for start in starts:
        x0 = np.clip(np.asarray(start, dtype=float), 0.0, inside)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            try:
                out = least_squares(residuals, x0, jac=jacobian, bounds=(0.0, upper), method="trf")
            except ValueError:  # residuals not finite at the start
                continue
        sse = float(np.sum(out.fun**2))
        if np.isfinite(sse) and np.all(np.isfinite(out.x)) and (best is None or sse < best[1]):
            best = out.x, sse
    return best


def _prepare(n: ArrayLike, err: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    n = np.asarray(n, dtype=float).ravel()
    err = np.clip(np.asarray(err, dtype=float).ravel(), EPS, None)
    if n.size == 0 or n.size != err.size or np.any(n <= 0):
        raise ValueError("need as many positive sizes n as errors, at least one")
    return n, err


def fit_flat(n: ArrayLike, err: ArrayLike) -> PowerLaw:
    """The flat line e(n) = mean error."""
    n, err = _prepare(n, err)
    return PowerLaw(0.0, 0.0, float(err.mean()), n.size)


def _scale(n: np.ndarray) -> tuple[np.ndarray, float]:
    """n over its geometric mean, and that mean: the optimizer then sees sizes near 1."""
    n0 = float(np.exp(np.log(n).mean()))
    return n / n0, n0


def fit_pure(n: ArrayLike, err: ArrayLike) -> PowerLaw:
    """e(n) = a · n^-b (no floor), or the flat line where the errors do not fall with n."""
    n, err = _prepare(n, err)
    x, n0 = _scale(n)
    start = _line_start(x, err) if np.unique(n).size >= 2 else None
    if start is None:
        return fit_flat(n, err)
    found = _solve([x], err, False, [start], [np.inf, np.inf])
    if found is None or found[0][0] <= 0 or found[0][1] <= 0:
        return fit_flat(n, err)
    (a, b), _ = found
    return PowerLaw(float(a * n0**b), float(b), 0.0, n.size)


def fit_power_law(n: ArrayLike, err: ArrayLike, start: PowerLaw | None = None) -> PowerLaw:
    """Fit e(n) = a · n^-b + c with a, b >= 0 and 0 <= c < min(err) (Hestness et al. 2017).

    scipy's bounded least squares in err space, started from `start` when it is a curve (the
    bootstrap starts from the fit to all runs), else from the log-log line through err - c for
    each floor in FLOOR_STARTS; the lowest sum of squares wins. Two sizes fit c = 0; one size,
    or errors that do not fall with n, give the flat fit c = mean(err).
    """
    n, err = _prepare(n, err)
    flat = fit_flat(n, err)
    sizes = np.unique(n).size
    if sizes < 2:
        return flat
    if sizes == 2:
        pure = fit_pure(n, err)
        return pure if sse(pure, n, err) < sse(flat, n, err) else flat
    x, n0 = _scale(n)
    top = float(err.min()) * (1 - 1e-9)
    if start is not None and not start.flat:
        starts = [(start.a * n0**-start.b, start.b, start.c)]
    else:
        starts = [
            (*line, share * top)
            for share in FLOOR_STARTS
            if (line := _line_start(x, err - share * top)) is not None
        ]
    best = _solve([x], err, True, starts, [np.inf, np.inf, top])
    if best is None or best[0][0] <= 0 or best[0][1] <= 0 or best[1] >= sse(flat, n, err):
        return flat
    a, b, c = best[0]
    return PowerLaw(float(a * n0**b), float(b), float(c), n.size)


FITTERS = {FLAT: fit_flat, PURE: fit_pure, FLOOR: fit_power_law}


def sse(fit: PowerLaw, n: np.ndarray, err: np.ndarray) -> float:
    return float(np.sum((fit(n) - err) ** 2))


def aicc(fit: PowerLaw, n: np.ndarray, err: np.ndarray, params: int) -> float:
    """Akaike's criterion with the small-sample correction for Gaussian residuals,
    m·ln(SSE/m) + 2k + 2k(k+1)/(m-k-1); the SSE is floored so that an exact fit stays finite."""
    m = n.size
    small = 2 * params * (params + 1) / (m - params - 1)
    return m * math.log(max(sse(fit, n, err), 1e-12) / m) + 2 * params + small


def choose(n: ArrayLike, err: ArrayLike) -> tuple[str, dict[str, float]]:
    """The simplest curve whose AICc is within DELTA_AIC of the lowest, and every candidate's.

    A curve is a candidate only with more runs than parameters plus one (AICc's correction is
    then finite) and, beyond the flat line, with at least as many distinct sizes as parameters.
    """
    n, err = _prepare(n, err)
    sizes = np.unique(n).size
    scores = {
        name: aicc(FITTERS[name](n, err), n, err, k)
        for name, k in PARAMS.items()
        if n.size > k + 1 and (k == 1 or sizes >= k)
    }
    if not scores:
        return FLAT, {}
    low = min(scores.values())
    return next(name for name in scores if scores[name] <= low + DELTA_AIC), scores


def _resample(groups: np.ndarray, err: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The errors with the seeds of each group (a size, or a model and size) drawn again,
    with replacement (every group has two or more)."""
    out = err.copy()
    for group in np.unique(groups):
        idx = np.flatnonzero(groups == group)
        mean, k = err[idx].mean(), idx.size
        # k draws from k values spread sd·√((k-1)/k) on average: widen them back to sd
        out[idx] = mean + (err[rng.choice(idx, k)] - mean) * math.sqrt(k / (k - 1))
    return np.clip(out, EPS, None)


def interval(values: ArrayLike, how: str = BOOTSTRAP) -> tuple[float, float] | None:
    """The central LEVEL interval of `values`: their percentiles for bootstrap draws, the
    t-interval of their mean (scipy's t, n - 1 degrees of freedom) for one value per seed;
    None with fewer than two values."""
    values = np.asarray(values, dtype=float)
    if values.size < 2:
        return None
    if how == T_INTERVAL:
        sem = float(values.std(ddof=1)) / math.sqrt(values.size)
        if sem == 0:
            return float(values.mean()), float(values.mean())
        lo, hi = student.interval(LEVEL, values.size - 1, loc=values.mean(), scale=sem)
        return float(lo), float(hi)
    tail = 100 * (1 - LEVEL) / 2
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return float(lo), float(hi)


def doubling_gain(fit: PowerLaw, at: float) -> float:
    """β_N: how much the error falls per doubling of the training set at n = `at`, read from
    the curve's slope against log2 n, -de/dlog2(n) = a · b · N^-b · ln 2."""
    return fit.a * fit.b * at**-fit.b * math.log(2)


@dataclass(frozen=True)
class Curve:
    """What a learning curve's runs support; every interval is over seeds, made as `how` says
    (None: too few seeds, or a flat curve for the exponent)."""

    chosen: str  # FLAT, PURE or FLOOR, by AICc
    fit: PowerLaw  # a · n^-b + c (FLOOR's form), or the flat line when AICc prefers it
    aic: dict[str, float]  # AICc per candidate
    sizes: list[int]
    runs: int
    how: str  # T_INTERVAL, BOOTSTRAP or "" (no interval)
    b: tuple[float, float] | None  # the exponent's interval
    e_n: float  # Hoiem et al. 2021: the error at N, the largest size
    e_n_interval: tuple[float, float] | None
    beta_n: float  # Hoiem et al. 2021: data reliance at N, the error drop per doubling
    beta_n_interval: tuple[float, float] | None

    @property
    def exact(self) -> bool:
        """True with no more sizes than the 3 parameters of a · n^-b + c: the curve then goes
        through the mean at every size, and its form is not tested."""
        return self.chosen != FLAT and len(self.sizes) <= PARAMS[FLOOR]


def over_seeds(
    groups: np.ndarray,
    seeds: ArrayLike | None,
    refit: Callable[[np.ndarray], Any],
    redraw: Callable[[np.random.Generator], Any],
    boot: int = BOOT,
) -> tuple[list, str]:
    """The fits an interval rests on, and how: with more than T_SEEDS runs in every group
    (size, or cell), `boot` bootstrap redraws; else one fit per seed that ran in every group
    (`refit` of that seed's runs), for a t-interval; ([], "") with fewer than two such seeds."""
    counts = [int(np.sum(groups == g)) for g in np.unique(groups)]
    if min(counts) > T_SEEDS:
        rng = np.random.default_rng(0)
        return ([redraw(rng) for _ in range(boot)], BOOTSTRAP) if boot else ([], "")
    if seeds is None:
        return [], ""
    seeds = np.asarray(seeds)
    everywhere = [s for s in np.unique(seeds) if np.unique(groups[seeds == s]).size == len(counts)]
    if len(everywhere) < 2:
        return [], ""
    return [refit(seeds == s) for s in everywhere], T_INTERVAL


def _fitted(
    n: np.ndarray, err: np.ndarray, seeds: ArrayLike | None, boot: int = BOOT
) -> tuple[str, dict[str, float], PowerLaw, list[PowerLaw], str]:
    """AICc's choice and scores (see `choose`), its fit, and the fits behind the intervals with
    how they are made (see `over_seeds`; bootstrap ones start from the fit to all runs). The fit
    is the flat line when AICc prefers it, else a · n^-b + c, whose b the README reports (the
    floor is kept even where AICc prefers c = 0: dropping it narrows b's interval around a
    biased value when the truth has a floor)."""
    chosen, scores = choose(n, err)
    fitter = fit_flat if chosen == FLAT else fit_power_law
    whole = fitter(n, err)

    def redraw(rng: np.random.Generator) -> PowerLaw:
        again = _resample(n, err, rng)
        return fit_power_law(n, again, start=whole) if fitter is fit_power_law else fitter(n, again)

    draws, how = over_seeds(n, seeds, lambda at: fitter(n[at], err[at]), redraw, boot)
    return chosen, scores, whole, draws, how


def analyse(
    n: ArrayLike, err: ArrayLike, seeds: ArrayLike | None = None, boot: int = BOOT
) -> Curve:
    """Choose the curve by AICc, with intervals over the `seeds` (each run's) at each size."""
    n, err = _prepare(n, err)
    chosen, scores, fit, draws, how = _fitted(n, err, seeds, boot)
    big = float(n.max())
    return Curve(
        chosen=chosen,
        fit=fit,
        aic=scores,
        sizes=[int(s) for s in np.unique(n)],
        runs=n.size,
        how=how,
        b=interval([d.b for d in draws], how) if chosen != FLAT else None,
        e_n=float(fit(big)),
        e_n_interval=interval([d(big) for d in draws], how),
        beta_n=doubling_gain(fit, big),
        beta_n_interval=interval([doubling_gain(d, big) for d in draws], how),
    )


def _held_out(
    predicted: float, bounds: tuple[float, float] | None, measured: float
) -> dict[str, Any]:
    """A prediction of runs the fit did not see, its interval, their mean error, and whether
    it lies inside (None: no interval)."""
    inside = None if bounds is None else bounds[0] <= measured <= bounds[1]
    return {"predicted": predicted, "interval": bounds, "measured": measured, "inside": inside}


def extrapolate(
    n: ArrayLike, err: ArrayLike, seeds: ArrayLike | None = None
) -> dict[str, Any] | None:
    """Fit on every size but the largest and predict the largest, with an interval over seeds
    (see `over_seeds`); None with fewer than 3 sizes."""
    n, err = _prepare(n, err)
    sizes = np.unique(n)
    if sizes.size < 3:
        return None
    largest, small = sizes[-1], n < sizes[-1]
    kept = None if seeds is None else np.asarray(seeds)[small]
    chosen, _, fit, draws, how = _fitted(n[small], err[small], kept)
    bounds = interval([d(largest) for d in draws], how)
    check = _held_out(float(fit(largest)), bounds, float(err[n == largest].mean()))
    fit_on = [int(s) for s in sizes[:-1]]
    return {"fit_on": fit_on, "n": int(largest), "chosen": chosen, "how": how, **check}


JOINT_PARAMS = 5  # a, alpha, b, beta, c
AXIS_SIZES = 3  # distinct values an axis needs: its curve's a and exponent, beyond the level


@dataclass(frozen=True)
class JointLaw:
    """e(m, n) = a · n^-alpha + b · m^-beta + c over training images n and parameters m
    (Rosenfeld et al. 2020, without their envelope towards chance error)."""

    a: float
    alpha: float
    b: float
    beta: float
    c: float

    def __call__(self, m: ArrayLike, n: ArrayLike) -> np.ndarray | float:
        m, n = np.asarray(m, dtype=float), np.asarray(n, dtype=float)
        values = self.a * n**-self.alpha + self.b * m**-self.beta + self.c
        return float(values) if np.ndim(values) == 0 else values

    def describe(self) -> str:
        return (
            f"e(m, n) = {self.a:.3g} · n^-{exponent(self.alpha)} + {self.b:.3g} · "
            f"m^-{exponent(self.beta)} + {self.c:.3g}"
        )


def joint_refusal(m: ArrayLike, n: ArrayLike) -> str:
    """Why the joint form cannot be identified from runs at (m, n), or '' when it can: each
    axis needs AXIS_SIZES distinct values, and there must be more cells than parameters."""
    m, n = np.asarray(m, dtype=float).ravel(), np.asarray(n, dtype=float).ravel()
    models, sizes = np.unique(m).size, np.unique(n).size
    cells = np.unique(np.stack([m, n], axis=1), axis=0).shape[0] if m.size else 0
    for count, what in ((models, "model size"), (sizes, "training-set size")):
        if count < AXIS_SIZES:
            return f"{count} {what}{'s' * (count != 1)}: the joint form needs {AXIS_SIZES} or more"
    if cells <= JOINT_PARAMS:
        return f"{cells} (model, size) cells for {JOINT_PARAMS} parameters: it needs more"
    return ""


def _joint_starts(m: np.ndarray, n: np.ndarray, err: np.ndarray) -> list[list[float]]:
    """Starting points (scaled a, alpha, scaled b, beta, c) from each axis's own curve through
    all the runs, with the floor at 0 and at half the smallest error."""
    fn, fm = fit_power_law(n, err), fit_power_law(m, err)
    alpha, beta = fn.b or 1.0, fm.b or 1.0  # a flat axis starts at exponent 1
    spread = float(err.max() - err.min()) / 2 or float(err.mean())
    return [[spread, alpha, spread, beta, share * float(err.min())] for share in (0.0, 0.5)]


def fit_joint(
    m: ArrayLike, n: ArrayLike, err: ArrayLike, start: JointLaw | None = None
) -> JointLaw:
    """Fit e(m, n) = a · n^-alpha + b · m^-beta + c with every parameter >= 0 and c <= min(err),
    by scipy's bounded least squares in err space (m and n over their geometric means); from
    `start` when given (the bootstrap starts from the full fit), else from `_joint_starts`.
    Call only where `joint_refusal` is ''."""
    m, n = np.asarray(m, dtype=float).ravel(), np.asarray(n, dtype=float).ravel()
    n, err = _prepare(n, err)
    (xm, m0), (xn, n0) = _scale(m), _scale(n)
    starts = (
        [[start.a * n0**-start.alpha, start.alpha, start.b * m0**-start.beta, start.beta, start.c]]
        if start
        else _joint_starts(m, n, err)
    )
    best = _solve([xn, xm], err, True, starts, [np.inf] * 4 + [float(err.min())])
    if best is None:  # no finite fit: the flat level
        return JointLaw(0.0, 0.0, 0.0, 0.0, float(err.mean()))
    a, alpha, b, beta, c = (float(v) for v in best[0])
    return JointLaw(a * n0**alpha, alpha, b * m0**beta, beta, c)


@dataclass(frozen=True)
class Joint:
    """The joint fit and its 95% intervals over seeds, made as `how` says (None: too few seeds)."""

    fit: JointLaw
    models: list[int]  # the distinct parameter counts
    runs: int
    how: str  # T_INTERVAL, BOOTSTRAP or ""
    alpha: tuple[float, float] | None
    beta: tuple[float, float] | None
    c: tuple[float, float] | None
    draws: list[JointLaw]  # the fits the intervals rest on


def analyse_joint(
    m: ArrayLike, n: ArrayLike, err: ArrayLike, seeds: ArrayLike | None = None
) -> Joint | None:
    """The joint fit with intervals over the seeds of each (m, n) cell (see `over_seeds`);
    None where `joint_refusal` gives a reason."""
    m, n = np.asarray(m, dtype=float).ravel(), np.asarray(n, dtype=float).ravel()
    n, err = _prepare(n, err)
    if joint_refusal(m, n):
        return None
    fit = fit_joint(m, n, err)
    cells = np.unique(np.stack([m, n], axis=1), axis=0, return_inverse=True)[1].ravel()
    draws, how = over_seeds(
        cells,
        seeds,
        lambda at: fit_joint(m[at], n[at], err[at], start=fit),
        lambda rng: fit_joint(m, n, _resample(cells, err, rng), start=fit),
    )
    alpha, beta, c = (
        interval([getattr(d, name) for d in draws], how) for name in ("alpha", "beta", "c")
    )
    return Joint(fit, [int(v) for v in np.unique(m)], n.size, how, alpha, beta, c, draws)


def joint_leave_out(
    m: ArrayLike, n: ArrayLike, err: ArrayLike, axis: str, seeds: ArrayLike | None = None
) -> dict[str, Any]:
    """Fit without the largest model (`axis` 'model') or the largest size ('size'), then
    predict each left-out cell with an interval over seeds and say whether its measured mean
    error lies inside. {'tested': False, 'reason': ...} where what is left cannot identify the
    form, or nothing would be left out."""
    m, n = np.asarray(m, dtype=float).ravel(), np.asarray(n, dtype=float).ravel()
    n, err = _prepare(n, err)
    key = m if axis == "model" else n
    largest = key.max()
    kept = key < largest
    reason = joint_refusal(m[kept], n[kept]) if kept.any() else f"one {axis} only"
    if reason:
        return {"tested": False, "reason": reason, "left_out": int(largest)}
    kept_seeds = None if seeds is None else np.asarray(seeds)[kept]
    fitted = analyse_joint(m[kept], n[kept], err[kept], kept_seeds)
    cells = []
    for mi, ni in np.unique(np.stack([m[~kept], n[~kept]], axis=1), axis=0):
        measured = float(err[(m == mi) & (n == ni)].mean())
        bounds = interval([d(mi, ni) for d in fitted.draws], fitted.how)
        predicted = float(fitted.fit(mi, ni))
        cells.append({"m": int(mi), "n": int(ni), **_held_out(predicted, bounds, measured)})
    return {"tested": True, "left_out": int(largest), "fit": fitted, "cells": cells}


def _no_spread(diff: float) -> tuple[float, float]:
    """t and p where the groups have no spread and t is undefined: p = 1 when they are
    identical, 0 when they differ."""
    return (0.0, 1.0) if diff == 0 else (math.copysign(math.inf, diff), 0.0)


def welch(x: ArrayLike, y: ArrayLike) -> tuple[float, float] | None:
    """Welch's unequal-variance t-test (scipy's `ttest_ind`, equal_var=False): (t, two-sided p),
    or None with fewer than two values in a group."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.size < 2 or y.size < 2:
        return None
    if x.var() + y.var() == 0:
        return _no_spread(float(x.mean() - y.mean()))
    test = ttest_ind(x, y, equal_var=False)
    return float(test.statistic), float(test.pvalue)


def paired(x: ArrayLike, y: ArrayLike) -> tuple[float, float] | None:
    """The paired t-test (scipy's `ttest_rel`) of x[i] against y[i], one pair per seed:
    (t, two-sided p), or None with fewer than two pairs."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.size < 2 or x.size != y.size:
        return None
    diff = x - y
    if diff.var() == 0:
        return _no_spread(float(diff.mean()))
    test = ttest_rel(x, y)
    return float(test.statistic), float(test.pvalue)


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given: the k-th smallest p times the
    number of hypotheses not yet rejected, never below an earlier one, at most 1."""
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    adjusted, running = [1.0] * len(pvalues), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted
