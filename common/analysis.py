"""The analysis record of a report, computed once and rendered by every table and figure: the
comparisons of test accuracy (paired t by seed, else Welch's t; Holm across the report), the
power-law fits over data size chosen by AICc with their extrapolation check, the joint fit over
data and model size (Rosenfeld et al. 2020) with its leave-one-out checks, and the scaling
figures. Optimizers, t distribution and tests are scipy's; intervals are 95% t-intervals over
each seed's own fit (docs/how-it-works.md)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullLocator
from scipy.optimize import least_squares
from scipy.stats import t as student
from scipy.stats import ttest_ind, ttest_rel

from .config import PROFILES, REPO
from .data import fraction_title
from .report import (
    MODEL_TITLES,
    SETTING_TITLES,
    Condition,
    Key,
    NotProduced,
    Record,
    Variant,
    collect,
    count,
    group_conditions,
    order,
    save_figure,
    split_configurations,
    split_weights,
    table,
    today_recipe,
)

ALPHA = 0.05  # the level of every test, after Holm's correction
EPS = 1e-6  # errors of 0 are clipped to this so that their logarithm exists
DELTA_AIC = 2.0  # a curve with more parameters must lower AICc by more than this to be chosen
FLAT, PURE, FLOOR = "flat line", "pure power law", "power law with floor"
PARAMS = {FLAT: 1, PURE: 2, FLOOR: 3}
JOINT_PARAMS, AXIS_SIZES = 5, 3  # the joint form's parameters; distinct values an axis needs
FIGURES = ("error_vs_data", "accuracy_vs_time", "pretrained_gap", "error_vs_parameters")
Bounds = tuple[float, float] | None


@dataclass(frozen=True)
class PowerLaw:
    """e(n) = a · n^-b + c."""

    a: float
    b: float
    c: float

    def __call__(self, n: Any) -> Any:
        return self.a * np.asarray(n, dtype=float) ** -self.b + self.c

    def describe(self) -> str:
        if self.a == 0:
            return f"e(n) = {self.c:.3g} (flat)"
        return f"e(n) = {self.a:.3g} · n^-{self.b:.2f} + {self.c:.3g}"


def _fit(f: Callable, err: np.ndarray, starts: list, upper: list[float]) -> np.ndarray | None:
    """The lowest sum of squares of bounded least squares of f(p) to `err` from each start."""
    best, top = None, np.array(upper) * (1 - 1e-9)
    for start in starts:
        with np.errstate(all="ignore"):
            try:
                out = least_squares(lambda p: f(p) - err, np.clip(start, 0, top), bounds=(0, upper))
            except ValueError:  # not finite at the start
                continue
        if np.all(np.isfinite(out.fun)) and (best is None or out.cost < best.cost):
            best = out
    return None if best is None else best.x


def fit_curve(n: Any, err: Any, form: str = FLOOR) -> PowerLaw:
    """The least-squares `form` through (n, err) with a, b >= 0 and 0 <= c < min(err), the
    flat line where the errors do not fall with n (Hestness et al. 2017)."""
    n, err = np.asarray(n, dtype=float), np.clip(np.asarray(err, dtype=float), EPS, None)
    flat = PowerLaw(0.0, 0.0, float(err.mean()))
    n0 = float(np.exp(np.log(n).mean()))  # the optimizer sees sizes near 1
    x, top = n / n0, float(err.min()) * (1 - 1e-9)
    if form == FLAT or np.unique(n).size < 2 or np.polyfit(np.log(x), np.log(err), 1)[0] >= 0:
        return flat
    pure = form == PURE or np.unique(n).size < 3  # two sizes fit c = 0
    starts = []
    for c in (0.0,) if pure else (0.0, 0.5 * top, 0.9 * top):  # not convex in c: three starts
        slope, icpt = np.polyfit(np.log(x), np.log(err - c), 1)
        starts.append([math.exp(icpt), max(-slope, 1e-3), c][: 2 if pure else 3])
    upper = [np.inf, np.inf] + ([] if pure else [top])
    found = _fit(lambda p: p[0] * x ** -p[1] + (0 if pure else p[2]), err, starts, upper)
    if found is None or found[0] <= 0 or found[1] <= 0:
        return flat
    c = 0.0 if pure else float(found[2])
    law = PowerLaw(float(found[0] * n0 ** found[1]), float(found[1]), c)
    return law if sse(law, n, err) < sse(flat, n, err) else flat


def sse(fit: Callable, n: np.ndarray, err: np.ndarray) -> float:
    return float(np.sum((fit(n) - err) ** 2))


def choose(n: Any, err: Any) -> tuple[str, dict[str, float]]:
    """The simplest curve within DELTA_AIC of the lowest AICc (m·ln(SSE/m) + 2k + 2k(k+1)/(m-k-1)),
    and each candidate's; a candidate needs more runs than k + 1 and k distinct sizes."""
    n, err = np.asarray(n, dtype=float), np.clip(np.asarray(err, dtype=float), EPS, None)
    scores = {}
    for name, k in PARAMS.items():
        if n.size > k + 1 and (k == 1 or np.unique(n).size >= k):
            rss = max(sse(fit_curve(n, err, name), n, err), 1e-12)
            scores[name] = (
                n.size * math.log(rss / n.size) + 2 * k + 2 * k * (k + 1) / (n.size - k - 1)
            )
    low = min(scores.values(), default=0.0)
    return next((name for name in scores if scores[name] <= low + DELTA_AIC), FLAT), scores


def interval(values: list[float]) -> Bounds:
    """The 95% t-interval of the mean of one value per seed; None below two seeds."""
    if len(values) < 2:
        return None
    mean, sem = float(np.mean(values)), float(np.std(values, ddof=1)) / math.sqrt(len(values))
    if sem == 0:
        return mean, mean
    lo, hi = student.interval(0.95, len(values) - 1, loc=mean, scale=sem)
    return float(lo), float(hi)


def per_seed(groups: np.ndarray, seeds: np.ndarray, refit: Callable) -> list:
    """One fit per seed that ran in every group (a size, or a model and size)."""
    every = [
        s for s in np.unique(seeds) if np.unique(groups[seeds == s]).size == np.unique(groups).size
    ]
    return [refit(seeds == s) for s in every] if len(every) > 1 else []


@dataclass(frozen=True)
class Curve:
    """One (setting, model)'s learning curve over data size, fitted and checked."""

    setting: str
    model: str
    points: list[tuple[int, float]]  # (training images, test error) per run
    chosen: str  # by AICc; '' below 3 sizes
    aic: dict[str, float]
    fit: PowerLaw | None
    b: Bounds
    e_n: tuple[float, Bounds]  # Hoiem et al. 2021: the error at the largest size N
    beta_n: tuple[float, Bounds]  # ... and how much it falls per doubling of the data at N
    check: dict[str, Any] | None  # fitted without the largest size, its prediction of it

    @property
    def exact(self) -> bool:
        """3 sizes for 3 parameters: the curve passes through every mean; its form is untested."""
        return self.chosen not in ("", FLAT) and len({n for n, _ in self.points}) <= 3


def _curve(n: np.ndarray, err: np.ndarray, seeds: np.ndarray) -> tuple[str, dict, PowerLaw, list]:
    """AICc's choice and scores, its fit (with its floor where a power law is chosen: dropping
    c narrows b's interval around a biased value), and each seed's own fit."""
    chosen, scores = choose(n, err)
    form = FLAT if chosen == FLAT else FLOOR
    return (
        chosen,
        scores,
        fit_curve(n, err, form),
        per_seed(n, seeds, lambda s: fit_curve(n[s], err[s], form)),
    )


def held_out(predicted: float, bounds: Bounds, measured: float) -> dict[str, Any]:
    inside = None if bounds is None else bounds[0] <= measured <= bounds[1]
    return {"predicted": predicted, "interval": bounds, "measured": measured, "inside": inside}


def learning_curve(setting: str, model: str, runs: list[Record]) -> Curve:
    """The curve of `runs` over data size with intervals over seeds, and its extrapolation check."""
    n = np.array([r["train_images"] for r in runs], dtype=float)
    err = np.array([1 - r["test_acc"] for r in runs])
    seeds = np.array([r["seed"] for r in runs])
    points = [(int(a), float(b)) for a, b in zip(n, err, strict=True)]
    sizes = np.unique(n)
    if sizes.size < 3:
        return Curve(setting, model, points, "", {}, None, None, (0.0, None), (0.0, None), None)
    chosen, scores, fit, draws = _curve(n, err, seeds)
    big = float(sizes[-1])
    gain = lambda f: f.a * f.b * big**-f.b * math.log(2)  # noqa: E731  -de/dlog2(n) at N
    small = n < big
    _, _, part, part_draws = _curve(n[small], err[small], seeds[small])
    check = held_out(
        float(part(big)), interval([float(d(big)) for d in part_draws]), float(err[~small].mean())
    )
    check.update(fit_on=[int(s) for s in sizes[:-1]], n=int(big))
    b = interval([d.b for d in draws]) if chosen != FLAT else None
    e_n = (float(fit(big)), interval([float(d(big)) for d in draws]))
    beta_n = (gain(fit), interval([gain(d) for d in draws]))
    return Curve(setting, model, points, chosen, scores, fit, b, e_n, beta_n, check)


@dataclass(frozen=True)
class JointLaw:
    """e(m, n) = a · n^-alpha + b · m^-beta + c over training images n and parameters m."""

    a: float
    alpha: float
    b: float
    beta: float
    c: float

    def __call__(self, m: Any, n: Any) -> Any:
        m, n = np.asarray(m, dtype=float), np.asarray(n, dtype=float)
        return self.a * n**-self.alpha + self.b * m**-self.beta + self.c

    def describe(self) -> str:
        return (
            f"e(m, n) = {self.a:.3g} · n^-{self.alpha:.2f} + {self.b:.3g} · m^-{self.beta:.2f}"
            f" + {self.c:.3g}"
        )


def joint_refusal(m: np.ndarray, n: np.ndarray) -> str:
    """Why runs at (m, n) cannot identify the joint form ('' when they can)."""
    for values, what in ((m, "model size"), (n, "training-set size")):
        if (k := np.unique(values).size) < AXIS_SIZES:
            return f"{k} {what}{'s' * (k != 1)}: the joint form needs {AXIS_SIZES} or more"
    if (cells := len(set(zip(m, n, strict=True)))) <= JOINT_PARAMS:
        return f"{cells} (model, size) cells for {JOINT_PARAMS} parameters: it needs more"
    return ""


def fit_joint(m: np.ndarray, n: np.ndarray, err: np.ndarray) -> JointLaw:
    """The joint form by bounded least squares (m and n over their geometric means), started
    from each axis's own curve with the floor at 0 and at half the smallest error."""
    m0, n0 = float(np.exp(np.log(m).mean())), float(np.exp(np.log(n).mean()))
    alpha, beta = fit_curve(n, err).b or 1.0, fit_curve(m, err).b or 1.0
    spread = float(err.max() - err.min()) / 2 or float(err.mean())
    starts = [[spread, alpha, spread, beta, share * float(err.min())] for share in (0.0, 0.5)]
    f = lambda p: p[0] * (n / n0) ** -p[1] + p[2] * (m / m0) ** -p[3] + p[4]  # noqa: E731
    p = _fit(f, err, starts, [np.inf] * 4 + [float(err.min())])
    if p is None:
        return JointLaw(0.0, 0.0, 0.0, 0.0, float(err.mean()))
    return JointLaw(p[0] * n0 ** p[1], p[1], p[2] * m0 ** p[3], p[3], p[4])


@dataclass(frozen=True)
class Joint:
    """One setting's joint fit with intervals over seeds, and its leave-one-out checks; or why
    it is not tested."""

    setting: str
    models: dict[int, str]  # parameter count -> model title
    runs: int
    refused: str
    fit: JointLaw | None = None
    alpha: Bounds = None
    beta: Bounds = None
    left_out: dict[str, dict[str, Any]] = field(default_factory=dict)  # "model", "size"


def _joint_draws(m: np.ndarray, n: np.ndarray, err: np.ndarray, seeds: np.ndarray) -> list:
    cells = np.unique(np.stack([m, n], axis=1), axis=0, return_inverse=True)[1].ravel()
    return per_seed(cells, seeds, lambda s: fit_joint(m[s], n[s], err[s]))


def joint(setting: str, runs: list[Record]) -> Joint:
    """The joint fit of `runs`, then fitted without the largest model and without the largest
    size, each left-out cell's measured error against the prediction's interval."""
    m = np.array([r["parameters"] for r in runs], dtype=float)
    n = np.array([r["train_images"] for r in runs], dtype=float)
    err, seeds = np.array([1 - r["test_acc"] for r in runs]), np.array([r["seed"] for r in runs])
    models = {r["parameters"]: MODEL_TITLES[r["model"]] for r in runs}
    if refused := joint_refusal(m, n):
        return Joint(setting, models, len(runs), refused)
    draws, checks = _joint_draws(m, n, err, seeds), {}
    for axis, key in (("model", m), ("size", n)):
        kept = key < key.max()
        checks[axis] = {"left_out": int(key.max()), "reason": joint_refusal(m[kept], n[kept])}
        if checks[axis]["reason"]:
            continue
        part = fit_joint(m[kept], n[kept], err[kept])
        part_draws = _joint_draws(m[kept], n[kept], err[kept], seeds[kept])
        checks[axis]["cells"] = [
            dict(
                m=int(mi),
                n=int(ni),
                **held_out(
                    float(part(mi, ni)),
                    interval([float(d(mi, ni)) for d in part_draws]),
                    float(err[(m == mi) & (n == ni)].mean()),
                ),
            )
            for mi, ni in sorted(set(zip(m[~kept], n[~kept], strict=True)))
        ]
    fit = fit_joint(m, n, err)
    alpha, beta = (interval([getattr(d, k) for d in draws]) for k in ("alpha", "beta"))
    return Joint(setting, models, len(runs), "", fit, alpha, beta, checks)


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given."""
    ranked = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    adjusted, running = [1.0] * len(pvalues), 0.0
    for rank, i in enumerate(ranked):
        running = max(running, min(1.0, (len(pvalues) - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


@dataclass(frozen=True)
class Comparison:
    """Test accuracy of cell `first` minus cell `second` (`kind` 'model' or 'pretraining'):
    the test, the difference's 95% interval, p and Holm's p; `untested` says why not."""

    kind: str
    first: Condition
    second: Condition
    test: str = ""  # "paired t" or "Welch's t"
    untested: str = ""
    interval: Bounds = None
    p: float | None = None
    p_holm: float | None = None

    @property
    def diff(self) -> float:
        return self.first.stat("test_acc")[0] - self.second.stat("test_acc")[0]

    @property
    def holds(self) -> bool:
        return self.p_holm is not None and self.p_holm < ALPHA


def compare(kind: str, first: Condition, second: Condition) -> Comparison:
    """Paired t over the seeds both cells ran (a seed fixes the subset, order and init) when
    they ran the same ones; Welch's t otherwise; untested with one seed on a side."""
    a = {r["seed"]: r["test_acc"] for r in first.runs}
    b = {r["seed"]: r["test_acc"] for r in second.runs}
    is_paired = set(a) == set(b)
    x, y = np.array([a[s] for s in sorted(a)]), np.array([b[s] for s in sorted(b)])
    if len(a) < 2 or len(b) < 2:
        return Comparison(kind, first, second, untested="one seed on a side")
    spread = np.var(x - y) if is_paired else np.var(x) + np.var(y)
    if spread < 1e-12:  # t undefined: the groups are identical or differ in every seed alike
        diff = float(np.mean(x) - np.mean(y))
        return Comparison(kind, first, second, "paired t", "", (diff, diff), float(diff == 0))
    result = ttest_rel(x, y) if is_paired else ttest_ind(x, y, equal_var=False)
    ci = result.confidence_interval(0.95)
    test = "paired t" if is_paired else "Welch's t"
    return Comparison(kind, first, second, test, "", (ci.low, ci.high), float(result.pvalue))


def comparisons(drawn: list[Condition]) -> list[Comparison]:
    """ResNet-50 against ResNet-18 and fine-tuned against from scratch per cell, Holm-corrected
    together."""
    cells, out = {c.key: c for c in drawn}, []
    for (setting, model, fraction), small in cells.items():
        big = cells.get((setting, "resnet50", fraction))
        if model == "resnet18" and big:
            if (
                setting == "pretrained"
                and small.runs[0]["config"]["weights"] != big.runs[0]["config"]["weights"]
            ):
                out.append(Comparison("model", big, small, untested="different ImageNet weights"))
            else:
                out.append(compare("model", big, small))
        if setting == "pretrained" and (base := cells.get(("scratch", model, fraction))):
            out.append(compare("pretraining", small, base))
    adjusted = iter(holm([c.p for c in out if c.p is not None]))
    return [replace(c, p_holm=next(adjusted)) if c.p is not None else c for c in out]


@dataclass(frozen=True)
class Analysis:
    """Everything a report says, computed once (see `build`)."""

    profile: str
    quick: bool  # a pipeline check: no effect stated, tested or fitted
    runs: list[Record]  # the main configuration's runs, every set of weights
    plotted: list[Record]  # ... one set of weights per model: curves, figures, fits
    apart: list[Record]  # fine-tuned runs of other weights than their model's latest
    cells: list[Condition]  # the main configuration's cells
    drawn: list[Condition]  # the plotted runs' cells
    rows: list[Condition]  # every configuration's cells, labelled by what differs
    others: list[Condition]  # the cells of other configurations than the main one
    recipe: dict[str, Variant]  # per setting: how its main runs differ from today's recipe
    today: dict[str, dict[str, Any]]  # ... and today's recipe where they differ
    comparisons: list[Comparison]
    curves: list[Curve]
    joints: list[Joint]
    quick_images: list[int]  # the images each quick run saw
    missing: dict[Key, NotProduced]
    failed: dict[Key, dict[int, str]]
    hardware: list[str]
    versions: list[str]
    data_dirs: list[str]
    origins: list[str]


def build(
    collected: list[Record],
    profile: str,
    missing: dict[Key, NotProduced] | None = None,
    failed: dict[Key, dict[int, str]] | None = None,
) -> Analysis:
    """The record of one report from the runs of `profile`, the cells the call could not run
    (`missing`) and the seeds that failed (`failed`, seed -> why)."""
    main, other_runs = split_configurations(collected)
    plotted, apart = split_weights(main)
    cells, drawn, rows = (
        group_conditions(main),
        group_conditions(plotted),
        group_conditions(main + other_runs),
    )
    quick, failed = profile == "quick", failed or {}
    lost = {
        k: NotProduced(failed="; ".join(f"seed {s}: {why}" for s, why in sorted(v.items())))
        for k, v in failed.items()
    }
    lines = {(r["setting"], r["model"]) for r in plotted}
    by_line = {
        k: sorted(
            (r for r in plotted if (r["setting"], r["model"]) == k),
            key=lambda r: (r["train_images"], r["seed"]),
        )
        for k in lines
    }
    return Analysis(
        profile=profile,
        quick=quick,
        runs=main,
        plotted=plotted,
        apart=apart,
        cells=cells,
        drawn=drawn,
        rows=rows,
        others=[c for c in rows if not any(c.runs[0] is r for r in main)],
        recipe={c.setting: c.variant for c in cells},
        today={c.setting: today_recipe(c.runs[0]).training_key() for c in cells if c.variant},
        comparisons=[] if quick else comparisons(drawn),
        curves=[]
        if quick
        else [learning_curve(*k, by_line[k]) for k in sorted(lines, key=lambda k: order((*k, 0)))],
        joints=[] if quick else [j for s in SETTING_TITLES if (j := _joint(s, plotted))],
        quick_images=sorted(
            {len(r["history"]) * r["steps_per_epoch"] * r["config"]["batch_size"] for r in main}
        )
        if quick
        else [],
        missing={
            k: v for k, v in ((missing or {}) | lost).items() if k not in {c.key for c in cells}
        },
        failed=failed,
        hardware=sorted({r["hardware"] for r in main}),
        versions=sorted({f"torch {r['torch']}, torchvision {r['torchvision']}" for r in main}),
        data_dirs=sorted({r["config"]["data_dir"] for r in main}),
        origins=sorted({r["data"] for r in main}),
    )


def _joint(setting: str, runs: list[Record]) -> Joint | None:
    """The joint check where a setting has two or more models at two or more sizes."""
    mine = [r for r in runs if r["setting"] == setting]
    if len({r["parameters"] for r in mine}) < 2 or len({r["train_images"] for r in mine}) < 2:
        return None
    return joint(setting, mine)


def pct(value: float) -> str:
    return f"{100 * value:.2f}"


def span(bounds: Bounds, fmt: Callable = pct) -> str:
    return f"{fmt(bounds[0])} to {fmt(bounds[1])}" if bounds else "too few seeds"


def line_title(setting: str, model: str) -> str:
    return f"{MODEL_TITLES[model]} {SETTING_TITLES[setting]}"


def claim_title(c: Comparison) -> str:
    """'ResNet-50 − ResNet-18, from scratch, 1/16 (2,810 images)'."""
    first, second = MODEL_TITLES[c.first.model], MODEL_TITLES[c.second.model]
    what = f"{first} − {second}, {SETTING_TITLES[c.first.setting]}"
    if c.kind == "pretraining":
        what = f"{first}, fine-tuned − from scratch"
    images = c.first.runs[0]["train_images"]
    return f"{what}, {fraction_title(c.first.fraction)} ({images:,} images)"


def untested(a: Analysis) -> list[str]:
    """What the report does not claim, each item once."""
    if a.quick:
        seen = ", ".join(f"{n:,}" for n in a.quick_images)
        return [
            f"Everything: quick runs check the pipeline. Each saw {seen} images whatever its data "
            "size, far from convergence, so no data, model-size or pretraining effect is stated, "
            "tested or fitted. The full profile (`--profile full`, on a GPU) measures them."
        ]
    out = [f"{claim_title(c)}: {c.untested}." for c in a.comparisons if c.untested]
    if short := [line_title(c.setting, c.model) for c in a.curves if not c.chosen]:
        out.append(f"The curve over data size of {', '.join(short)}: it needs 3 or more sizes.")
    if exact := [c for c in a.curves if c.exact]:
        fractions = sorted({r["data_fraction"] for r in a.plotted})
        halving = {2.0**-k for k in range(round(-math.log2(fractions[0])) + 1)}
        wanted = ",".join(map(fraction_title, sorted(set(fractions) | halving)))
        out.append(
            f"The power-law form: {len({n for n, _ in exact[0].points})} sizes for 3 parameters, "
            "so the curve passes through every mean, AICc weighs the seeds' spread only and the "
            f"floor c has no support of its own; `--fractions {wanted}` would test it."
        )
    out += [
        f"The joint fit over data and model size, {SETTING_TITLES[j.setting]}: {j.refused}."
        for j in a.joints
        if j.refused
    ]
    out.append(
        "Whether more epochs would raise these numbers: only runs at twice the epochs could "
        "say (a best epoch at the last one is what a schedule ending at lr 0 gives anyway)."
    )
    return out


CLAIMS = "comparison|difference (points):|95% interval:|p (test):|Holm-adjusted p:|verdict"


def claims(a: Analysis) -> str:
    """The tested claims as one table, then what was not tested."""
    rows = []
    for c in (c for c in a.comparisons if c.p is not None):
        verdict = "a difference beyond seed noise" if c.holds else "not a clear difference"
        bounds = span(c.interval, lambda v: f"{100 * v:+.2f}")
        rows.append([claim_title(c), f"{100 * c.diff:+.2f}", bounds, f"{c.p:.2g} ({c.test})"])
        rows[-1] += [f"{c.p_holm:.2g}", verdict]
    text = "### Tested claims\n\n" + (
        f"Test accuracy; Holm's correction over the report's {count(len(rows), 'test')}; a "
        f"difference is clear at an adjusted p < {ALPHA}.\n\n{table(CLAIMS, rows)}\n"
        if rows
        else "None.\n\n"
    )
    return text + "### Not tested\n\n" + "".join(f"- {line}\n" for line in untested(a))


CURVES = "model|setting|runs:|curve (AICc)|fit|b|e_N %|β_N (points per doubling)"
CHECK = "predicted error %:|95% interval %:|measured error %:|inside?"


def fits(a: Analysis) -> str:
    """The curves over data size, their extrapolation checks and the joint fits, as tables."""
    rows, checks, two = [], [], lambda v: f"{v:.2f}"
    for c in (c for c in a.curves if c.chosen):
        name, k = [MODEL_TITLES[c.model], SETTING_TITLES[c.setting]], c.check
        aic = ", ".join(f"{name} {v:.1f}" for name, v in c.aic.items())
        b = f"{c.fit.b:.2f} ({span(c.b, two)})" if c.chosen != FLAT else "–"
        rows.append([*name, len(c.points), f"{c.chosen} ({aic})", c.fit.describe(), b])
        rows[-1] += [f"{pct(c.e_n[0])} ({span(c.e_n[1])})"]
        rows[-1] += [f"{pct(c.beta_n[0])} ({span(c.beta_n[1])})"]
        checks.append([*name, ", ".join(f"{s:,}" for s in k["fit_on"]), f"{k['n']:,}"])
        checks[-1] += [pct(k["predicted"]), span(k["interval"]), pct(k["measured"])]
        checks[-1] += [INSIDE[k["inside"]]]
    if not rows:
        return ""
    out = (
        "Curves over data size, chosen by AICc (lower is better; a curve with more parameters "
        "must lower it by more than 2); e_N and β_N after Hoiem et al. 2021; 95% t-intervals "
        f"over the seeds' own fits:\n\n{table(CURVES, rows)}\nFitted on the smaller sizes, "
        "predicting the largest:\n\n"
        + table("model|setting|fit on (images)|largest n:|" + CHECK, checks)
    )
    for j in (j for j in a.joints if j.fit):
        out += (
            f"\nJoint fit, {SETTING_TITLES[j.setting]} ({j.runs} runs): {j.fit.describe()}; "
            f"alpha {span(j.alpha, two)}, beta {span(j.beta, two)}; fitted without the largest "
            f"model or size:\n\n{table('left out|cell|' + CHECK, _left_out(j))}"
        )
    return out


def _left_out(j: Joint) -> list[list[str]]:
    """Per leave-one-out check, each left-out cell's prediction against its measure."""
    rows = []
    for axis, check in j.left_out.items():
        gone = j.models[check["left_out"]] if axis == "model" else f"{check['left_out']:,} images"
        if check["reason"]:
            rows.append([gone, f"not tested: {check['reason']}", "–", "–", "–", "–"])
        for c in check.get("cells", []):
            cell = f"{j.models[c['m']]} at {c['n']:,} images"
            rows.append([gone, cell, pct(c["predicted"]), span(c["interval"])])
            rows[-1] += [pct(c["measured"]), INSIDE[c["inside"]]]
    return rows


INSIDE = {None: "–", True: "yes", False: "no"}  # measured inside the interval? (None: none)
COLORS = {
    (s, m): plt.get_cmap("tab20")(2 * j + i)
    for i, s in enumerate(SETTING_TITLES)
    for j, m in enumerate(MODEL_TITLES)
}
MARKERS = dict(zip(MODEL_TITLES, "oDsvP^", strict=True))


def _log(ax: Axes, which: str, ticks: list[float] | None = None) -> None:
    """A log axis labelled in plain numbers: at `ticks`, else at 1, 2 and 5 per decade."""
    axis = ax.xaxis if which == "x" else ax.yaxis
    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    if ticks:
        axis.set_ticks(ticks)
    else:
        from matplotlib.ticker import LogLocator

        axis.set_major_locator(LogLocator(subs=(1, 2, 5)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 100 else f"{v:.3g}"))
    axis.set_minor_locator(NullLocator())


def _figure(title: str, a: Analysis) -> tuple[Figure, Axes]:
    fig, ax = plt.subplots(figsize=(8.5, 4.8), dpi=110, layout="constrained")
    seen = ", ".join(f"{n:,}" for n in a.quick_images)
    quick = f"\nquick profile: each run saw {seen} images, not converged"
    ax.set_title(title + (quick if a.quick else f"\nprofile {a.profile}"), fontsize=9)
    ax.grid(alpha=0.3)
    return fig, ax


def plot_error_vs_data(a: Analysis) -> Figure:
    """Test error against training images, log-log: mean ± sd per cell, the fits dashed."""
    fitted = {(c.setting, c.model): c.fit for c in a.curves if c.fit}
    dashed = "; dashed: the fit" if fitted else ""
    fig, ax = _figure(f"Test error vs training-set size: mean ± sd over seeds{dashed}", a)
    for key in sorted({(c.setting, c.model) for c in a.drawn}, key=lambda k: order((*k, 0))):
        cells = [c for c in a.drawn if (c.setting, c.model) == key]
        n = np.array([c.runs[0]["train_images"] for c in cells])
        mean, sd = (
            np.array([100 * s for s in v])
            for v in zip(*(c.stat("test_acc")[:2] for c in cells), strict=True)
        )
        label = f"{MODEL_TITLES[key[1]]} {SETTING_TITLES[key[0]]}"
        ax.errorbar(
            n,
            100 - mean,
            yerr=sd,
            marker=MARKERS[key[1]],
            ls="none",
            capsize=3,
            color=COLORS[key],
            label=label,
        )
        if key in fitted and n.size > 1:
            grid = np.geomspace(n.min(), n.max(), 100)
            ax.plot(
                grid,
                100 * fitted[key](grid),
                "--",
                color=COLORS[key],
                label=f"{label}, fit {fitted[key].describe()}",
            )
    if a.drawn:
        _log(ax, "x", sorted({c.runs[0]["train_images"] for c in a.drawn}))
        _log(ax, "y")
        fig.legend(loc="outside right upper", fontsize=8)
    ax.set_xlabel(
        "training images in the subset (log scale)"
        + (": not how many a quick run saw" if a.quick else "")
    )
    ax.set_ylabel("test error, % (log scale)")
    return fig


def plot_error_vs_parameters(a: Analysis) -> Figure:
    """Test error against parameters as trained, log-log, a line per setting and data size."""
    fig, ax = _figure("Test error vs model size: mean ± sd over seeds; dashed: the joint fit", a)
    fits_ = {j.setting: j.fit for j in a.joints if j.fit}
    sizes = sorted({c.runs[0]["train_images"] for c in a.drawn})
    for setting in SETTING_TITLES:
        for i, n in enumerate(sizes):
            cells = sorted(
                (c for c in a.drawn if c.setting == setting and c.runs[0]["train_images"] == n),
                key=lambda c: c.runs[0]["parameters"],
            )
            if not cells:
                continue
            m = np.array([c.runs[0]["parameters"] for c in cells])
            mean, sd = (
                np.array([100 * s for s in v])
                for v in zip(*(c.stat("test_acc")[:2] for c in cells), strict=True)
            )
            style = "-" if setting == "scratch" else ":"
            ax.errorbar(
                m,
                100 - mean,
                yerr=sd,
                ls=style,
                marker="o",
                capsize=3,
                color=f"C{i}",
                label=f"{n:,} images, {SETTING_TITLES[setting]}",
            )
            if setting in fits_ and m.size > 1:
                grid = np.geomspace(m.min(), m.max(), 50)
                ax.plot(grid, 100 * fits_[setting](grid, n), "--", color=f"C{i}", alpha=0.6)
    if a.drawn:
        _log(ax, "x", sorted({c.runs[0]["parameters"] for c in a.drawn}))
        _log(ax, "y")
        fig.legend(loc="outside right upper", fontsize=8)
    ax.set_xlabel("parameters as trained (log scale)")
    ax.set_ylabel("test error, % (log scale)")
    return fig


def plot_accuracy_vs_time(a: Analysis) -> Figure:
    """Test accuracy against wall time, one point per run, each cell named by its data size."""
    fig, ax = _figure(
        "Test accuracy vs training time, one point per run, labelled with its data size", a
    )
    for c in a.drawn:
        key = (c.setting, c.model)
        t, acc = [r["wall_time_s"] for r in c.runs], [100 * r["test_acc"] for r in c.runs]
        label = f"{MODEL_TITLES[c.model]} {SETTING_TITLES[c.setting]}"
        seen = ax.get_legend_handles_labels()[1]
        ax.scatter(
            t,
            acc,
            marker=MARKERS[c.model],
            color=COLORS[key],
            label=None if label in seen else label,
        )
        ax.annotate(
            fraction_title(c.fraction),
            (t[0], acc[0]),
            textcoords="offset points",
            xytext=(5, 3),
            fontsize=7,
        )
    if a.drawn:
        _log(ax, "x")
        fig.legend(loc="outside right upper", fontsize=8)
    ax.set_xlabel("wall time per run, s (log scale)")
    ax.set_ylabel("test accuracy (%)")
    return fig


def plot_pretrained_gap(a: Analysis) -> Figure:
    """Fine-tuned minus from-scratch test accuracy per data size, with its 95% interval."""
    fig, ax = _figure("What ImageNet pre-training adds: fine-tuned − from scratch, 95% interval", a)
    for model in MODEL_TITLES:
        gaps = [c for c in a.comparisons if c.kind == "pretraining" and c.first.model == model]
        if gaps:
            n = [c.first.runs[0]["train_images"] for c in gaps]
            diff = np.array([100 * c.diff for c in gaps])
            bars = np.array(
                [
                    [100 * (c.diff - c.interval[0]), 100 * (c.interval[1] - c.diff)]
                    if c.interval
                    else [0, 0]
                    for c in gaps
                ]
            ).T
            ax.errorbar(
                n, diff, yerr=bars, marker=MARKERS[model], capsize=3, label=MODEL_TITLES[model]
            )
    ax.axhline(0, color="0.5", lw=0.8)
    _log(
        ax,
        "x",
        sorted({c.first.runs[0]["train_images"] for c in a.comparisons if c.kind == "pretraining"}),
    )
    fig.legend(loc="outside right upper", fontsize=8)
    ax.set_xlabel("training images (log scale)")
    ax.set_ylabel("test accuracy difference (points)")
    return fig


def write_scaling(a: Analysis, images_dir: str | Path | None) -> list[Path]:
    """Save the figures that apply under images_dir/scaling/ (None: images/ in the repository):
    the model-size one with 3 or more models, the pretraining gap where a cell has both settings."""
    folder = (REPO / "images" if images_dir is None else Path(images_dir)) / "scaling"
    plots = {"error_vs_data": plot_error_vs_data, "accuracy_vs_time": plot_accuracy_vs_time}
    if any(c.kind == "pretraining" for c in a.comparisons):
        plots["pretrained_gap"] = plot_pretrained_gap
    if len({c.model for c in a.drawn}) >= AXIS_SIZES:
        plots["error_vs_parameters"] = plot_error_vs_parameters
    return [save_figure(plot(a), folder / f"{name}.png") for name, plot in plots.items()]


def load(output_dir: str | Path | None, profile: str | None) -> Analysis:
    """The record of the runs under `output_dir` (None: runs/) of `profile` (None: the profile
    of most runs), as the scaling notebook reads them."""
    output_dir = REPO / "runs" if output_dir is None else Path(output_dir)
    if profile is None:
        profile = max(PROFILES, key=lambda p: len(collect(output_dir, p)))
    return build(collect(output_dir, profile), profile)
