"""Test error against training-set size: power-law fits, extrapolation, figures, observations."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from .config import PROFILES, REPO
from .data import fraction_title
from .fits import FLAT, PURE, Curve, analyse, exponent, extrapolate, welch
from .plots import save_figure
from .results import (
    MODEL_TITLES,
    SETTING_TITLES,
    Cell,
    collect,
    group_cells,
    split_configurations,
)

MARKERS = {"resnet18": "o", "resnet50": "s", "resnext50_32x4d": "^"}
SETTING_COLORS = {"scratch": "tab:blue", "pretrained": "tab:orange"}
LINES = [(s, m) for s in SETTING_TITLES for m in MODEL_TITLES]
LINE_COLORS = {line: f"C{i}" for i, line in enumerate(LINES)}

Points = list[tuple[int, float]]


def scaling_points(metrics: list[dict[str, Any]]) -> dict[tuple[str, str], Points]:
    """(setting, model) -> (training images, test error) of every run, sorted by size."""
    points: dict[tuple[str, str], Points] = defaultdict(list)
    for m in metrics:
        points[(m["setting"], m["model"])].append((int(m["train_images"]), 1 - m["test_acc"]))
    return {k: sorted(points[k]) for k in LINES if k in points}


def load_all(output_dir: str | Path | None, profile: str | None) -> list[dict[str, Any]]:
    """The complete runs under `output_dir` (None: runs/) of `profile` (None: the most runs),
    of the latest run's configuration (see results.split_configurations)."""
    output_dir = REPO / "runs" if output_dir is None else Path(output_dir)
    if profile is None:
        profile = max(PROFILES, key=lambda p: len(collect(output_dir, p)))
    return split_configurations(collect(output_dir, profile))[0]


def profile_line(metrics: list[dict[str, Any]]) -> str:
    """The figures' second title line: the profile of their runs, named once."""
    profiles = sorted({m["profile"] for m in metrics})
    smoke = "short CPU smoke runs, not converged results"
    if profiles == ["quick"]:
        return f"quick profile: {smoke}"
    line = f"profile{'s' * (len(profiles) > 1)}: {', '.join(profiles) or 'none'}"
    return line + (f" (the quick ones: {smoke})" if "quick" in profiles else "")


def _finish(
    fig: Figure, ax: Axes, xlabel: str, ylabel: str, title: str, metrics: list[dict[str, Any]]
) -> Figure:
    """Axis labels, grid, the two-line title and a tight layout, shared by every figure."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.set_title(f"{title}\n{profile_line(metrics)}", fontsize=9)
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
    curve of each line dashed (a · n^-b + c, or flat where AIC prefers a flat line), its
    formula in the legend."""
    fig, ax = plt.subplots(figsize=(7.5, 5), dpi=110)
    lines = scaling_points(metrics)
    drawn: list[float] = []  # the extent of the error bars, for the y ticks
    for (setting, model), points in lines.items():
        color = LINE_COLORS[(setting, model)]
        sizes, means, sds = _by_size(points)
        drawn += [*(means - sds), *(means + sds)]
        label = _label(setting, model)
        if sizes.size >= 2:
            curve = analyse(*zip(*points, strict=True), boot=0)
            grid = np.geomspace(sizes[0], sizes[-1], 100)
            ax.plot(grid, curve.fit(grid), "--", color=color, alpha=0.8)
            label += f"; fit {curve.fit.describe()}" + (", not tested" if curve.exact else "")
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
        "Test error vs training-set size: mean ± sd over seeds; dashed: fit (flat if AIC prefers)",
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


def _pct_interval(bounds: tuple[float, float] | None) -> str:
    return f"{100 * bounds[0]:.2f}–{100 * bounds[1]:.2f}" if bounds else "one seed: none"


def extrapolation_table(metrics: list[dict[str, Any]]) -> str:
    """Markdown: per line, a fit on all sizes but the largest against the largest's error, with
    the prediction's 95% bootstrap interval over seeds."""
    rows = [
        "| model | setting | fit on (training images) | curve (AIC) | largest n "
        "| predicted error % | 95% interval % | measured error % | measured inside? |",
        "|---|---|---|---|---:|---:|---:|---:|---|",
    ]
    for (setting, model), points in scaling_points(metrics).items():
        check = extrapolate(*zip(*points, strict=True))
        head = f"| {MODEL_TITLES[model]} | {SETTING_TITLES[setting]} "
        if check is None:
            rows.append(head + "| needs 3+ data sizes | – | – | – | – | – | – |")
            continue
        inside = "–"
        if check["interval"]:
            lo, hi = check["interval"]
            inside = "yes" if lo <= check["measured"] <= hi else "no"
        rows.append(
            head + f"| {', '.join(f'{s:,}' for s in check['fit_on'])} | {check['chosen']} "
            f"| {check['n']:,} | {100 * check['predicted']:.2f} "
            f"| {_pct_interval(check['interval'])} | {100 * check['measured']:.2f} | {inside} |"
        )
    return "\n".join(rows) + "\n"


def _acc(cell: Cell) -> str:
    mean, sd, n = cell.stat("test_acc")
    return f"{100 * mean:.2f} ± {100 * sd:.2f}% (n={n})" if n > 1 else f"{100 * mean:.2f}% (n=1)"


def _where(cell: Cell) -> str:
    return f"{fraction_title(cell.fraction)} of the data ({cell.runs[0]['train_images']:,} images)"


def welch_clause(first: Cell, second: Cell) -> str:
    """The stated test behind every 'beats' and 'helps': Welch's t-test on test accuracy over
    the seeds of two cells, at p < 0.05."""
    test = welch([r["test_acc"] for r in first.runs], [r["test_acc"] for r in second.runs])
    if test is None:
        return "single seed: untested (Welch's t-test needs two seeds or more on each side)"
    p = test[1]
    if p < 0.05:
        return f"Welch's t-test over seeds: p = {p:.2g} < 0.05, a difference beyond seed noise"
    return f"Welch's t-test over seeds: p = {p:.2g} ≥ 0.05, not a clear difference"


def _model_bullet(setting: str, small: Cell, big: Cell) -> str:
    m1, m2 = small.stat("test_acc")[0], big.stat("test_acc")[0]
    title = SETTING_TITLES[setting]
    head = f"{title[0].upper()}{title[1:]}, {_where(small)}: "
    sizes = f"(ResNet-50 {_acc(big)}, ResNet-18 {_acc(small)})"
    if m1 == m2:
        head += f"ResNet-18 and ResNet-50 tie {sizes}"
    else:
        win, lose = ("ResNet-50", "ResNet-18") if m2 > m1 else ("ResNet-18", "ResNet-50")
        head += f"{win} scores {100 * abs(m2 - m1):.2f} points above {lose} {sizes}"
    return f"{head}; {welch_clause(small, big)}."


def _gap_bullet(model: str, gaps: list[tuple[float, Cell, Cell]]) -> str:
    diffs = [(p.stat("test_acc")[0] - s.stat("test_acc")[0], f, p, s) for f, p, s in gaps]
    diff, _, p, s = max(diffs, key=lambda d: d[0])
    pair = (
        f"{100 * diff:+.2f} points (fine-tuned {_acc(p)}, from scratch {_acc(s)}; "
        f"{welch_clause(p, s)})"
    )
    name = MODEL_TITLES[model]
    if len(gaps) == 1:
        return (
            f"{name}: fine-tuned minus from scratch is {pair} at {_where(p)}, the only size "
            "with both settings."
        )
    by_size = ", ".join(f"{fraction_title(f)} {100 * d:+.2f}" for d, f, _, _ in diffs)
    if diff > 0:
        return (
            f"{name}: the largest gain from ImageNet pre-training is at {_where(p)}: {pair}; "
            f"gaps by size: {by_size} points."
        )
    return (
        f"{name}: fine-tuning never scores above training from scratch; the best gap is {pair} "
        f"at {_where(p)}; gaps by size: {by_size} points."
    )


def suggest_fractions(fractions: list[float], sizes: int = 5) -> str:
    """A --fractions value with at least `sizes` sizes, halving down from 100% through the
    ones already run, so that a 3-parameter curve has sizes left over to be tested on."""
    wanted = set(fractions) | {2.0**-k for k in range(int(np.ceil(-np.log2(min(fractions)))) + 1)}
    while len(wanted) < sizes:
        wanted.add(min(wanted) / 2)
    return ",".join(fraction_title(f) for f in sorted(wanted))


def _span(lo: float, hi: float, fmt: Callable[[float], str]) -> str:
    return f"{fmt(lo)}–{fmt(hi)}"


def pct(value: float) -> str:
    return f"{100 * value:.2f}"


def _curve_text(curve: Curve, big: int) -> str:
    """The fitted curve, b, e_N and β_N with their 95% bootstrap intervals over seeds."""
    e_n = f"Hoiem et al.'s e_N = {pct(curve.e_n)}% at N = {big:,}"
    beta = f"β_N = {pct(curve.beta_n)} points of error per doubling of the data at N"
    if curve.e_n_interval is None:
        return f"{curve.fit.describe()}; {e_n}; {beta}; one seed at some size, so no intervals"
    e_n += f" (95% bootstrap over seeds {_span(*curve.e_n_interval, pct)}%)"
    beta += f" ({_span(*curve.beta_n_interval, pct)})"
    if curve.chosen == FLAT:
        return f"{curve.fit.describe()}; {e_n}"
    b = f"b = {exponent(curve.fit.b)} (95% bootstrap over seeds {_span(*curve.b, exponent)})"
    return f"{curve.fit.describe()}, {b}; {e_n}; {beta}"


def _exponent_bullet(
    setting: str, model: str, points: Points, fractions: list[float]
) -> str | None:
    n, err = zip(*points, strict=True)
    sizes = sorted(set(n))
    if len(sizes) < 3:
        return None
    curve = analyse(n, err)
    scores = ", ".join(f"{name} {value:.1f}" for name, value in curve.aic.items())
    text = (
        f"{_label(setting, model)} ({len(points)} runs at {len(sizes)} sizes, "
        f"{sizes[0]:,}–{sizes[-1]:,} images): AIC ({scores}; a curve with more parameters must "
        f"lower it by more than 2) prefers the {curve.chosen}"
    )
    if curve.chosen == FLAT:
        text += ", so these runs show no fall of test error with more training images"
    text += f"; {_curve_text(curve, sizes[-1])}"
    if curve.exact:
        text += (
            f"; with {len(sizes)} sizes the 3-parameter curve passes through the mean at every "
            "size, so its power-law form is not tested: "
            f"`--fractions {suggest_fractions(fractions)}` would test it"
        )
    elif curve.chosen != FLAT:
        text += f" (AIC prefers {'no floor, c = 0' if curve.chosen == PURE else 'a floor c > 0'})"
    return text + "."


def observations(metrics: list[dict[str, Any]]) -> list[str]:
    """Plain-English statements generated from the numbers: model against model per size,
    where pre-training helps most, and the fitted curves, each with its stated test."""
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
        fractions = sorted(
            {m["data_fraction"] for m in metrics if (m["setting"], m["model"]) == (setting, model)}
        )
        bullet = _exponent_bullet(setting, model, points, fractions)
        if bullet:
            out.append(bullet)
    return out or ["No runs to compare yet."]
