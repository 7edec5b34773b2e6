"""What the runs say in words: the extrapolation checks (over data size, and of the joint fit over
data and model size) and the observations, each claim with its stated test (the fits are in
`fits.py`, the figures in `scaling.py`)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .data import fraction_title
from .fits import (
    FLAT,
    PURE,
    Curve,
    Joint,
    analyse,
    analyse_joint,
    exponent,
    extrapolate,
    joint_leave_out,
    joint_refusal,
    welch,
)
from .results import MODEL_TITLES, SETTING_TITLES, Condition, parameters, weights_title
from .scaling import (
    Points,
    conditions_by_key,
    joint_points,
    line_label,
    pretraining_gaps,
    scaling_points,
)


def _pct_interval(bounds: tuple[float, float] | None) -> str:
    return f"{100 * bounds[0]:.2f}–{100 * bounds[1]:.2f}" if bounds else "one seed: none"


def extrapolation_table(metrics: list[dict[str, Any]]) -> str:
    """Markdown: per line, a fit on all sizes but the largest against the largest's error, with
    the prediction's 95% bootstrap interval over seeds; for quick runs, why there is none."""
    if any(m["profile"] == "quick" for m in metrics):
        return "Quick runs measure no data effect, so nothing is fitted (see the observations).\n"
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


def millions(count: float) -> str:
    return f"{count / 1e6:.1f}M"


@dataclass(frozen=True)
class JointCheck:
    """One setting's joint fit over data and model size, or why it is not tested, and its two
    leave-one-out checks (fits.joint_leave_out's records)."""

    setting: str
    models: dict[int, str]  # parameter count -> model title
    sizes: list[int]
    runs: int
    refused: str  # '' when fitted
    fit: Joint | None
    left_out: dict[str, dict[str, Any]]  # "model" and "size" -> the check


def joint_checks(metrics: list[dict[str, Any]]) -> list[JointCheck]:
    """Per setting with runs of two or more models at two or more sizes, the joint fit and its
    leave-one-out checks, or why it is not tested (none for quick runs: they measure no
    effect)."""
    if any(m["profile"] == "quick" for m in metrics):
        return []
    out = []
    for setting, (m, n, err) in joint_points(metrics).items():
        if np.unique(m).size < 2 or np.unique(n).size < 2:
            continue  # one model or one size: no joint question to ask
        runs = [r for r in metrics if r["setting"] == setting]
        titles = tuple({parameters(r): MODEL_TITLES[r["model"]] for r in runs}.items())
        out.append(_joint_check(setting, tuple(m), tuple(n), tuple(err), titles))
    return out


@functools.lru_cache(maxsize=8)
def _joint_check(
    setting: str, m: tuple, n: tuple, err: tuple, titles: tuple[tuple[int, str], ...]
) -> JointCheck:
    """One setting's joint check, cached: a report asks for it in its summary, its README
    section and its observations, and each costs three bootstraps."""
    m, n, err = (np.array(v) for v in (m, n, err))
    refused = joint_refusal(m, n)
    return JointCheck(
        setting=setting,
        models=dict(titles),
        sizes=[int(v) for v in np.unique(n)],
        runs=int(n.size),
        refused=refused,
        fit=None if refused else analyse_joint(m, n, err),
        left_out={} if refused else {a: joint_leave_out(m, n, err, a) for a in AXES},
    )


AXES = {"model": "the largest model", "size": "the largest training-set size"}


def _left_out_name(check: JointCheck, axis: str, value: int) -> str:
    return (
        f"{check.models[value]}, {millions(value)} parameters"
        if axis == "model"
        else f"{value:,} images"
    )


def joint_table(metrics: list[dict[str, Any]]) -> str:
    """Markdown: per setting, the joint fit with its 95% bootstrap intervals over seeds, then
    each leave-one-out check: the fit without the largest model (or size) against the
    measured error of every left-out cell; 'not tested' with the reason where the points
    cannot identify the form."""
    if any(m["profile"] == "quick" for m in metrics):
        return (
            "Quick runs measure no model-size effect, so nothing is fitted (see the "
            "observations).\n"
        )
    checks = joint_checks(metrics)
    if not checks:
        return "No setting has runs of two or more models at two or more sizes: no joint fit.\n"
    fits = ["| setting | runs | joint fit | alpha | beta | c % |", "|---|---:|---|---|---|---|"]
    cells = [
        "| setting | fitted without | left-out cell | predicted error % | 95% interval % "
        "| measured error % | measured inside? |",
        "|---|---|---|---:|---:|---:|---|",
    ]
    for check in checks:
        head = f"| {SETTING_TITLES[check.setting]} "
        if check.refused:
            fits.append(head + f"| {check.runs} | not tested: {check.refused} | – | – | – |")
            continue
        joint = check.fit
        fits.append(
            head + f"| {check.runs} | {joint.fit.describe()} "
            f"| {_exponent_interval(joint.fit.alpha, joint.alpha)} "
            f"| {_exponent_interval(joint.fit.beta, joint.beta)} "
            f"| {pct(joint.fit.c)} ({_pct_interval(joint.c)}) |"
        )
        for axis, result in check.left_out.items():
            name = _left_out_name(check, axis, result["left_out"])
            if not result["tested"]:
                cells.append(head + f"| {name} | not tested: {result['reason']} | – | – | – | – |")
                continue
            for cell in result["cells"]:
                inside = {None: "–", True: "yes", False: "no"}[cell["inside"]]
                cells.append(
                    head + f"| {name} | {check.models[cell['m']]} at {cell['n']:,} images "
                    f"| {pct(cell['predicted'])} | {_pct_interval(cell['interval'])} "
                    f"| {pct(cell['measured'])} | {inside} |"
                )
    return "\n".join(fits) + "\n\n" + "\n".join(cells) + "\n"


def _exponent_interval(value: float, bounds: tuple[float, float] | None) -> str:
    span = _span(*bounds, exponent) if bounds else "one seed: none"
    return f"{exponent(value)} ({span})"


def _joint_bullet(check: JointCheck) -> str:
    """The joint fit in words: the curve, its exponents with intervals, and the two checks."""
    counts = sorted(check.models)
    head = (
        f"Joint fit over data and model size, {SETTING_TITLES[check.setting]} (Rosenfeld et "
        "al. 2020's e(m, n) = a · n^-alpha + b · m^-beta + c, m parameters, n training images; "
        f"{check.runs} runs, {len(counts)} models of {millions(counts[0])}–"
        f"{millions(counts[-1])} parameters at {len(check.sizes)} training-set sizes)"
    )
    if check.refused:
        return f"{head}: not tested: {check.refused}."
    joint = check.fit
    text = f"{head}: {joint.fit.describe()}"
    if joint.alpha is None:
        text += "; one seed in some cell, so no intervals"
    else:
        text += (
            f", alpha {_exponent_interval(joint.fit.alpha, joint.alpha)}, beta "
            f"{_exponent_interval(joint.fit.beta, joint.beta)} (95% bootstrap over seeds)"
        )
    for axis, result in check.left_out.items():
        name = _left_out_name(check, axis, result["left_out"])
        if not result["tested"]:
            text += f"; fitted without {AXES[axis]} ({name}): not tested, {result['reason']}"
            continue
        inside = [c["inside"] for c in result["cells"]]
        verdict = (
            "no interval (one seed in some cell)"
            if None in inside
            else f"{sum(inside)} of {len(inside)} left-out cells measured inside the 95% interval"
        )
        text += f"; fitted without {AXES[axis]} ({name}): {verdict}"
    return text + "."


def _acc(cell: Condition) -> str:
    mean, sd, n = cell.stat("test_acc")
    return f"{100 * mean:.2f} ± {100 * sd:.2f}% (n={n})" if n > 1 else f"{100 * mean:.2f}% (n=1)"


def _where(cell: Condition) -> str:
    return f"{fraction_title(cell.fraction)} of the data ({cell.runs[0]['train_images']:,} images)"


def welch_clause(first: Condition, second: Condition) -> str:
    """The stated test behind every 'beats' and 'helps': Welch's t-test on test accuracy over
    the seeds of two cells, at p < 0.05."""
    test = welch([r["test_acc"] for r in first.runs], [r["test_acc"] for r in second.runs])
    if test is None:
        return "single seed: untested (Welch's t-test needs two seeds or more on each side)"
    p = test[1]
    if p < 0.05:
        return f"Welch's t-test over seeds: p = {p:.2g} < 0.05, a difference beyond seed noise"
    return f"Welch's t-test over seeds: p = {p:.2g} ≥ 0.05, not a clear difference"


def _model_bullet(setting: str, small: Condition, big: Condition) -> str:
    m1, m2 = small.stat("test_acc")[0], big.stat("test_acc")[0]
    title = SETTING_TITLES[setting]
    head = f"{title[0].upper()}{title[1:]}, {_where(small)}: "
    sizes = f"(ResNet-50 {_acc(big)}, ResNet-18 {_acc(small)})"
    w1, w2 = weights_title(small.runs[0]), weights_title(big.runs[0])
    if w1 != w2:  # e.g. V2 for ResNet-50 (a stronger ImageNet recipe), V1 for ResNet-18
        return (
            f"{head}ResNet-18 and ResNet-50 started from different ImageNet weights ({w1} and "
            f"{w2}) {sizes}: the difference mixes model size with the pretraining recipe, so "
            "it is not compared."
        )
    if m1 == m2:
        head += f"ResNet-18 and ResNet-50 tie {sizes}"
    else:
        win, lose = ("ResNet-50", "ResNet-18") if m2 > m1 else ("ResNet-18", "ResNet-50")
        head += f"{win} scores {100 * abs(m2 - m1):.2f} points above {lose} {sizes}"
    return f"{head}; {welch_clause(small, big)}."


def _gap_bullet(model: str, gaps: list[tuple[float, Condition, Condition]]) -> str:
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
        f"{line_label(setting, model)} ({len(points)} runs at {len(sizes)} sizes, "
        f"{sizes[0]:,}–{sizes[-1]:,} images): AIC ({scores}; a curve with more parameters must "
        f"lower it by more than 2) prefers the {curve.chosen}"
    )
    if curve.chosen == FLAT:
        text += ", so these runs show no fall of test error with more training images"
    kept = "reported with its floor, which keeps b unbiased where the truth has one: "
    text += f"; {kept if curve.chosen == PURE else ''}{_curve_text(curve, sizes[-1])}"
    if curve.exact:
        text += (
            f"; with {len(sizes)} sizes the 3-parameter curve passes through the mean at every "
            "size, so its power-law form is not tested: "
            f"`--fractions {suggest_fractions(fractions)}` would test it"
        )
    elif curve.chosen != FLAT:
        text += f" (AIC prefers {'no floor, c = 0' if curve.chosen == PURE else 'a floor c > 0'})"
    return text + "."


def quick_note(metrics: list[dict[str, Any]]) -> str:
    """What quick-profile runs show: that the pipeline works, and no effect (RECIPES, quick)."""
    images = sorted(
        {
            len(m["history"]) * m["steps_per_epoch"] * m["config"]["batch_size"]
            for m in metrics
            if "steps_per_epoch" in m and "config" in m
        }
    )
    budget = (
        "a small budget"
        if not images
        else f"the same {images[0]:,} images"
        if len(images) == 1
        else f"{images[0]:,} to {images[-1]:,} images"
    )
    return (
        "Quick profile: these runs check that the pipeline works end to end, nothing more. "
        f"Every run trains on {budget} whatever its data size, far from convergence, so the "
        "differences between sizes, models and settings are not data, model-size or "
        "pretraining effects: none is stated, tested or fitted here. The full profile "
        "(`--profile full`, on a GPU) measures them."
    )


def budget_bound_bullets(cells: dict[tuple[str, str, float], Condition]) -> list[str]:
    """One bullet naming the cells whose best evaluated epoch is the last one in most of their
    seeds: runs still improving when their budget ended, so more epochs would likely raise
    them and their comparison measures the budget as well as the model; none such, no bullet."""
    bound = []
    for (setting, model, fraction), cell in cells.items():
        last = sum(r["best_epoch"] == r["epochs"] for r in cell.runs)
        if last > len(cell.runs) / 2:
            bound.append(
                f"{MODEL_TITLES[model]} {SETTING_TITLES[setting]} at {fraction_title(fraction)} "
                f"({last} of {len(cell.runs)} seeds)"
            )
    if not bound:
        return []
    return [
        f"Budget-bound: in {len(bound)} of {len(cells)} cells the best validation epoch is the "
        f"last one in most seeds ({'; '.join(bound)}). These runs were still improving when "
        "their epochs ran out: more epochs would likely raise them, so their differences "
        "measure the training budget as well as the models."
    ]


def observations(metrics: list[dict[str, Any]]) -> list[str]:
    """Plain-English statements generated from the numbers: model against model per size,
    where pre-training helps most, and the fitted curves, each with its stated test."""
    if any(m["profile"] == "quick" for m in metrics):
        return [quick_note(metrics)]
    out = []
    cells = conditions_by_key(metrics)
    for setting in SETTING_TITLES:
        fractions = sorted({f for s, _, f in cells if s == setting})
        out += [
            _model_bullet(setting, cells[(setting, "resnet18", f)], cells[(setting, "resnet50", f)])
            for f in fractions
            if (setting, "resnet18", f) in cells and (setting, "resnet50", f) in cells
        ]
    for model in MODEL_TITLES:
        gaps = pretraining_gaps(cells, model)
        if gaps:
            out.append(_gap_bullet(model, gaps))
    for (setting, model), points in scaling_points(metrics).items():
        fractions = sorted(
            {m["data_fraction"] for m in metrics if (m["setting"], m["model"]) == (setting, model)}
        )
        bullet = _exponent_bullet(setting, model, points, fractions)
        if bullet:
            out.append(bullet)
    out += [_joint_bullet(check) for check in joint_checks(metrics)]
    out += budget_bound_bullets(cells)
    return out or ["No runs to compare yet."]
