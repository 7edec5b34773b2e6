"""Test error against training-set size: power-law fits, extrapolation, figures, observations."""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator
from numpy.typing import ArrayLike

from .config import PROFILES, REPO
from .data import fraction_title
from .plots import save_figure
from .results import MODEL_TITLES, SETTING_TITLES, Cell, collect, group_cells

EPS = 1e-6  # errors of 0 are clipped to this so that their logarithm exists
GRID = 200  # candidate floors c in [0, min(err)) ...
REFINE = 3  # ... then this many finer grids around the best one
MARKERS = {"resnet18": "o", "resnet50": "s", "resnext50_32x4d": "^"}
SETTING_COLORS = {"scratch": "tab:blue", "pretrained": "tab:orange"}
LINES = [(s, m) for s in SETTING_TITLES for m in MODEL_TITLES]
LINE_COLORS = {line: f"C{i}" for i, line in enumerate(LINES)}

Points = list[tuple[int, float]]


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
        return f"e(n) = {self.a:.3g} · n^-{_exponent(self.b)} + {self.c:.3g}"


def _exponent(b: float) -> str:
    """b with 2 decimals, or 1 significant digit when that would read 0.00."""
    return f"{b:.2f}" if b >= 0.005 else f"{b:.1g}"


def _sse(n: np.ndarray, err: np.ndarray, c: float) -> tuple[float, float, float]:
    """For the floor c: the log-log line fit (a, b) and its squared error in err space."""
    design = np.column_stack([np.log(n), np.ones_like(n)])
    (slope, intercept), *_ = np.linalg.lstsq(design, np.log(err - c), rcond=None)
    a, b = float(np.exp(intercept)), float(-slope)
    with np.errstate(over="ignore", invalid="ignore"):
        sse = float(np.sum((a * n**-b + c - err) ** 2))
    if b <= 0 or not np.isfinite(a) or not np.isfinite(sse):
        return a, b, np.inf
    return a, b, sse


def fit_power_law(n: ArrayLike, err: ArrayLike) -> PowerLaw:
    """Fit e(n) = a · n^-b + c with a, b >= 0 and 0 <= c < min(err) (Hestness et al. 2017).

    Profiles over the floor c; for each c, a least-squares line through log(err - c) against
    log(n) gives a and b, and the c with the least squared error in err space wins. Two sizes
    fit c = 0; one size, or errors that do not fall with n, give the flat fit c = mean(err).
    """
    n = np.asarray(n, dtype=float).ravel()
    err = np.clip(np.asarray(err, dtype=float).ravel(), EPS, None)
    if n.size == 0 or n.size != err.size or np.any(n <= 0):
        raise ValueError("need as many positive sizes n as errors, at least one")
    mean = float(err.mean())
    best = (0.0, 0.0, mean, float(np.sum((err - mean) ** 2)))
    sizes = np.unique(n).size
    if sizes < 2:
        return PowerLaw(0.0, 0.0, mean, n.size)
    if sizes == 2:
        a, b, sse = _sse(n, err, 0.0)
        return PowerLaw(a, b, 0.0, n.size) if sse < best[3] else PowerLaw(*best[:3], n.size)
    grid = np.linspace(0.0, err.min() * (1 - 1e-9), GRID)
    for _ in range(REFINE + 1):
        fits = [_sse(n, err, c) for c in grid]
        i = int(np.argmin([f[2] for f in fits]))
        if fits[i][2] < best[3]:
            best = (fits[i][0], fits[i][1], float(grid[i]), fits[i][2])
        grid = np.linspace(grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)], 41)
    a, b, c, _ = best
    return PowerLaw(a, b, c, n.size)


def extrapolation_check(n: ArrayLike, err: ArrayLike) -> dict[str, Any] | None:
    """Fit on every size but the largest and predict it; None with fewer than 3 sizes."""
    n = np.asarray(n, dtype=float).ravel()
    err = np.asarray(err, dtype=float).ravel()
    sizes = np.unique(n)
    if sizes.size < 3:
        return None
    largest = sizes[-1]
    predicted = fit_power_law(n[n < largest], err[n < largest])(largest)
    measured = float(err[n == largest].mean())
    return {
        "fit_on": [int(s) for s in sizes[:-1]],
        "n": int(largest),
        "predicted": predicted,
        "measured": measured,
        "abs_error": abs(predicted - measured),
    }


def scaling_points(metrics: list[dict[str, Any]]) -> dict[tuple[str, str], Points]:
    """(setting, model) -> (training images, test error) of every run, sorted by size."""
    points: dict[tuple[str, str], Points] = defaultdict(list)
    for m in metrics:
        points[(m["setting"], m["model"])].append((int(m["train_images"]), 1 - m["test_acc"]))
    return {k: sorted(points[k]) for k in LINES if k in points}


def load_all(output_dir: str | Path | None, profile: str | None) -> list[dict[str, Any]]:
    """The complete runs under `output_dir` (None: runs/) of `profile` (None: the most runs)."""
    output_dir = REPO / "runs" if output_dir is None else Path(output_dir)
    if profile is None:
        profile = max(PROFILES, key=lambda p: len(collect(output_dir, p)))
    return collect(output_dir, profile)


def _title(ax: Axes, title: str, metrics: list[dict[str, Any]]) -> None:
    profiles = sorted({m["profile"] for m in metrics})
    line = f"profile: {', '.join(profiles) or 'none'}"
    if "quick" in profiles:
        line += " [quick profile: short CPU smoke runs, not converged results]"
    ax.set_title(f"{title}\n{line}", fontsize=9)


def _finish(
    fig: Figure, ax: Axes, xlabel: str, ylabel: str, title: str, metrics: list[dict[str, Any]]
) -> Figure:
    """Axis labels, grid, the two-line title and a tight layout, shared by every figure."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    _title(ax, title, metrics)
    fig.tight_layout()
    return fig


def _label(setting: str, model: str) -> str:
    return f"{MODEL_TITLES[model]} {SETTING_TITLES[setting]}"


def _note(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")


def _by_size(points: Points) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct sizes, and the mean and sample sd of the error over the runs at each."""
    groups: dict[int, list[float]] = defaultdict(list)
    for n, e in points:
        groups[n].append(e)
    sizes = sorted(groups)
    means = [statistics.fmean(groups[s]) for s in sizes]
    sds = [statistics.stdev(groups[s]) if len(groups[s]) > 1 else 0.0 for s in sizes]
    return np.array(sizes), np.array(means), np.array(sds)


def _round_ticks(lo: float, hi: float) -> list[float]:
    """Three to eight round numbers in [lo, hi] for a log axis (2 significant digits at worst)."""
    decades = range(int(np.floor(np.log10(lo))), int(np.ceil(np.log10(hi))) + 1)
    for steps in ((1, 2, 5), (1, 1.5, 2, 3, 5, 7)):
        ticks = [float(f"{m * 10.0**k:.2g}") for k in decades for m in steps]
        ticks = [t for t in ticks if lo <= t <= hi]
        if 3 <= len(ticks) <= 8:
            return ticks
    return sorted({float(f"{v:.2g}") for v in np.geomspace(lo, hi, 6)})


def _log_axis(ax: Axes, which: str, values: list[float], exact: bool = False) -> None:
    """Log scale on axis `which` ('x' or 'y'), labelled in plain numbers at `values` when
    `exact`, else at about six round numbers spanning them."""
    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    axis = ax.xaxis if which == "x" else ax.yaxis
    ticks = [v for v in values if v > 0]
    if not exact and ticks:
        ticks = _round_ticks(min(ticks), max(ticks))
    axis.set_ticks(ticks, [f"{v:,.0f}" if v >= 100 else f"{v:.3g}" for v in ticks])
    axis.set_minor_locator(NullLocator())


def plot_error_vs_data(metrics: list[dict[str, Any]]) -> Figure:
    """Test error against training images (log-log): mean ± sd over seeds as markers, and the
    power-law fit of each line dashed, its formula in the legend."""
    fig, ax = plt.subplots(figsize=(7.5, 5), dpi=110)
    lines = scaling_points(metrics)
    drawn: list[float] = []  # the extent of the error bars, for the y ticks
    for (setting, model), points in lines.items():
        color = LINE_COLORS[(setting, model)]
        sizes, means, sds = _by_size(points)
        drawn += [*(means - sds), *(means + sds)]
        label = _label(setting, model)
        if sizes.size >= 2:
            fit = fit_power_law(*zip(*points, strict=True))
            grid = np.geomspace(sizes[0], sizes[-1], 100)
            ax.plot(grid, fit(grid), "--", color=color, alpha=0.8)
            label += f"; fit {fit.describe()}"
        ax.errorbar(
            sizes,
            means,
            yerr=sds,
            marker=MARKERS[model],
            ls="none",
            color=color,
            capsize=3,
            label=label,
        )
    if lines:
        _log_axis(ax, "x", sorted({n for p in lines.values() for n, _ in p}), exact=True)
        _log_axis(ax, "y", drawn)
        ax.legend(fontsize=7)
    else:
        _note(ax, "no runs yet")
    return _finish(
        fig,
        ax,
        "training images (log scale)",
        "test error, 1 − accuracy (log scale)",
        "Test error vs training-set size: mean ± sd over seeds; dashed: power-law fit",
        metrics,
    )


def plot_accuracy_vs_time(metrics: list[dict[str, Any]]) -> Figure:
    """Test accuracy against wall time of every run: marker per model, colour per setting."""
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for setting, model in LINES:
        runs = [m for m in metrics if m["setting"] == setting and m["model"] == model]
        if runs:
            ax.scatter(
                [m["wall_time_s"] for m in runs],
                [100 * m["test_acc"] for m in runs],
                marker=MARKERS[model],
                color=SETTING_COLORS[setting],
                alpha=0.8,
                label=_label(setting, model),
            )
    if metrics:
        _log_axis(ax, "x", [m["wall_time_s"] for m in metrics])
        ax.legend(fontsize=8)
    else:
        _note(ax, "no runs yet")
    return _finish(
        fig,
        ax,
        "wall time per run (s, log scale)",
        "test accuracy (%)",
        "Test accuracy vs training time, one point per run",
        metrics,
    )


def _cells(metrics: list[dict[str, Any]]) -> dict[tuple[str, str, float], Cell]:
    return {(c.setting, c.model, c.fraction): c for c in group_cells(metrics)}


def _gaps(cells: dict[tuple[str, str, float], Cell], model: str) -> list[tuple[float, Cell, Cell]]:
    """(fraction, pretrained cell, scratch cell) for the sizes where `model` has both."""
    fractions = sorted({f for _, m, f in cells if m == model})
    return [
        (f, cells[("pretrained", model, f)], cells[("scratch", model, f)])
        for f in fractions
        if ("pretrained", model, f) in cells and ("scratch", model, f) in cells
    ]


def plot_pretrained_gap(metrics: list[dict[str, Any]]) -> Figure:
    """Fine-tuned minus from-scratch test accuracy (points) per training-set size and model."""
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    cells = _cells(metrics)
    drawn: set[int] = set()
    for model in MODEL_TITLES:
        gaps = _gaps(cells, model)
        if not gaps:
            continue
        sizes = [p.runs[0]["train_images"] for _, p, _ in gaps]
        drawn.update(sizes)
        stats = [(p.stat("test_acc"), s.stat("test_acc")) for _, p, s in gaps]
        diff = [100 * (p[0] - s[0]) for p, s in stats]
        spread = [100 * np.hypot(p[1], s[1]) for p, s in stats]
        ax.errorbar(
            sizes, diff, yerr=spread, marker=MARKERS[model], capsize=3, label=MODEL_TITLES[model]
        )
    if drawn:
        _log_axis(ax, "x", sorted(drawn), exact=True)
        ax.axhline(0, color="0.5", lw=0.8)
        ax.legend(fontsize=8)
    else:
        _note(ax, "no cell has both settings yet")
    return _finish(
        fig,
        ax,
        "training images (log scale)",
        "fine-tuned − from scratch test accuracy (points)",
        "What ImageNet pre-training adds, per training-set size (bars: combined sd)",
        metrics,
    )


def write_scaling(metrics: list[dict[str, Any]], images_dir: str | Path | None) -> list[Path]:
    """Save the three figures under images_dir/scaling/ (None: images/ in the repository)."""
    folder = (REPO / "images" if images_dir is None else Path(images_dir)) / "scaling"
    return [
        save_figure(plot_error_vs_data(metrics), folder / "error_vs_data.png"),
        save_figure(plot_accuracy_vs_time(metrics), folder / "accuracy_vs_time.png"),
        save_figure(plot_pretrained_gap(metrics), folder / "pretrained_gap.png"),
    ]


def extrapolation_table(metrics: list[dict[str, Any]]) -> str:
    """Markdown: per line, a fit on all sizes but the largest against the largest's error."""
    rows = [
        "| model | setting | fit on (training images) | largest n | predicted error % "
        "| measured error % | predicted − measured (points) |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for (setting, model), points in scaling_points(metrics).items():
        check = extrapolation_check(*zip(*points, strict=True))
        head = f"| {MODEL_TITLES[model]} | {SETTING_TITLES[setting]} "
        if check is None:
            rows.append(head + "| needs 3+ data sizes | – | – | – | – |")
            continue
        rows.append(
            head + f"| {', '.join(f'{s:,}' for s in check['fit_on'])} "
            f"| {check['n']:,} | {100 * check['predicted']:.2f} "
            f"| {100 * check['measured']:.2f} "
            f"| {100 * (check['predicted'] - check['measured']):+.2f} |"
        )
    return "\n".join(rows) + "\n"


def _acc(cell: Cell) -> str:
    mean, sd, n = cell.stat("test_acc")
    return f"{100 * mean:.2f} ± {100 * sd:.2f}% (n={n})" if n > 1 else f"{100 * mean:.2f}% (n=1)"


def _where(cell: Cell) -> str:
    return f"{fraction_title(cell.fraction)} of the data ({cell.runs[0]['train_images']:,} images)"


def _model_bullet(setting: str, small: Cell, big: Cell) -> str:
    (m1, sd1, n1), (m2, sd2, n2) = small.stat("test_acc"), big.stat("test_acc")
    title = SETTING_TITLES[setting]
    head = f"{title[0].upper()}{title[1:]}, {_where(small)}: "
    sizes = f"(ResNet-50 {_acc(big)}, ResNet-18 {_acc(small)})"
    if m1 == m2:
        head += f"ResNet-18 and ResNet-50 tie {sizes}"
    else:
        win, lose = ("ResNet-50", "ResNet-18") if m2 > m1 else ("ResNet-18", "ResNet-50")
        head += f"{win} beats {lose} by {100 * abs(m2 - m1):.2f} points {sizes}"
    if min(n1, n2) < 2:
        return head + "; single seed: noise unknown."
    spread = f"(sd {100 * sd2:.2f} + {100 * sd1:.2f} points)"
    if abs(m2 - m1) > sd1 + sd2:
        return head + f"; the difference exceeds the seed-to-seed spread {spread}."
    return head + f"; the difference is within the seed-to-seed spread {spread}, not a clear win."


def _gap_bullet(model: str, gaps: list[tuple[float, Cell, Cell]]) -> str:
    diffs = [(p.stat("test_acc")[0] - s.stat("test_acc")[0], f, p, s) for f, p, s in gaps]
    diff, _, p, s = max(diffs, key=lambda d: d[0])
    pair = f"{100 * diff:+.2f} points (fine-tuned {_acc(p)}, from scratch {_acc(s)})"
    name = MODEL_TITLES[model]
    if len(gaps) == 1:
        return (
            f"{name}: fine-tuned minus from scratch is {pair} at {_where(p)}, the only size "
            "with both settings."
        )
    by_size = ", ".join(f"{fraction_title(f)} {100 * d:+.2f}" for d, f, _, _ in diffs)
    if diff > 0:
        return (
            f"{name}: ImageNet pre-training helps most at {_where(p)}: {pair}; "
            f"gaps by size: {by_size} points."
        )
    return (
        f"{name}: fine-tuning never beats training from scratch; the best gap is {pair} "
        f"at {_where(p)}; gaps by size: {by_size} points."
    )


def _exponent_bullet(setting: str, model: str, points: Points) -> str | None:
    n, err = zip(*points, strict=True)
    sizes = sorted(set(n))
    if len(sizes) < 3:
        return None
    fit = fit_power_law(n, err)
    span = f"{len(points)} runs at {len(sizes)} sizes, {sizes[0]:,}–{sizes[-1]:,} images"
    if fit.flat:
        return (
            f"{_label(setting, model)}: test error does not fall with more training images "
            f"({span}; flat fit, {fit.describe()})."
        )
    text = (
        f"{_label(setting, model)}: fitted scaling exponent b = {_exponent(fit.b)} "
        f"({fit.describe()}; {span})"
    )
    if len(sizes) == 3:
        text += "; 3 sizes for 3 free parameters, so b is loosely determined"
    check = extrapolation_check(n, err)
    if check is not None:
        text += (
            f"; fitted without the largest size, it predicts {100 * check['predicted']:.2f}% "
            f"error there against {100 * check['measured']:.2f}% measured"
        )
    return text + "."


def observations(metrics: list[dict[str, Any]]) -> list[str]:
    """Plain-English statements generated from the numbers: model against model per size,
    where pre-training helps most, and the fitted exponents."""
    out = []
    if any(m["profile"] == "quick" for m in metrics):
        out.append(
            "These are quick-profile runs (short CPU smoke runs, not converged results): "
            "the statements below describe the smoke test, not the models."
        )
    cells = _cells(metrics)
    for setting in SETTING_TITLES:
        fractions = sorted({f for s, _, f in cells if s == setting})
        out += [
            _model_bullet(setting, cells[(setting, "resnet18", f)], cells[(setting, "resnet50", f)])
            for f in fractions
            if (setting, "resnet18", f) in cells and (setting, "resnet50", f) in cells
        ]
    for model in MODEL_TITLES:
        gaps = _gaps(cells, model)
        if gaps:
            out.append(_gap_bullet(model, gaps))
    for (setting, model), points in scaling_points(metrics).items():
        bullet = _exponent_bullet(setting, model, points)
        if bullet:
            out.append(bullet)
    return out or ["No runs to compare yet."]
