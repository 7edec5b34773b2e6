"""The analysis of a report, computed once: paired t over seeds with Holm; power laws over data
size chosen by AICc and the joint fit over data and model size (Rosenfeld et al. 2020), each
checked on its largest point; their tables and the scaling figures."""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullLocator
from scipy.optimize import least_squares
from scipy.stats import t as student
from scipy.stats import ttest_rel

from .config import PROFILES, REPO
from .data import fraction_title
from .report import (
    MODEL_TITLES,
    SETTING_TITLES,
    Condition,
    Key,
    NotProduced,
    Record,
    collect,
    count,
    group_conditions,
    moment,
    order,
    save_figure,
    table,
)

ALPHA = 0.05  # the level of every test, after Holm's correction
EPS = 1e-6  # errors of 0 are clipped to this so that their logarithm exists
DELTA_AIC = 2.0  # a curve with more parameters must lower AICc by more than this to be chosen
FLAT, PURE, FLOOR = "flat line", "pure power law", "power law with floor"
PARAMS = {FLAT: 1, PURE: 2, FLOOR: 3}
JOINT_PARAMS, AXIS_SIZES = 5, 3  # the joint form's parameters; distinct values an axis needs
FIGURES = ("error_vs_data", "pretrained_gap", "error_vs_parameters")
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


@dataclass(frozen=True)
class JointLaw:
    """e(m, n) = data(n) + model(m) = a · n^-alpha + c + b · m^-beta: n images, m parameters."""

    data: PowerLaw  # a, alpha, c
    model: PowerLaw  # b, beta, 0

    def __call__(self, m: Any, n: Any) -> Any:
        return self.data(n) + self.model(m)

    def describe(self) -> str:
        d, m = self.data, self.model
        return f"e(m, n) = {d.a:.3g} · n^-{d.b:.2f} + {m.a:.3g} · m^-{m.b:.2f} + {d.c:.3g}"


def least(f: Callable, err: np.ndarray, starts: list, upper: list[float]) -> np.ndarray | None:
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
    """The least-squares `form` with a, b >= 0 and 0 <= c < min(err); flat where err won't fall."""
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
    found = least(lambda p: p[0] * x ** -p[1] + (0 if pure else p[2]), err, starts, upper)
    if found is None or found[0] <= 0 or found[1] <= 0:
        return flat
    law = PowerLaw(float(found[0] * n0 ** found[1]), float(found[1]), 0.0 if pure else found[2])
    return law if sse(law, n, err) < sse(flat, n, err) else flat


def sse(fit: Callable, n: np.ndarray, err: np.ndarray) -> float:
    return float(np.sum((fit(n) - err) ** 2))


def choose(n: Any, err: Any) -> tuple[str, dict[str, float]]:
    """The simplest curve within DELTA_AIC of the lowest AICc, and each candidate's AICc."""
    n, err = np.asarray(n, dtype=float), np.clip(np.asarray(err, dtype=float), EPS, None)
    scores, m = {}, n.size
    for name, k in PARAMS.items():
        if m > k + 1 and (k == 1 or np.unique(n).size >= k):
            rss = max(sse(fit_curve(n, err, name), n, err), 1e-12)
            scores[name] = m * math.log(rss / m) + 2 * k + 2 * k * (k + 1) / (m - k - 1)
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
    full = np.unique(groups).size
    every = [s for s in np.unique(seeds) if np.unique(groups[seeds == s]).size == full]
    return [refit(seeds == s) for s in every] if len(every) > 1 else []


def held_out(predict: Callable, fit: Any, draws: list, measured: float, **where: int) -> dict:
    """A fit's prediction of a left-out point, the 95% interval of its seeds' fits, the measure."""
    bounds = interval([float(predict(d)) for d in draws])
    inside = None if bounds is None else bounds[0] <= measured <= bounds[1]
    return dict(
        where, predicted=float(predict(fit)), interval=bounds, measured=measured, inside=inside
    )


def learning_curve(setting: str, model: str, runs: list[Record]) -> dict[str, Any]:
    """A curve over data size chosen by AICc, fitted with its floor, checked on the largest size."""
    runs = sorted(runs, key=lambda r: (r["train_images"], r["seed"]))
    n = np.array([r["train_images"] for r in runs], dtype=float)
    err = np.array([1 - r["test_acc"] for r in runs])
    seeds = np.array([r["seed"] for r in runs])
    points = [(int(a), float(b)) for a, b in zip(n, err, strict=True)]  # (images, error) per run
    curve, sizes = dict(setting=setting, model=model, points=points, chosen=""), np.unique(n)
    if sizes.size < 3:
        return curve

    def fitted(s: np.ndarray) -> tuple[str, dict, PowerLaw, list[PowerLaw]]:
        chosen, scores = choose(n[s], err[s])
        form = FLAT if chosen == FLAT else FLOOR
        draws = per_seed(n[s], seeds[s], lambda d: fit_curve(n[s][d], err[s][d], form))
        return chosen, scores, fit_curve(n[s], err[s], form), draws

    big = float(sizes[-1])
    chosen, scores, fit, draws = fitted(n > 0)
    _, _, part, part_draws = fitted(n < big)
    check = held_out(lambda f: f(big), part, part_draws, float(err[n == big].mean()), n=int(big))
    b = interval([d.b for d in draws]) if chosen != FLAT else None
    check["fit_on"] = [int(s) for s in sizes[:-1]]
    return dict(curve, chosen=chosen, aic=scores, fit=fit, b=b, check=check)


def joint_refusal(m: np.ndarray, n: np.ndarray) -> str:
    """Why runs at (m, n) cannot identify the joint form ('' when they can)."""
    for values, what in ((m, "model size"), (n, "training-set size")):
        if (k := np.unique(values).size) < AXIS_SIZES:
            return f"{k} {what}{'s' * (k != 1)}: the joint form needs {AXIS_SIZES} or more"
    if (cells := len(set(zip(m, n, strict=True)))) <= JOINT_PARAMS:
        return f"{cells} (model, size) cells for {JOINT_PARAMS} parameters: it needs more"
    return ""


def fit_joint(m: np.ndarray, n: np.ndarray, err: np.ndarray) -> JointLaw:
    """The joint form by bounded least squares, started from each axis's own curve."""
    m0, n0 = float(np.exp(np.log(m).mean())), float(np.exp(np.log(n).mean()))
    alpha, beta = fit_curve(n, err).b or 1.0, fit_curve(m, err).b or 1.0
    spread = float(err.max() - err.min()) / 2 or float(err.mean())
    starts = [[spread, alpha, spread, beta, share * float(err.min())] for share in (0.0, 0.5)]
    f = lambda p: p[0] * (n / n0) ** -p[1] + p[2] * (m / m0) ** -p[3] + p[4]  # noqa: E731
    p = least(f, err, starts, [np.inf] * 4 + [float(err.min())])
    if p is None:
        return JointLaw(PowerLaw(0.0, 0.0, float(err.mean())), PowerLaw(0.0, 0.0, 0.0))
    return JointLaw(PowerLaw(p[0] * n0 ** p[1], p[1], p[4]), PowerLaw(p[2] * m0 ** p[3], p[3], 0.0))


def joint(setting: str, runs: list[Record]) -> dict[str, Any]:
    """A setting's joint fit, its intervals and its check on the largest model; or why not."""
    m = np.array([r["parameters"] for r in runs], dtype=float)
    n = np.array([r["train_images"] for r in runs], dtype=float)
    err, seeds = np.array([1 - r["test_acc"] for r in runs]), np.array([r["seed"] for r in runs])
    models = {r["parameters"]: MODEL_TITLES[r["model"]] for r in runs}  # parameters -> title
    out = dict(setting=setting, models=models, runs=len(runs), refused=joint_refusal(m, n))
    if out["refused"]:
        return out
    cells = np.unique(np.stack([m, n], axis=1), axis=0, return_inverse=True)[1].ravel()

    def draws(s: np.ndarray) -> list[JointLaw]:
        return per_seed(cells[s], seeds[s], lambda d: fit_joint(m[s][d], n[s][d], err[s][d]))

    big, kept = m.max(), m < m.max()
    check = dict(model=int(big), reason=joint_refusal(m[kept], n[kept]), cells=[])
    if not check["reason"]:
        part, part_draws = fit_joint(m[kept], n[kept], err[kept]), draws(kept)
        for ni in sorted(set(n[~kept])):
            measured = float(err[~kept & (n == ni)].mean())
            at = lambda d: d(big, ni)  # noqa: B023, E731
            check["cells"].append(held_out(at, part, part_draws, measured, n=int(ni)))
    every = draws(m > 0)
    alpha, beta = interval([d.data.b for d in every]), interval([d.model.b for d in every])
    return dict(out, fit=fit_joint(m, n, err), alpha=alpha, beta=beta, check=check)


def compare(kind: str, first: Condition, second: Condition) -> dict[str, Any]:
    """`first` − `second` in test accuracy by paired t: diff, interval, p, or `untested`."""
    a = {r["seed"]: r["test_acc"] for r in first.runs}
    b = {r["seed"]: r["test_acc"] for r in second.runs}
    x, y = np.array([a[s] for s in sorted(a)]), np.array([b[s] for s in sorted(b)])
    out = dict(kind=kind, first=first, second=second, diff=float(np.mean(x) - np.mean(y)))
    if first.setting == second.setting == "pretrained" and first.weights != second.weights:
        return dict(out, untested="different ImageNet weights")
    if len(a) < 2 or len(b) < 2:
        return dict(out, untested="one seed on a side")
    if set(a) != set(b):
        return dict(out, untested="different seeds")
    if np.var(x - y) < 1e-12:  # t undefined: no spread
        return dict(out, interval=(out["diff"],) * 2, p=float(out["diff"] == 0))
    result = ttest_rel(x, y)
    ci = result.confidence_interval(0.95)
    return dict(out, interval=(ci.low, ci.high), p=float(result.pvalue))


def comparisons(drawn: list[Condition]) -> list[dict[str, Any]]:
    """ResNet-50 against ResNet-18 and fine-tuned against from scratch per cell, with Holm."""
    cells, out = {c.key: c for c in drawn}, []
    for (setting, model, fraction), small in cells.items():
        big = cells.get((setting, "resnet50", fraction))
        if model == "resnet18" and big:
            out.append(compare("model", big, small))
        if setting == "pretrained" and (base := cells.get(("scratch", model, fraction))):
            out.append(compare("pretraining", small, base))
    tested, running = sorted((c for c in out if "p" in c), key=lambda c: c["p"]), 0.0
    for rank, c in enumerate(tested):  # Holm's step-down adjustment
        running = c["p_holm"] = max(running, min(1.0, (len(tested) - rank) * c["p"]))
    return out


@dataclass(frozen=True)
class Analysis:
    """Everything a report says, computed once by `build`."""

    profile: str
    rows: list[Condition]  # every configuration's cells, labelled by what differs
    cells: list[Condition]  # ... of each setting's main configuration, every set of weights
    drawn: list[Condition]  # ... one set of weights per model: curves, figures, fits, claims
    comparisons: list[dict[str, Any]]  # of `compare`, with Holm's p ("p_holm")
    curves: list[dict[str, Any]]  # of `learning_curve`
    joints: list[dict[str, Any]]  # of `joint`
    missing: dict[Key, NotProduced]  # cells without runs
    failed: dict[Key, dict[int, str]]  # seed -> why

    @property
    def quick(self) -> bool:
        """A pipeline check: no effect stated, tested or fitted."""
        return self.profile == "quick"

    @property
    def runs(self) -> list[Record]:
        return [r for c in self.cells for r in c.runs]

    @property
    def hardware(self) -> str:
        return "; ".join(sorted({r["hardware"] for r in self.runs}))

    @property
    def seen(self) -> str:
        """How many images each quick run saw: '4,096' or '4,096, 8,192'."""
        seen = {
            len(r["history"]) * r["steps_per_epoch"] * r["config"]["batch_size"] for r in self.runs
        }
        return ", ".join(f"{n:,}" for n in sorted(seen))


def build(
    collected: list[Record],
    profile: str,
    missing: dict[Key, NotProduced] | None = None,
    failed: dict[Key, dict[int, str]] | None = None,
) -> Analysis:
    """The analysis of `profile`'s runs; a setting's main configuration is that of most runs."""
    rows, rank = group_conditions(collected), {}
    last = lambda c: max(moment(r["finished_at"]) for r in c.runs)  # noqa: E731
    for c in rows:
        runs, when = rank.get((c.setting, c.variant), (0, 0.0))
        rank[c.setting, c.variant] = (runs + len(c.runs), max(when, last(c)))
    main = {setting: v for (setting, v), _ in sorted(rank.items(), key=lambda i: i[1])}
    cells = [c for c in rows if c.variant == main[c.setting]]
    tuned = [c for c in cells if c.setting == "pretrained"]
    latest = {c.model: c.weights for c in sorted(tuned, key=lambda c: (last(c), c.weights))}
    drawn = [c for c in cells if c.setting == "scratch" or c.weights == latest[c.model]]
    lines: dict[tuple[str, str], list[Record]] = {}
    for c in [] if profile == "quick" else drawn:  # quick runs: nothing tested or fitted
        lines.setdefault((c.setting, c.model), []).extend(c.runs)
    joints = []
    for s in SETTING_TITLES:
        mine = [r for (setting, _), runs in lines.items() if setting == s for r in runs]
        if len({r["parameters"] for r in mine}) > 1 and len({r["train_images"] for r in mine}) > 1:
            joints.append(joint(s, mine))
    lost = {
        k: NotProduced(failed="; ".join(f"seed {s}: {why}" for s, why in sorted(v.items())))
        for k, v in (failed or {}).items()
    }
    missing = {k: v for k, v in ((missing or {}) | lost).items() if k not in {c.key for c in cells}}
    curves = [learning_curve(*k, runs) for k, runs in lines.items()]
    tests = comparisons([] if profile == "quick" else drawn)
    return Analysis(profile, rows, cells, drawn, tests, curves, joints, missing, failed or {})


def pct(value: float) -> str:
    return f"{100 * value:.2f}"


def span(bounds: Bounds, fmt: Callable = pct) -> str:
    return f"{fmt(bounds[0])} to {fmt(bounds[1])}" if bounds else "too few seeds"


def claim_title(c: dict[str, Any]) -> str:
    """'ResNet-50 − ResNet-18, from scratch, 1/16 (2,810 images)'."""
    first, second = MODEL_TITLES[c["first"].model], MODEL_TITLES[c["second"].model]
    what = f"{first} − {second}, {SETTING_TITLES[c['first'].setting]}"
    if c["kind"] == "pretraining":
        what = f"{first}, fine-tuned − from scratch"
    images = c["first"].runs[0]["train_images"]
    return f"{what}, {fraction_title(c['first'].fraction)} ({images:,} images)"


def untested(a: Analysis) -> list[str]:
    """What the report does not claim, each item once."""
    if a.quick:
        return [
            f"Everything: quick runs check the pipeline. Each saw {a.seen} images whatever its "
            "data size, far from convergence, so no data, model-size or pretraining effect is "
            "stated, tested or fitted. The full profile (`--profile full`, on a GPU) measures them."
        ]
    out = [f"{claim_title(c)}: {c['untested']}." for c in a.comparisons if "untested" in c]
    if short := [c for c in a.curves if not c["chosen"]]:
        names = ", ".join(
            f"{MODEL_TITLES[c['model']]} {SETTING_TITLES[c['setting']]}" for c in short
        )
        out.append(f"The curve over data size of {names}: it needs 3 or more sizes.")
    sizes = {len({n for n, _ in c["points"]}) for c in a.curves if c["chosen"] not in ("", FLAT)}
    if 3 in sizes:  # as many sizes as parameters: the curve passes through every mean
        fractions = sorted({c.fraction for c in a.drawn})
        halving = {2.0**-k for k in range(round(-math.log2(fractions[0])) + 1)}
        wanted = ",".join(map(fraction_title, sorted(set(fractions) | halving)))
        out.append(
            "The power-law form: 3 sizes for 3 parameters, so the curve passes through every "
            "mean, AICc weighs the seeds' spread only and the floor c has no support of its own; "
            f"`--fractions {wanted}` would test it."
        )
    out += [
        f"The joint fit over data and model size, {SETTING_TITLES[j['setting']]}: {j['refused']}."
        for j in a.joints
        if j["refused"]
    ]
    out.append(
        "Whether more epochs would raise these numbers: only runs at twice the epochs could "
        "say (a best epoch at the last one is what a schedule ending at lr 0 gives anyway)."
    )
    return out


CLAIMS = "comparison|difference (points):|95% interval:|paired p:|Holm-adjusted p:|verdict"


def claims(a: Analysis) -> str:
    """The tested claims as one table, then what was not tested."""
    rows = []
    for c in (c for c in a.comparisons if "p" in c):
        verdict = (
            "a difference beyond seed noise" if c["p_holm"] < ALPHA else "not a clear difference"
        )
        bounds = span(c["interval"], lambda v: f"{100 * v:+.2f}")
        rows.append([claim_title(c), f"{100 * c['diff']:+.2f}", bounds, f"{c['p']:.2g}"])
        rows[-1] += [f"{c['p_holm']:.2g}", verdict]
    text = "### Tested claims\n\n" + (
        f"Test accuracy; Holm's correction over the report's {count(len(rows), 'test')}; a "
        f"difference is clear at an adjusted p < {ALPHA}.\n\n{table(CLAIMS, rows)}\n"
        if rows
        else "None.\n\n"
    )
    return text + "### Not tested\n\n" + "".join(f"- {line}\n" for line in untested(a))


CHECK = "predicted error %:|95% interval %:|measured error %:|inside?"
INSIDE = {None: "–", True: "yes", False: "no"}  # measured inside the interval? (None: none)


def checked(where: list[str], k: dict[str, Any]) -> list[str]:
    """A row of a held-out check: `where`, then prediction, interval, measure and verdict."""
    said = [pct(k["predicted"]), span(k["interval"]), pct(k["measured"]), INSIDE[k["inside"]]]
    return [*where, *said]


def fits(a: Analysis) -> str:
    """The curves over data size, their checks on the largest size and the joint fits, as tables."""
    rows, checks, two = [], [], lambda v: f"{v:.2f}"
    for c in (c for c in a.curves if c["chosen"]):
        name = [MODEL_TITLES[c["model"]], SETTING_TITLES[c["setting"]]]
        k, fit = c["check"], c["fit"]
        aic = ", ".join(f"{name} {v:.1f}" for name, v in c["aic"].items())
        b = f"{fit.b:.2f} ({span(c['b'], two)})" if c["chosen"] != FLAT else "–"
        rows.append([*name, len(c["points"]), f"{c['chosen']} ({aic})", fit.describe(), b])
        checks.append(checked([*name, ", ".join(f"{s:,}" for s in k["fit_on"]), f"{k['n']:,}"], k))
    if not rows:
        return ""
    out = (
        "Curves over data size, chosen by AICc (lower is better; a curve with more parameters "
        "must lower it by more than 2); b's 95% t-interval over the seeds' own fits:\n\n"
        f"{table('model|setting|runs:|curve (AICc)|fit|b', rows)}\nFitted on the smaller sizes, "
        "predicting the largest:\n\n"
        + table(f"model|setting|fit on (images)|largest n:|{CHECK}", checks)
    )
    for j in (j for j in a.joints if not j["refused"]):
        k, big, setting = j["check"], j["models"][j["check"]["model"]], SETTING_TITLES[j["setting"]]
        rows = [checked([f"{big} at {c['n']:,} images"], c) for c in k["cells"]]
        said = "\n\n" + table(f"cell|{CHECK}", rows) if rows else f"not tested: {k['reason']}.\n"
        out += (
            f"\nJoint fit, {setting} ({j['runs']} runs): {j['fit'].describe()}; alpha "
            f"{span(j['alpha'], two)}, beta {span(j['beta'], two)}; fitted without the largest "
            f"model ({big}), predicting it: {said}"
        )
    return out


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
    axis.set_major_locator(FixedLocator(ticks) if ticks else LogLocator(subs=(1, 2, 5)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 100 else f"{v:.3g}"))
    axis.set_minor_locator(NullLocator())


def _figure(title: str, a: Analysis, x: str, y: str) -> tuple[Figure, Axes]:
    """A scaling figure titled with its profile, its axes labelled `x` and `y`."""
    fig, ax = plt.subplots(figsize=(8.5, 4.8), dpi=110, layout="constrained")
    quick = f"\nquick profile: each run saw {a.seen} images, not converged"
    ax.set_title(title + (quick if a.quick else f"\nprofile {a.profile}"), fontsize=9)
    ax.set(xlabel=x, ylabel=y)
    ax.grid(alpha=0.3)
    return fig, ax


def _errors(ax: Axes, cells: list[Condition], x: str, fit: Callable | None, **style: Any) -> None:
    """Test error against each cell's `x`: mean ± sd over seeds as error bars, `fit` dashed."""
    cells = sorted(cells, key=lambda c: c.runs[0][x])
    xs = np.array([c.runs[0][x] for c in cells], dtype=float)
    stats = np.array([c.stat("test_acc")[:2] for c in cells])
    fit_label = f"{style['label']}, fit {fit.describe()}" if hasattr(fit, "describe") else None
    ax.errorbar(xs, 100 - 100 * stats[:, 0], yerr=100 * stats[:, 1], capsize=3, **style)
    if fit is not None and xs.size > 1:
        grid = np.geomspace(xs.min(), xs.max(), 100)
        ax.plot(grid, 100 * fit(grid), "--", color=style["color"], label=fit_label)


def plot_error_vs_data(a: Analysis) -> Figure:
    """Test error against training images, log-log: mean ± sd per cell, the fits dashed."""
    fitted = {(c["setting"], c["model"]): c["fit"] for c in a.curves if c["chosen"]}
    dashed = "; dashed: the fit" if fitted else ""
    quick = ": not how many a quick run saw" if a.quick else ""
    title = f"Test error vs training-set size: mean ± sd over seeds{dashed}"
    x, y = f"training images in the subset (log scale){quick}", "test error, % (log scale)"
    fig, ax = _figure(title, a, x, y)
    for key in sorted({(c.setting, c.model) for c in a.drawn}, key=lambda k: order((*k, 0))):
        cells = [c for c in a.drawn if (c.setting, c.model) == key]
        label = f"{MODEL_TITLES[key[1]]} {SETTING_TITLES[key[0]]}"
        style = dict(marker=MARKERS[key[1]], ls="none", color=COLORS[key], label=label)
        _errors(ax, cells, "train_images", fitted.get(key), **style)
    if a.drawn:
        _log(ax, "x", sorted({c.runs[0]["train_images"] for c in a.drawn}))
        _log(ax, "y")
        fig.legend(loc="outside right upper", fontsize=8)
    return fig


def plot_error_vs_parameters(a: Analysis) -> Figure:
    """Test error against parameters as trained, log-log, a line per setting and data size."""
    title = "Test error vs model size: mean ± sd over seeds; dashed: the joint fit"
    fig, ax = _figure(title, a, "parameters as trained (log scale)", "test error, % (log scale)")
    joints = {j["setting"]: j["fit"] for j in a.joints if not j["refused"]}
    sizes = sorted({c.runs[0]["train_images"] for c in a.drawn})
    for setting, (i, n) in itertools.product(SETTING_TITLES, enumerate(sizes)):
        if cells := [c for c in a.drawn if c.setting == setting and c.runs[0]["train_images"] == n]:
            fit = (fit := joints.get(setting)) and functools.partial(fit, n=n)
            label = f"{n:,} images, {SETTING_TITLES[setting]}"
            style = dict(marker="o", ls="-" if setting == "scratch" else ":", color=f"C{i}")
            _errors(ax, cells, "parameters", fit, label=label, **style)
    _log(ax, "x", sorted({c.runs[0]["parameters"] for c in a.drawn}))
    _log(ax, "y")
    fig.legend(loc="outside right upper", fontsize=8)
    return fig


def plot_pretrained_gap(a: Analysis) -> Figure:
    """Fine-tuned minus from-scratch test accuracy per data size, with its 95% interval."""
    title = "What ImageNet pre-training adds: fine-tuned − from scratch, 95% interval"
    fig, ax = _figure(title, a, "training images (log scale)", "test accuracy difference (points)")
    gaps = [c for c in a.comparisons if c["kind"] == "pretraining"]
    for model in MODEL_TITLES:
        if mine := [c for c in gaps if c["first"].model == model]:
            n = [c["first"].runs[0]["train_images"] for c in mine]
            diff = np.array([100 * c["diff"] for c in mine])
            bounds = np.array([100 * np.array(c.get("interval") or (c["diff"],) * 2) for c in mine])
            style = dict(marker=MARKERS[model], capsize=3, label=MODEL_TITLES[model])
            ax.errorbar(n, diff, yerr=np.abs(bounds - diff[:, None]).T, **style)
    ax.axhline(0, color="0.5", lw=0.8)
    _log(ax, "x", sorted({c["first"].runs[0]["train_images"] for c in gaps}))
    fig.legend(loc="outside right upper", fontsize=8)
    return fig


def write_scaling(a: Analysis, images_dir: str | Path | None) -> list[Path]:
    """Save the figures that apply under images_dir/scaling/ (None: images/ in the repository)."""
    folder = (REPO / "images" if images_dir is None else Path(images_dir)) / "scaling"
    plots = {"error_vs_data": plot_error_vs_data}
    if any(c["kind"] == "pretraining" for c in a.comparisons):
        plots["pretrained_gap"] = plot_pretrained_gap
    if len({c.model for c in a.drawn}) >= AXIS_SIZES:
        plots["error_vs_parameters"] = plot_error_vs_parameters
    return [save_figure(plot(a), folder / f"{name}.png") for name, plot in plots.items()]


def load(output_dir: str | Path | None, profile: str | None) -> Analysis:
    """The analysis of `output_dir` (None: runs/) for `profile` (None: that of most runs)."""
    output_dir = REPO / "runs" if output_dir is None else Path(output_dir)
    if profile is None:
        profile = max(PROFILES, key=lambda p: len(collect(output_dir, p)))
    return build(collect(output_dir, profile), profile)
