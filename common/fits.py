"""Learning-curve statistics that say when they do not know: power-law fits compared with
simpler curves by AIC, bootstrap intervals over seeds, Hoiem et al.'s e_N and β_N, and Welch's
t-test for two groups of seeds."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

EPS = 1e-6  # errors of 0 are clipped to this so that their logarithm exists
GRID = 200  # candidate floors c in [0, min(err)) ...
REFINE = 3  # ... then this many finer grids around the best one
BOOT = 400  # bootstrap resamples; the 2.5% and 97.5% quantiles then rest on 10 values each
LEVEL = 0.95  # every interval here is a 95% percentile-bootstrap interval
DELTA_AIC = 2.0  # a more complex curve must lower AIC by more than this to be preferred
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


def _lines(n: np.ndarray, err: np.ndarray, floors: np.ndarray) -> tuple[np.ndarray, ...]:
    """For each floor c: the log-log line fit (a, b) and its squared error in err space
    (inf where b <= 0 or the numbers overflow)."""
    x = np.log(n)
    xc = x - x.mean()
    y = np.log(err[None, :] - floors[:, None])
    slope = (y - y.mean(axis=1, keepdims=True)) @ xc / (xc @ xc)
    a, b = np.exp(y.mean(axis=1) - slope * x.mean()), -slope
    with np.errstate(over="ignore", invalid="ignore"):
        sse = np.sum((a[:, None] * n[None, :] ** -b[:, None] + floors[:, None] - err) ** 2, 1)
    sse[(b <= 0) | ~np.isfinite(a) | ~np.isfinite(sse)] = np.inf
    return a, b, sse


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


def fit_pure(n: ArrayLike, err: ArrayLike) -> PowerLaw:
    """e(n) = a · n^-b (no floor), or the flat line where the errors do not fall with n."""
    n, err = _prepare(n, err)
    if np.unique(n).size < 2:
        return fit_flat(n, err)
    a, b, sse = _lines(n, err, np.zeros(1))
    return (
        PowerLaw(float(a[0]), float(b[0]), 0.0, n.size) if np.isfinite(sse[0]) else fit_flat(n, err)
    )


def fit_power_law(n: ArrayLike, err: ArrayLike) -> PowerLaw:
    """Fit e(n) = a · n^-b + c with a, b >= 0 and 0 <= c < min(err) (Hestness et al. 2017).

    Profiles over the floor c; for each c, a least-squares line through log(err - c) against
    log(n) gives a and b, and the c with the least squared error in err space wins. Two sizes
    fit c = 0; one size, or errors that do not fall with n, give the flat fit c = mean(err).
    """
    n, err = _prepare(n, err)
    flat = fit_flat(n, err)
    best = (flat.a, flat.b, flat.c, sse(flat, n, err))
    sizes = np.unique(n).size
    if sizes < 2:
        return flat
    if sizes == 2:
        pure = fit_pure(n, err)
        return pure if sse(pure, n, err) < best[3] else flat
    grid = np.linspace(0.0, err.min() * (1 - 1e-9), GRID)
    for _ in range(REFINE + 1):
        a, b, errors = _lines(n, err, grid)
        i = int(np.argmin(errors))
        if errors[i] < best[3]:
            best = (float(a[i]), float(b[i]), float(grid[i]), float(errors[i]))
        grid = np.linspace(grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)], 41)
    return PowerLaw(*best[:3], n.size)


FITTERS = {FLAT: fit_flat, PURE: fit_pure, FLOOR: fit_power_law}


def sse(fit: PowerLaw, n: np.ndarray, err: np.ndarray) -> float:
    return float(np.sum((fit(n) - err) ** 2))


def aic(fit: PowerLaw, n: np.ndarray, err: np.ndarray, params: int) -> float:
    """Akaike's information criterion for Gaussian residuals, m·ln(SSE/m) + 2k; the SSE is
    floored so that an exact fit stays finite."""
    m = n.size
    return m * math.log(max(sse(fit, n, err), 1e-12) / m) + 2 * params


def choose(n: ArrayLike, err: ArrayLike) -> tuple[str, dict[str, float]]:
    """The simplest curve whose AIC is within DELTA_AIC of the lowest, and every candidate's AIC.

    A curve is a candidate only with more runs than parameters (so it has a residual to judge)
    and, beyond the flat line, with at least as many distinct sizes as parameters.
    """
    n, err = _prepare(n, err)
    sizes = np.unique(n).size
    scores = {
        name: aic(FITTERS[name](n, err), n, err, k)
        for name, k in PARAMS.items()
        if n.size > k and (k == 1 or sizes >= k)
    }
    if not scores:
        return FLAT, {}
    low = min(scores.values())
    return next(name for name in scores if scores[name] <= low + DELTA_AIC), scores


def _resample(n: np.ndarray, err: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The errors with the seeds at each size drawn again, with replacement (every size has
    two or more)."""
    out = err.copy()
    for size in np.unique(n):
        idx = np.flatnonzero(n == size)
        mean, k = err[idx].mean(), idx.size
        # k draws from k values spread sd·√((k-1)/k) on average: widen them back to sd
        out[idx] = mean + (err[rng.choice(idx, k)] - mean) * math.sqrt(k / (k - 1))
    return np.clip(out, EPS, None)


def interval(values: ArrayLike) -> tuple[float, float]:
    """The central LEVEL interval of bootstrap values."""
    tail = 100 * (1 - LEVEL) / 2
    lo, hi = np.percentile(np.asarray(values, dtype=float), [tail, 100 - tail])
    return float(lo), float(hi)


def doubling_gain(fit: PowerLaw, at: float) -> float:
    """β_N: how much the error falls per doubling of the training set at n = `at`, read from
    the curve's slope against log2 n, -de/dlog2(n) = a · b · N^-b · ln 2."""
    return fit.a * fit.b * at**-fit.b * math.log(2)


@dataclass(frozen=True)
class Curve:
    """What a learning curve's runs support; every interval is over seeds (None: one seed at
    some size, or a flat curve for the exponent)."""

    chosen: str  # FLAT, PURE or FLOOR, by AIC
    fit: PowerLaw  # a · n^-b + c (FLOOR's form), or the flat line when AIC prefers it
    aic: dict[str, float]
    sizes: list[int]
    runs: int
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


def _seeded(n: np.ndarray) -> bool:
    """True when every size has two or more runs, which a bootstrap over seeds needs."""
    return all(np.sum(n == s) > 1 for s in np.unique(n))


def _fitter(chosen: str) -> Callable[[ArrayLike, ArrayLike], PowerLaw]:
    """The flat line when AIC prefers it; else a · n^-b + c, whose b the README reports (the
    floor is kept even where AIC prefers c = 0: dropping it narrows b's interval around a
    biased value when the truth has a floor)."""
    return fit_flat if chosen == FLAT else fit_power_law


def _draws(n: np.ndarray, err: np.ndarray, fitter: Callable, boot: int, seed: int) -> list:
    """The fits to `boot` bootstrap resamples of the seeds; none unless every size has two."""
    if not _seeded(n):
        return []
    rng = np.random.default_rng(seed)
    return [fitter(n, _resample(n, err, rng)) for _ in range(boot)]


def analyse(n: ArrayLike, err: ArrayLike, boot: int = BOOT, seed: int = 0) -> Curve:
    """Choose the curve by AIC and bootstrap the seeds at each size for its intervals."""
    n, err = _prepare(n, err)
    chosen, scores = choose(n, err)
    fit = _fitter(chosen)(n, err)
    big = float(n.max())
    draws = _draws(n, err, _fitter(chosen), boot, seed)
    return Curve(
        chosen=chosen,
        fit=fit,
        aic=scores,
        sizes=[int(s) for s in np.unique(n)],
        runs=n.size,
        b=interval([d.b for d in draws]) if draws and chosen != FLAT else None,
        e_n=float(fit(big)),
        e_n_interval=interval([d(big) for d in draws]) if draws else None,
        beta_n=doubling_gain(fit, big),
        beta_n_interval=interval([doubling_gain(d, big) for d in draws]) if draws else None,
    )


def extrapolate(
    n: ArrayLike, err: ArrayLike, boot: int = BOOT, seed: int = 0
) -> dict[str, Any] | None:
    """Fit on every size but the largest and predict the largest, with a bootstrap interval
    over seeds; None with fewer than 3 sizes."""
    n, err = _prepare(n, err)
    sizes = np.unique(n)
    if sizes.size < 3:
        return None
    largest, small = sizes[-1], n < sizes[-1]
    chosen, _ = choose(n[small], err[small])
    fitter = _fitter(chosen)
    predicted = float(fitter(n[small], err[small])(largest))
    draws = _draws(n[small], err[small], fitter, boot, seed)
    measured = float(err[n == largest].mean())
    return {
        "fit_on": [int(s) for s in sizes[:-1]],
        "n": int(largest),
        "chosen": chosen,
        "predicted": predicted,
        "interval": interval([d(largest) for d in draws]) if draws else None,
        "measured": measured,
        "abs_error": abs(predicted - measured),
    }


def _betacf(a: float, b: float, x: float) -> float:
    """The continued fraction of the regularized incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        for num in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1 + num * d
            d = 1 / (d if abs(d) > tiny else tiny)
            c = 1 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1) < 1e-12:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b) (Numerical Recipes, §6.4)."""
    if x <= 0 or x >= 1:
        return 0.0 if x <= 0 else 1.0
    front = math.exp(
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1) / (a + b + 2):
        return front * _betacf(a, b, x) / a
    return 1 - front * _betacf(b, a, 1 - x) / b


def t_two_sided(t: float, df: float) -> float:
    """P(|T| > |t|) for Student's t with `df` degrees of freedom."""
    return betainc(df / 2, 0.5, df / (df + t * t))


def welch(x: ArrayLike, y: ArrayLike) -> tuple[float, float] | None:
    """Welch's unequal-variance t-test: (t, two-sided p), or None with fewer than two values
    in a group. Identical groups with no spread give p = 1; distinct ones p = 0."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.size < 2 or y.size < 2:
        return None
    vx, vy = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    diff = float(x.mean() - y.mean())
    if vx + vy == 0:
        return (0.0, 1.0) if diff == 0 else (math.copysign(math.inf, diff), 0.0)
    t = diff / math.sqrt(vx + vy)
    df = (vx + vy) ** 2 / (vx**2 / (x.size - 1) + vy**2 / (y.size - 1))
    return t, t_two_sided(t, df)
