"""What the analysis record says in words and tables: the extrapolation checks (over data
size, and of the joint fit over data and model size) and the observations, each claim with its
test and p-value. Everything here renders an `analysis.Analysis`; nothing is computed again."""

from __future__ import annotations

import numpy as np

from .analysis import AXES, Analysis, Comparison, JointCheck, Line
from .data import fraction_title
from .fits import FLAT, PURE, Curve, exponent
from .results import MODEL_TITLES, SETTING_TITLES, Condition


def pct(value: float) -> str:
    return f"{100 * value:.2f}"


def _span(bounds: tuple[float, float] | None, fmt=pct) -> str:
    return f"{fmt(bounds[0])}–{fmt(bounds[1])}" if bounds else "too few seeds: none"


def millions(count: float) -> str:
    return f"{count / 1e6:.1f}M"


def extrapolation_table(a: Analysis) -> str:
    """Markdown: per line, a fit on all sizes but the largest against the largest's error,
    with the prediction's 95% interval over seeds; for quick runs, why there is none."""
    if a.quick:
        return "Quick runs measure no data effect, so nothing is fitted (see the observations).\n"
    rows = [
        "| model | setting | fit on (training images) | curve (AICc) | largest n "
        "| predicted error % | 95% interval % (how) | measured error % | measured inside? |",
        "|---|---|---|---|---:|---:|---:|---:|---|",
    ]
    for line in a.lines:
        check = line.check
        head = f"| {MODEL_TITLES[line.model]} | {SETTING_TITLES[line.setting]} "
        if check is None:
            rows.append(head + "| needs 3+ data sizes | – | – | – | – | – | – |")
            continue
        bounds = check["interval"]
        inside = (
            "–" if not bounds else "yes" if bounds[0] <= check["measured"] <= bounds[1] else "no"
        )
        how = f" ({check['how']})" if bounds else ""
        rows.append(
            head + f"| {', '.join(f'{s:,}' for s in check['fit_on'])} | {check['chosen']} "
            f"| {check['n']:,} | {pct(check['predicted'])} | {_span(bounds)}{how} "
            f"| {pct(check['measured'])} | {inside} |"
        )
    return "\n".join(rows) + "\n"


def _left_out_name(check: JointCheck, axis: str, value: int) -> str:
    if axis == "model":
        return f"{check.models[value]}, {millions(value)} parameters"
    return f"{value:,} images"


def joint_table(a: Analysis) -> str:
    """Markdown: per setting, the joint fit with its 95% intervals over seeds, then each
    leave-one-out check against the measured error of every left-out cell; 'not tested' with
    the reason where the points cannot identify the form."""
    if a.quick:
        return "Quick runs measure no model-size effect, so nothing is fitted.\n"
    if not a.joints:
        return "No setting has runs of two or more models at two or more sizes: no joint fit.\n"
    fits = ["| setting | runs | joint fit | alpha | beta | c % |", "|---|---:|---|---|---|---|"]
    cells = [
        "| setting | fitted without | left-out cell | predicted error % | 95% interval % "
        "| measured error % | measured inside? |",
        "|---|---|---|---:|---:|---:|---|",
    ]
    for check in a.joints:
        head = f"| {SETTING_TITLES[check.setting]} "
        if check.refused:
            fits.append(head + f"| {check.runs} | not tested: {check.refused} | – | – | – |")
            continue
        j = check.fit
        fits.append(
            head + f"| {check.runs} | {j.fit.describe()} "
            f"| {exponent(j.fit.alpha)} ({_span(j.alpha, exponent)}) "
            f"| {exponent(j.fit.beta)} ({_span(j.beta, exponent)}) "
            f"| {pct(j.fit.c)} ({_span(j.c)}) |"
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
                    f"| {pct(cell['predicted'])} | {_span(cell['interval'])} "
                    f"| {pct(cell['measured'])} | {inside} |"
                )
    return "\n".join(fits) + "\n\n" + "\n".join(cells) + "\n"


def _joint_bullet(check: JointCheck) -> str:
    """The joint fit in words: the curve, its exponents with intervals, and the two checks."""
    counts = sorted(check.models)
    head = (
        f"Joint fit over data and model size, {SETTING_TITLES[check.setting]} (Rosenfeld et "
        "al. 2020's e(m, n) = a · n^-alpha + b · m^-beta + c; "
        f"{check.runs} runs, {len(counts)} models of {millions(counts[0])}–"
        f"{millions(counts[-1])} parameters at {len(check.sizes)} training-set sizes)"
    )
    if check.refused:
        return f"{head}: not tested: {check.refused}."
    j = check.fit
    text = f"{head}: {j.fit.describe()}"
    if j.how:
        text += (
            f", alpha {exponent(j.fit.alpha)} ({_span(j.alpha, exponent)}), beta "
            f"{exponent(j.fit.beta)} ({_span(j.beta, exponent)}) (95%, {j.how})"
        )
    for axis, result in check.left_out.items():
        name = _left_out_name(check, axis, result["left_out"])
        if not result["tested"]:
            text += f"; fitted without {AXES[axis]} ({name}): not tested, {result['reason']}"
            continue
        inside = [c["inside"] for c in result["cells"]]
        verdict = (
            "no interval (too few seeds)"
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


def stated_test(c: Comparison, family: str) -> str:
    """The test behind a comparison: its name, p, and Holm's p across `family`."""
    if not c.test:
        return f"not tested ({c.why_untested})"
    n = len(c.first.runs)
    verdict = "a difference beyond seed noise" if c.holds else "not a clear difference"
    sign = "<" if c.holds else "≥"
    return (
        f"{c.test} over {n} seeds: p = {c.p:.2g}, Holm-adjusted over {family} p = "
        f"{c.p_holm:.2g} {sign} 0.05, {verdict}"
    )


def _comparison_bullet(c: Comparison, family: str) -> str:
    """One comparison in words, with its test."""
    first, second = c.first, c.second
    title = SETTING_TITLES[first.setting]
    if c.kind == "model":
        head = f"{title[0].upper()}{title[1:]}, {_where(first)}: "
        names = MODEL_TITLES[first.model], MODEL_TITLES[second.model]
    elif c.kind == "pretraining":
        head = f"{MODEL_TITLES[first.model]}, {_where(first)}: "
        names = "fine-tuned", "from scratch"
    else:
        head = f"{MODEL_TITLES[first.model]} {title}, {_where(first)}: "
        names = "twice the epochs", "the recipe's epochs"
    both = f"({names[0]} {_acc(first)}, {names[1]} {_acc(second)})"
    if c.why_untested == "different ImageNet weights":
        return (
            f"{head}{names[0]} and {names[1]} started from different ImageNet weights {both}: "
            "the difference mixes model size with the pretraining recipe, so it is not compared."
        )
    return f"{head}{names[0]} minus {names[1]} is {100 * c.diff:+.2f} points {both}; " + (
        f"{stated_test(c, family)}."
    )


def _curve_text(curve: Curve, big: int) -> str:
    """The fitted curve, b, e_N and β_N with their 95% intervals over seeds."""
    e_n = f"Hoiem et al.'s e_N = {pct(curve.e_n)}% at N = {big:,}"
    beta = f"β_N = {pct(curve.beta_n)} points of error per doubling of the data at N"
    if not curve.how:
        return f"{curve.fit.describe()}; {e_n}; {beta}; too few seeds at some size for intervals"
    e_n += f" (95% {curve.how}: {_span(curve.e_n_interval)}%)"
    if curve.chosen == FLAT:
        return f"{curve.fit.describe()}; {e_n}"
    b = f"b = {exponent(curve.fit.b)} ({_span(curve.b, exponent)})"
    return f"{curve.fit.describe()}, {b}; {e_n}; {beta} ({_span(curve.beta_n_interval)})"


def suggest_fractions(fractions: list[float], sizes: int = 5) -> str:
    """A --fractions value with at least `sizes` sizes, halving down from 100% through the
    ones already run, so that a 3-parameter curve has sizes left over to be tested on."""
    wanted = set(fractions) | {2.0**-k for k in range(int(np.ceil(-np.log2(min(fractions)))) + 1)}
    while len(wanted) < sizes:
        wanted.add(min(wanted) / 2)
    return ",".join(fraction_title(f) for f in sorted(wanted))


def _curve_bullet(line: Line) -> str:
    curve = line.curve
    sizes = curve.sizes
    scores = ", ".join(f"{name} {value:.1f}" for name, value in curve.aic.items())
    text = (
        f"{MODEL_TITLES[line.model]} {SETTING_TITLES[line.setting]} ({curve.runs} runs at "
        f"{len(sizes)} sizes, {sizes[0]:,}–{sizes[-1]:,} images): AICc ({scores}; a curve with "
        f"more parameters must lower it by more than 2) prefers the {curve.chosen}"
    )
    if curve.chosen == FLAT:
        text += ", so these runs show no fall of test error with more training images"
    kept = "reported with its floor, which keeps b unbiased where the truth has one: "
    text += f"; {kept if curve.chosen == PURE else ''}{_curve_text(curve, sizes[-1])}"
    if curve.exact:
        text += (
            f". With {len(sizes)} sizes the 3-parameter curve passes through the mean at every "
            "size: AICc then weighs the seeds' spread only, the floor c has no support of its "
            "own, and the power-law form is not tested; "
            f"`--fractions {suggest_fractions(line.fractions)}` would test it"
        )
    return text + "."


def quick_note(a: Analysis) -> str:
    """What quick-profile runs show: that the pipeline works, and no effect."""
    images = a.quick_images
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


def budget_bullet(a: Analysis) -> str:
    """Whether the runs are budget-bound: only a twice-the-budget run can say so."""
    if a.budget_checked:
        bound = [c for c in a.comparisons if c.kind == "budget" and c.holds and c.diff > 0]
        n = sum(c.kind == "budget" for c in a.comparisons)
        return (
            f"Budget: {len(bound)} of the {n} cells with twice-the-budget runs in this folder "
            "score higher with twice the epochs by the tests above (budget-bound); the others "
            "show no clear gain."
        )
    return (
        "Budget-bound: not checked. Only runs with twice the epochs can show that more "
        "training would raise these numbers (a best validation epoch at the last one is what "
        "a schedule ending at lr 0 gives anyway); this folder has none."
    )


def observations(a: Analysis) -> list[str]:
    """Plain-English statements rendered from the record: every comparison with its test, the
    fitted curves, the joint fits and the budget check."""
    if a.quick:
        return [quick_note(a)]
    if not a.runs:
        return ["No runs to compare yet."]
    out = [_comparison_bullet(c, a.family) for c in a.comparisons]
    out += [_curve_bullet(line) for line in a.lines if line.curve]
    out += [_joint_bullet(check) for check in a.joints]
    return [*out, budget_bullet(a)]
