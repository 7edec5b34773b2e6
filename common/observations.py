"""What the analysis record says in words and tables: the extrapolation checks (over data
size, and of the joint fit over data and model size) and the observations, each claim with its
test and p-value, and the Markdown table helper the report shares. Everything here renders an
`analysis.Analysis`; nothing is computed again."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .analysis import AXES, Analysis, Comparison, JointCheck, Line
from .data import fraction_title
from .fits import FLAT, PURE, exponent
from .results import MODEL_TITLES, SETTING_TITLES, Condition

INSIDE = {None: "–", True: "yes", False: "no"}  # measured inside the interval? (None: none)
CHECK = "predicted error %:|95% interval %{how}:|measured error %:|measured inside?"
EXTRAPOLATION = "model|setting|fit on (training images)|curve (AICc)|largest n:|" + CHECK
JOINT, LEFT_OUT = "setting|runs:|joint fit|alpha|beta|c %", "setting|fitted without|left-out cell|"


def table(head: str, rows: Iterable[Sequence[object]]) -> str:
    """A Markdown table: `head` names the columns ('|' between, ':' ending a right-aligned one)."""
    names = head.split("|")
    rule = "|" + "".join("---:|" if name.endswith(":") else "---|" for name in names)
    lines = ["| " + " | ".join(map(str, r)) + " |" for r in [[n.rstrip(":") for n in names], *rows]]
    return "\n".join([lines[0], rule, *lines[1:]]) + "\n"


def pct(value: float) -> str:
    return f"{100 * value:.2f}"


def _span(bounds: tuple[float, float] | None, fmt=pct) -> str:
    return f"{fmt(bounds[0])}–{fmt(bounds[1])}" if bounds else "too few seeds: none"


def _estimate(value: float, bounds: tuple[float, float] | None, fmt=exponent) -> str:
    return f"{fmt(value)} ({_span(bounds, fmt)})"  # '0.57 (0.45–0.69)': value, 95% interval


def extrapolation_table(a: Analysis) -> str:
    """Per line, a fit on all sizes but the largest against the largest's measured error."""
    if a.quick:
        return "Quick runs measure no data effect, so nothing is fitted (see the observations).\n"
    rows = []
    for line in a.lines:
        rows.append([MODEL_TITLES[line.model], SETTING_TITLES[line.setting]])
        if not (c := line.check):
            rows[-1] += ["needs 3+ data sizes", *["–"] * 6]
            continue
        how = f" ({c['how']})" if c["interval"] else ""
        rows[-1] += [", ".join(f"{s:,}" for s in c["fit_on"]), c["chosen"], f"{c['n']:,}"]
        rows[-1] += [pct(c["predicted"]), _span(c["interval"]) + how, pct(c["measured"])]
        rows[-1] += [INSIDE[c["inside"]]]
    return table(EXTRAPOLATION.format(how=" (how)"), rows)


def _left_out(check: JointCheck, axis: str, value: int) -> str:
    """What a leave-one-out check left out: the largest model or training-set size."""
    if axis == "model":
        return f"{check.models[value]}, {value / 1e6:.1f}M parameters"
    return f"{value:,} images"


def joint_table(a: Analysis) -> str:
    """Per setting, the joint fit, then each leave-one-out check cell by cell (or why not)."""
    if a.quick:
        return "Quick runs measure no model-size effect, so nothing is fitted.\n"
    if not a.joints:
        return "No setting has runs of two or more models at two or more sizes: no joint fit.\n"
    fits, cells = [], []
    for check in a.joints:
        setting, j = SETTING_TITLES[check.setting], check.fit
        if check.refused:
            fits.append([setting, check.runs, f"not tested: {check.refused}", "–", "–", "–"])
            continue
        fits.append([setting, check.runs, j.fit.describe(), _estimate(j.fit.alpha, j.alpha)])
        fits[-1] += [_estimate(j.fit.beta, j.beta), _estimate(j.fit.c, j.c, pct)]
        for axis, result in check.left_out.items():
            name = _left_out(check, axis, result["left_out"])
            if not result["tested"]:
                cells.append([setting, name, f"not tested: {result['reason']}", *["–"] * 4])
            for c in result.get("cells", []):
                cells.append([setting, name, f"{check.models[c['m']]} at {c['n']:,} images"])
                cells[-1] += [pct(c["predicted"]), _span(c["interval"]), pct(c["measured"])]
                cells[-1] += [INSIDE[c["inside"]]]
    return f"{table(JOINT, fits)}\n{table(LEFT_OUT + CHECK.format(how=''), cells)}"


def _joint_bullet(check: JointCheck) -> str:
    """The joint fit in words: the curve, its exponents with intervals, and the two checks."""
    counts, j = sorted(check.models), check.fit
    text = (
        f"Joint fit over data and model size, {SETTING_TITLES[check.setting]} (Rosenfeld et "
        "al. 2020's e(m, n) = a · n^-alpha + b · m^-beta + c; "
        f"{check.runs} runs, {len(counts)} models of {counts[0] / 1e6:.1f}M–"
        f"{counts[-1] / 1e6:.1f}M parameters at {len(check.sizes)} training-set sizes): "
    )
    if check.refused:
        return f"{text}not tested: {check.refused}."
    text += j.fit.describe()
    if j.how:
        text += f", alpha {_estimate(j.fit.alpha, j.alpha)}, beta {_estimate(j.fit.beta, j.beta)}"
        text += f" (95%, {j.how})"
    for axis, result in check.left_out.items():
        inside = [c["inside"] for c in result.get("cells", [])]
        text += f"; fitted without {AXES[axis]} ({_left_out(check, axis, result['left_out'])}): "
        if not result["tested"]:
            text += f"not tested, {result['reason']}"
        elif None in inside:
            text += "no interval (too few seeds)"
        else:
            text += (
                f"{sum(inside)} of {len(inside)} left-out cells measured inside the 95% interval"
            )
    return text + "."


def _acc(cell: Condition) -> str:
    mean, sd, n = cell.stat("test_acc")
    return f"{pct(mean)} ± {pct(sd)}% (n={n})" if n > 1 else f"{pct(mean)}% (n=1)"


def _comparison_bullet(c: Comparison, family: str) -> str:
    """One comparison in words, with its test, p, and Holm's p across `family`."""
    title, model = SETTING_TITLES[c.first.setting], MODEL_TITLES[c.first.model]
    head, (first, second) = {
        "model": (title[0].upper() + title[1:], (model, MODEL_TITLES[c.second.model])),
        "pretraining": (model, ("fine-tuned", "from scratch")),
        "budget": (f"{model} {title}", ("twice the epochs", "the recipe's epochs")),
    }[c.kind]
    head += f", {fraction_title(c.first.fraction)} of the data "
    head += f"({c.first.runs[0]['train_images']:,} images): {first}"
    both = f"({first} {_acc(c.first)}, {second} {_acc(c.second)})"
    if c.why_untested == "different ImageNet weights":
        return (
            f"{head} and {second} started from different ImageNet weights {both}: the "
            "difference mixes model size with the pretraining recipe, so it is not compared."
        )
    text = f"{head} minus {second} is {100 * c.diff:+.2f} points {both}; "
    if not c.test:
        return f"{text}not tested ({c.why_untested})."
    verdict = "a difference beyond seed noise" if c.holds else "not a clear difference"
    return (
        f"{text}{c.test} over {len(c.first.runs)} seeds: p = {c.p:.2g}, Holm-adjusted over "
        f"{family} p = {c.p_holm:.2g} {'<' if c.holds else '≥'} 0.05, {verdict}."
    )


def _curve_bullet(line: Line) -> str:
    """A learning curve in words: AICc's choice, the fit, b, e_N and β_N, what it cannot test."""
    curve, sizes = line.curve, line.curve.sizes
    scores = ", ".join(f"{name} {value:.1f}" for name, value in curve.aic.items())
    text = (
        f"{MODEL_TITLES[line.model]} {SETTING_TITLES[line.setting]} ({curve.runs} runs at "
        f"{len(sizes)} sizes, {sizes[0]:,}–{sizes[-1]:,} images): AICc ({scores}; a curve with "
        f"more parameters must lower it by more than 2) prefers the {curve.chosen}"
    )
    if curve.chosen == FLAT:
        text += ", so these runs show no fall of test error with more training images"
    floor = "reported with its floor, which keeps b unbiased where the truth has one: "
    text += f"; {floor if curve.chosen == PURE else ''}{curve.fit.describe()}"
    e_n = f"Hoiem et al.'s e_N = {pct(curve.e_n)}% at N = {sizes[-1]:,}"
    beta = f"β_N = {pct(curve.beta_n)} points of error per doubling of the data at N"
    if not curve.how:
        text += f"; {e_n}; {beta}; too few seeds at some size for intervals"
    else:
        e_n += f" (95% {curve.how}: {_span(curve.e_n_interval)}%)"
        flat = curve.chosen == FLAT
        text += f"; {e_n}" if flat else f", b = {_estimate(curve.fit.b, curve.b)}; {e_n}; {beta}"
        text += "" if flat else f" ({_span(curve.beta_n_interval)})"
    if curve.exact:
        text += (
            f". With {len(sizes)} sizes the 3-parameter curve passes through the mean at every "
            "size: AICc then weighs the seeds' spread only, the floor c has no support of its "
            "own, and the power-law form is not tested; `--fractions "
            f"{','.join(map(fraction_title, line.suggested))}` would test it"
        )
    return text + "."


def quick_note(a: Analysis) -> str:
    """What quick-profile runs show: that the pipeline works, and no effect."""
    n, budget = a.quick_images, "a small budget"
    if n:
        budget = f"the same {n[0]:,} images" if len(n) == 1 else f"{n[0]:,} to {n[-1]:,} images"
    return (
        "Quick profile: these runs check that the pipeline works end to end, nothing more. "
        f"Every run trains on {budget} whatever its data size, far from convergence, so the "
        "differences between sizes, models and settings are not data, model-size or "
        "pretraining effects: none is stated, tested or fitted here. The full profile "
        "(`--profile full`, on a GPU) measures them."
    )


def budget_bullet(a: Analysis) -> str:
    """Whether the runs are budget-bound: only a twice-the-budget run can say so."""
    if not a.budget:
        return (
            "Budget-bound: not checked. Only runs with twice the epochs can show that more "
            "training would raise these numbers (a best validation epoch at the last one is "
            "what a schedule ending at lr 0 gives anyway); this folder has none."
        )
    return (
        f"Budget: {sum(c.holds and c.diff > 0 for c in a.budget)} of the {len(a.budget)} cells "
        "with twice-the-budget runs in this folder score higher with twice the epochs by the "
        "tests above (budget-bound); the others show no clear gain."
    )


def observations(a: Analysis) -> list[str]:
    """Every comparison with its test, the fitted curves, the joint fits and the budget check."""
    if a.quick:
        return [quick_note(a)]
    if not a.runs:
        return ["No runs to compare yet."]
    out = [_comparison_bullet(c, a.family) for c in a.comparisons]
    out += [_curve_bullet(line) for line in a.lines if line.curve]
    return out + [_joint_bullet(check) for check in a.joints] + [budget_bullet(a)]
