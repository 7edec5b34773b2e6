"""The scaling figures (test error against training-set size and against parameter count,
accuracy against time, the pretraining gap; for quick runs, test accuracy per cell), drawn from
one analysis record (`analysis.build`): the fits are the record's, never refitted here."""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from . import analysis
from .analysis import Analysis
from .config import PROFILES, REPO
from .data import fraction_title
from .plots import save_figure
from .results import (
    MODEL_TITLES,
    SETTING_TITLES,
    collect,
    group_conditions,
    parameters,
    split_configurations,
    split_weights,
)

MARKERS = dict(zip(MODEL_TITLES, "oDsvP^", strict=True))  # a marker per model
SETTING_COLORS = {"scratch": "tab:blue", "pretrained": "tab:orange"}
LINES = [(s, m) for s in SETTING_TITLES for m in MODEL_TITLES]
# a hue per model (tab20's pairs), dark from scratch and light fine-tuned: 12 distinct lines
LINE_COLORS = {
    (s, m): plt.get_cmap("tab20")(2 * j + i)
    for i, s in enumerate(SETTING_TITLES)
    for j, m in enumerate(MODEL_TITLES)
}
DATA_AXIS, ERROR_AXIS = "training images (log scale)", "test error, 1 − accuracy (log scale)"
Runs = list[dict[str, Any]]  # metrics records


def load_all(output_dir: str | Path | None, profile: str | None) -> Runs:
    """The complete runs under `output_dir` (None: runs/) of `profile` (None: the most runs),
    of the latest run's configuration and, fine-tuned, of its model's latest ImageNet weights
    (see results.split_configurations and split_weights)."""
    output_dir = REPO / "runs" if output_dir is None else Path(output_dir)
    if profile is None:
        profile = max(PROFILES, key=lambda p: len(collect(output_dir, p)))
    return split_weights(split_configurations(collect(output_dir, profile))[0])[0]


def profile_line(metrics: Runs) -> str:
    """The figures' second title line: the profile of their runs, named once."""
    profiles = sorted({m["profile"] for m in metrics})
    smoke = "short CPU smoke runs, not converged results"
    if profiles == ["quick"]:
        return f"quick profile: {smoke}"
    line = f"profile{'s' * (len(profiles) > 1)}: {', '.join(profiles) or 'none'}"
    return line + (f" (the quick ones: {smoke})" if "quick" in profiles else "")


def _finish(
    ax: Axes, xlabel: str, ylabel: str, title: str, metrics: Runs, empty: str = "no runs yet"
) -> Figure:
    """Axis labels, grid, the two-line title, the note `empty` across a figure where nothing
    was drawn, and a tight layout: every figure's last step."""
    if not ax.has_data():
        ax.text(0.5, 0.5, empty, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.set_title(f"{title}\n{profile_line(metrics)}", fontsize=9)
    ax.figure.tight_layout()
    return ax.figure


def line_label(setting: str, model: str) -> str:
    return f"{MODEL_TITLES[model]} {SETTING_TITLES[setting]}"


def _by_size(points: list[tuple[int, float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct sizes, and the mean and sample sd of the error over the runs at each."""
    groups: dict[int, list[float]] = defaultdict(list)
    for n, e in points:
        groups[n].append(e)
    sizes = sorted(groups)
    means = [statistics.fmean(groups[s]) for s in sizes]
    sds = [_sd(groups[s]) for s in sizes]
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


def plot_quick(a: Analysis) -> Figure:
    """Quick runs: test accuracy % per cell, markers only (bars of ± sd where a cell has
    several seeds). Every quick run trains on the same number of images, so there is no
    data-size axis: the cells are named, not placed by size."""
    _, ax = plt.subplots(figsize=(7.5, 5), dpi=110)
    named: set[tuple[str, str]] = set()
    for i, cell in enumerate(a.drawn):
        mean, sd, n = cell.stat("test_acc")
        key = (cell.setting, cell.model)
        ax.errorbar(
            [i],
            [100 * mean],
            yerr=[100 * sd] if n > 1 else None,
            marker=MARKERS[cell.model],
            ms=8,
            ls="none",
            color=LINE_COLORS[key],
            capsize=3,
            label=None if key in named else line_label(*key),
        )
        named.add(key)
    ax.set_xticks(range(len(a.drawn)), [fraction_title(c.fraction) for c in a.drawn], fontsize=10)
    if a.drawn:
        ax.legend(fontsize=10)
    seeds = sorted({c.stat("test_acc")[2] for c in a.drawn})
    told = "one seed, no error bars" if seeds == [1] else "mean ± sd over seeds"
    images = f"{a.quick_images[0]:,}" if len(a.quick_images) == 1 else "a few thousand"
    return _finish(
        ax,
        "the subset of the training images each run draws from (not how many it trains on)",
        "test accuracy (%)",
        f"Quick runs, test accuracy per cell ({told}): every run trains on {images} images,\n"
        "so the subsets' sizes are not a data-size effect",
        a.runs,
    )


def plot_error_vs_data(a: Analysis) -> Figure:
    """Test error against training images (log-log): mean ± sd over seeds as markers, and the
    record's curve of each line with 3+ sizes dashed (flat where AICc prefers), its formula in
    the legend. Quick runs: `plot_quick`."""
    if a.quick:
        return plot_quick(a)
    _, ax = plt.subplots(figsize=(7.5, 5), dpi=110)
    drawn: list[float] = []  # the extent of the error bars, for the y ticks
    for line in a.lines:
        color = LINE_COLORS[(line.setting, line.model)]
        sizes, means, sds = _by_size(line.points)
        drawn += [*(means - sds), *(means + sds)]
        label = line_label(line.setting, line.model)
        if line.curve:
            grid = np.geomspace(sizes[0], sizes[-1], 100)
            ax.plot(grid, line.curve.fit(grid), "--", color=color, alpha=0.8)
            label += f"; fit {line.curve.fit.describe()}{', not tested' * line.curve.exact}"
        ax.errorbar(
            sizes,
            means,
            yerr=sds,
            marker=MARKERS[line.model],
            ls="none",
            color=color,
            capsize=3,
            label=label,
        )
    if a.lines:
        _log_axis(ax, "x", sorted({n for line in a.lines for n, _ in line.points}), exact=True)
        _log_axis(ax, "y", drawn)
        ax.legend(fontsize=8)
    return _finish(
        ax,
        DATA_AXIS,
        ERROR_AXIS,
        "Test error vs training-set size: mean ± sd over seeds; dashed: fit (flat if AICc prefers)",
        a.runs,
    )


def model_size_points(metrics: Runs) -> dict[tuple[str, int], list[tuple[int, str, float, float]]]:
    """(setting, training images) -> (parameters, model, mean, sd of the test error over
    seeds) per model, sorted by parameter count."""
    groups: dict[tuple[str, int], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for m in metrics:
        groups[(m["setting"], int(m["train_images"]))][m["model"]].append(1 - m["test_acc"])
    size = {(m["setting"], m["model"]): parameters(m) for m in metrics}
    order = sorted(groups, key=lambda k: (k[0] != "scratch", k[1]))
    return {
        key: sorted(
            (size[(key[0], model)], model, statistics.fmean(e), _sd(e))
            for model, e in groups[key].items()
        )
        for key in order
    }


def _sd(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def plot_error_vs_parameters(a: Analysis) -> Figure:
    """Test error against parameter count (log-log) at each training-set size: mean ± sd over
    seeds, marker per model, colour per size, solid from scratch and dotted fine-tuned; dashed,
    the joint fit e(m, n) at that size where the runs identify it."""
    _, ax = plt.subplots(figsize=(7.5, 5), dpi=110)
    metrics = a.runs if a.quick else a.plotted
    fits = {j.setting: j.fit for j in a.joints if j.fit}
    lines = model_size_points(metrics)
    sizes = sorted({n for _, n in lines})
    drawn: list[float] = []
    for (setting, n), points in lines.items():
        params, models, means, sds = (np.array(v) for v in zip(*points, strict=True))
        color = f"C{sizes.index(n) % 10}"
        drawn += [*(means - sds), *(means + sds)]
        ax.errorbar(
            params,
            means,
            yerr=sds,
            ls="-" if setting == "scratch" else ":",
            color=color,
            capsize=3,
            label=f"{n:,} images, {SETTING_TITLES[setting]}",
        )
        for p, model, e in zip(params, models, means, strict=True):
            ax.plot(p, e, MARKERS[model], color=color)
        if setting in fits and params.size > 1:
            grid = np.geomspace(params[0], params[-1], 50)
            ax.plot(grid, fits[setting].fit(grid, n), "--", color=color, alpha=0.6)
    if lines:
        counts = sorted({p for points in lines.values() for p, *_ in points})
        _log_axis(ax, "x", counts, exact=True)
        ax.xaxis.set_ticks(counts, [f"{c / 1e6:.1f}M" for c in counts], rotation=45, fontsize=8)
        _log_axis(ax, "y", drawn)
        models = sorted({m["model"] for m in metrics}, key=list(MODEL_TITLES).index)
        for model in models:  # the marker key, apart from the lines' colours
            ax.plot([], [], MARKERS[model], color="0.3", label=MODEL_TITLES[model])
        ax.legend(fontsize=7)
    title = "Test error vs model size at each training-set size: mean ± sd over seeds"
    title += "; dashed: joint fit" if fits else ""
    return _finish(ax, "parameters as trained (log scale)", ERROR_AXIS, title, metrics)


def plot_accuracy_vs_time(metrics: Runs) -> Figure:
    """Test accuracy against wall time of every run: marker per model, colour per setting."""
    _, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for setting, model in LINES:
        runs = [m for m in metrics if m["setting"] == setting and m["model"] == model]
        if runs:
            ax.scatter(
                [m["wall_time_s"] for m in runs],
                [100 * m["test_acc"] for m in runs],
                marker=MARKERS[model],
                color=SETTING_COLORS[setting],
                alpha=0.8,
                label=line_label(setting, model),
            )
    if metrics:
        _log_axis(ax, "x", [m["wall_time_s"] for m in metrics])
        ax.legend(fontsize=8)
    title = "Test accuracy vs training time, one point per run"
    return _finish(ax, "wall time per run (s, log scale)", "test accuracy (%)", title, metrics)


def plot_pretrained_gap(metrics: Runs) -> Figure:
    """Fine-tuned minus from-scratch test accuracy (points) per training-set size and model."""
    _, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    cells = {(c.setting, c.model, c.fraction): c for c in group_conditions(metrics)}
    drawn: set[int] = set()
    for model in MODEL_TITLES:
        gaps = [  # (fine-tuned cell, scratch cell) at each fraction where the model has both
            (cell, cells[("scratch", model, f)])
            for (setting, m, f), cell in sorted(cells.items())
            if (setting, m) == ("pretrained", model) and ("scratch", model, f) in cells
        ]
        if not gaps:
            continue
        sizes = [p.runs[0]["train_images"] for p, _ in gaps]
        drawn.update(sizes)
        stats = [(p.stat("test_acc"), s.stat("test_acc")) for p, s in gaps]
        diff = [100 * (p[0] - s[0]) for p, s in stats]
        spread = [100 * np.hypot(p[1], s[1]) for p, s in stats]
        ax.errorbar(
            sizes, diff, yerr=spread, marker=MARKERS[model], capsize=3, label=MODEL_TITLES[model]
        )
    if drawn:
        _log_axis(ax, "x", sorted(drawn), exact=True)
        ax.axhline(0, color="0.5", lw=0.8)
        ax.legend(fontsize=8)
    return _finish(
        ax,
        DATA_AXIS,
        "fine-tuned − from scratch test accuracy (points)",
        "What ImageNet pre-training adds, per training-set size (bars: combined sd)",
        metrics,
        "no cell has both settings yet",
    )


def record(metrics: Runs) -> Analysis:
    """The analysis record of `metrics` (load_all's), quick when any run is."""
    quick = any(m["profile"] == "quick" for m in metrics)
    return analysis.build(metrics, "quick" if quick else "full")


def write_scaling(a: Analysis, images_dir: str | Path | None) -> list[Path]:
    """Save the four figures of the record under images_dir/scaling/ (None: images/ in the
    repository)."""
    folder = (REPO / "images" if images_dir is None else Path(images_dir)) / "scaling"
    return [
        save_figure(plot_error_vs_data(a), folder / "error_vs_data.png"),
        save_figure(plot_error_vs_parameters(a), folder / "error_vs_parameters.png"),
        save_figure(plot_accuracy_vs_time(a.plotted), folder / "accuracy_vs_time.png"),
        save_figure(plot_pretrained_gap(a.plotted), folder / "pretrained_gap.png"),
    ]
