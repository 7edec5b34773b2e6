"""The analysis record of a report: computed once from the loaded runs, frozen, and read by
every renderer (the summary, the README's sections, the headline, the observations and the
figures), none of which computes or tests anything again. It holds the cells, the recipe they
record beside today's, the comparisons with their tests (paired t where the runs pair by seed,
Welch's t where not, Holm across the report's family), the fits with their checks, the budget
check, what was not produced and why, and the runs' time from their records."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .fits import (
    Curve,
    Joint,
    analyse,
    analyse_joint,
    extrapolate,
    holm,
    joint_leave_out,
    joint_refusal,
    paired,
    welch,
)
from .results import (
    MODEL_TITLES,
    SETTING_TITLES,
    Condition,
    Variant,
    group_conditions,
    moment,
    parameters,
    split_configurations,
    split_weights,
    today_recipe,
    upgrade,
)

ALPHA = 0.05  # the level of every test, after Holm's correction
AXES = {"model": "the largest model", "size": "the largest training-set size"}
Key = tuple[str, str, float]  # (setting, model, fraction)


@dataclass(frozen=True)
class NotProduced:
    """Why a cell of the grid has no runs: its runs `failed` (the error), or they need the
    ImageNet weights file `weights`, which was not found on this machine."""

    failed: str = ""
    weights: str = ""


@dataclass(frozen=True)
class Comparison:
    """Test accuracy of cell `first` against cell `second`: `kind` 'model' (ResNet-18 against
    ResNet-50), 'pretraining' (fine-tuned against from scratch) or 'budget' (twice the epochs
    against the recipe's); the test, its p and Holm's adjusted p within the report's family."""

    kind: str
    first: Condition
    second: Condition
    test: str  # "paired t-test" or "Welch's t-test"; "" untested (one seed, or other weights)
    why_untested: str
    p: float | None
    p_holm: float | None = None

    @property
    def diff(self) -> float:
        return self.first.stat("test_acc")[0] - self.second.stat("test_acc")[0]

    @property
    def holds(self) -> bool:
        return self.p_holm is not None and self.p_holm < ALPHA


@dataclass(frozen=True)
class Line:
    """One (setting, model)'s learning curve over data size, and its extrapolation check."""

    setting: str
    model: str
    points: list[tuple[int, float]]  # (training images, test error) per run
    curve: Curve | None  # None below 3 sizes (AICc has nothing to choose between)
    check: dict[str, Any] | None  # fits.extrapolate's record
    suggested: list[float]  # fractions that would test the curve's form (see `suggest_fractions`)


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


@dataclass(frozen=True)
class Analysis:
    """Everything a report says, computed once (see `build`)."""

    profile: str
    quick: bool  # quick-profile runs: a pipeline check, no effect stated, tested or fitted
    runs: list[dict[str, Any]]  # the main configuration's runs, every set of weights
    plotted: list[dict[str, Any]]  # ... one set of weights per model: curves, figures, fits
    apart: list[dict[str, Any]]  # fine-tuned runs of other weights than their model's latest
    cells: list[Condition]  # the main configuration's cells, every set of weights
    drawn: list[Condition]  # the plotted runs' cells
    rows: list[Condition]  # every configuration's cells, labelled by what differs
    others: list[Condition]  # the cells of configurations other than the main one
    # per setting: how its main runs differ from today's recipe (() for today's), and today's
    # recipe for its first main run where they differ
    recipe: dict[str, Variant]
    today: dict[str, dict[str, Any]]
    comparisons: list[Comparison]
    lines: list[Line]
    joints: list[JointCheck]
    quick_images: list[int] = field(default_factory=list)  # images each quick run trained on
    missing: dict[Key, NotProduced] = field(default_factory=dict)  # the cells without runs
    failed: dict[Key, dict[int, str]] = field(default_factory=dict)  # seed -> why, per cell
    timing: Timing | None = None  # the main runs' time (see `timing`)
    hardware: list[str] = field(default_factory=list)  # the main runs' hardware, sorted
    versions: list[str] = field(default_factory=list)  # 'torch X, torchvision Y' of each
    data_dirs: list[str] = field(default_factory=list)  # their data folders (repository-relative)
    origins: list[str] = field(default_factory=list)  # where those files came from (data_origin)

    @property
    def family(self) -> str:
        """The family Holm's correction runs over, named."""
        n = sum(c.p is not None for c in self.comparisons)
        return f"the {n} test{'s' * (n != 1)} of test accuracy this report makes"

    @property
    def budget(self) -> list[Comparison]:
        """The twice-the-budget comparisons: empty when no cell has such runs (not checked)."""
        return [c for c in self.comparisons if c.kind == "budget"]


def _compare(kind: str, first: Condition, second: Condition) -> Comparison:
    """Paired t over the seeds both cells ran (same subset, data order and initialisation
    seed) when they ran the same seeds; Welch's t otherwise."""
    a = {r["seed"]: r["test_acc"] for r in first.runs}
    b = {r["seed"]: r["test_acc"] for r in second.runs}
    if set(a) == set(b) and len(a) > 1:
        seeds = sorted(a)
        test = paired([a[s] for s in seeds], [b[s] for s in seeds])
        return Comparison(kind, first, second, "paired t-test", "", test[1])
    test = welch(list(a.values()), list(b.values()))
    if test is None:
        return Comparison(kind, first, second, "", "one seed on a side", None)
    return Comparison(kind, first, second, "Welch's t-test", "", test[1])


def _comparisons(drawn: list[Condition], others: list[Condition]) -> list[Comparison]:
    """Every comparison the report makes, Holm-corrected together."""
    cells = {(c.setting, c.model, c.fraction): c for c in drawn}
    out = []
    for (setting, model, fraction), small in cells.items():
        big = cells.get((setting, "resnet50", fraction))
        if model == "resnet18" and big:
            if (
                setting == "pretrained"
                and small.runs[0]["config"]["weights"] != big.runs[0]["config"]["weights"]
            ):
                out.append(Comparison("model", big, small, "", "different ImageNet weights", None))
            else:
                out.append(_compare("model", big, small))
        base = cells.get(("scratch", model, fraction))
        if setting == "pretrained" and base:
            out.append(_compare("pretraining", small, base))
    out += [_compare("budget", longer, cells[key]) for key, longer in _doubled(cells, others)]
    tested = [c for c in out if c.p is not None]
    adjusted = iter(holm([c.p for c in tested]))
    return [replace(c, p_holm=next(adjusted)) if c.p is not None else c for c in out]


def _doubled(cells: dict[Key, Condition], others: list[Condition]) -> list[tuple[Key, Condition]]:
    """The cells of another configuration that differs from a main cell in its epochs
    only, at twice them: the result files a budget-bound claim needs."""
    out = []
    for other in others:
        key = (other.setting, other.model, other.fraction)
        if key in cells:
            mine, theirs = dict(cells[key].variant), dict(other.variant)
            epochs = cells[key].runs[0]["config"]["epochs"]
            rest = {k for k in mine.keys() | theirs.keys() if k != "epochs"}
            same = all(mine.get(k) == theirs.get(k) for k in rest)
            if same and other.runs[0]["config"]["epochs"] == 2 * epochs:
                out.append((key, other))
    return out


def _lines(runs: list[dict[str, Any]]) -> list[Line]:
    """Per (setting, model), the curve over data size and its extrapolation check."""
    out = []
    for setting, model in ((s, m) for s in SETTING_TITLES for m in MODEL_TITLES):
        mine = sorted(
            (r for r in runs if (r["setting"], r["model"]) == (setting, model)),
            key=lambda r: (r["train_images"], r["seed"]),
        )
        if not mine:
            continue
        n = [int(r["train_images"]) for r in mine]
        err = [1 - r["test_acc"] for r in mine]
        seeds = [r["seed"] for r in mine]
        curve = analyse(n, err, seeds) if len(set(n)) >= 3 else None
        check = extrapolate(n, err, seeds)
        suggested = suggest_fractions([r["data_fraction"] for r in mine])
        out.append(Line(setting, model, list(zip(n, err, strict=True)), curve, check, suggested))
    return out


def suggest_fractions(fractions: list[float], sizes: int = 5) -> list[float]:
    """At least `sizes` data fractions, halving down from 100% through the ones already run,
    so that a 3-parameter curve has sizes left over to be tested on."""
    wanted = set(fractions) | {2.0**-k for k in range(int(np.ceil(-np.log2(min(fractions)))) + 1)}
    while len(wanted) < sizes:
        wanted.add(min(wanted) / 2)
    return sorted(wanted)


def _joints(runs: list[dict[str, Any]]) -> list[JointCheck]:
    """Per setting with runs of two or more models at two or more sizes, the joint fit and
    its leave-one-out checks, or why it is not tested."""
    out = []
    for setting in SETTING_TITLES:
        mine = [r for r in runs if r["setting"] == setting]
        m = np.array([parameters(r) for r in mine], dtype=float)
        n = np.array([r["train_images"] for r in mine], dtype=float)
        if np.unique(m).size < 2 or np.unique(n).size < 2:
            continue  # one model or one size: no joint question to ask
        err = np.array([1 - r["test_acc"] for r in mine])
        seeds = np.array([r["seed"] for r in mine])
        models = {parameters(r): MODEL_TITLES[r["model"]] for r in mine}
        refused = joint_refusal(m, n)
        fit = None if refused else analyse_joint(m, n, err, seeds)
        left_out = {} if refused else {a: joint_leave_out(m, n, err, a, seeds) for a in AXES}
        sizes = [int(v) for v in np.unique(n)]
        out.append(JointCheck(setting, models, sizes, len(mine), refused, fit, left_out))
    return out


def _missing(
    cells: list[Condition], missing: dict[Key, NotProduced], failed: dict[Key, dict[int, str]]
) -> dict[Key, NotProduced]:
    """The cells without runs: those the call could not run, and those whose seeds all failed."""
    have = {(c.setting, c.model, c.fraction) for c in cells}
    lost = {
        k: NotProduced(failed="; ".join(f"seed {s}: {why}" for s, why in sorted(seeds.items())))
        for k, seeds in failed.items()
    }
    return {k: v for k, v in (missing | lost).items() if k not in have}


def build(
    collected: list[dict[str, Any]],
    profile: str,
    missing: dict[Key, NotProduced] | None = None,
    failed: dict[Key, dict[int, str]] | None = None,
) -> Analysis:
    """The record of one report, from the runs of `profile` (results.collect's), the cells
    the call could not run (`missing`) and the seeds that failed (`failed`, seed -> why)."""
    main, other_runs = split_configurations([upgrade(r) for r in collected])
    plotted, apart = split_weights(main)
    cells, drawn = group_conditions(main), group_conditions(plotted)
    rows = group_conditions(main + other_runs)
    shown = {id(r) for r in main}
    others = [c for c in rows if id(c.runs[0]) not in shown]
    quick = profile == "quick"
    images = sorted(
        {len(r["history"]) * r["steps_per_epoch"] * r["config"]["batch_size"] for r in main}
    )
    comparisons = [] if quick else _comparisons(drawn, others)
    return Analysis(
        profile=profile,
        quick=quick,
        runs=main,
        plotted=plotted,
        apart=apart,
        cells=cells,
        drawn=drawn,
        rows=rows,
        others=others,
        recipe={c.setting: c.variant for c in cells},
        today={c.setting: today_recipe(c.runs[0]).training_key() for c in cells if c.variant},
        comparisons=comparisons,
        lines=[] if quick else _lines(plotted),
        joints=[] if quick else _joints(plotted),
        quick_images=images if quick else [],
        missing=_missing(cells, missing or {}, failed or {}),
        failed=failed or {},
        timing=timing([r for c in cells for r in c.runs]),
        hardware=sorted({r["hardware"] for r in main}),
        versions=sorted({f"torch {r['torch']}, torchvision {r['torchvision']}" for r in main}),
        data_dirs=sorted({r["config"]["data_dir"] for r in main}),
        origins=sorted({r["data"] for r in main}),
    )


OVERLAP_SLACK = 2.0  # seconds two runs' records may overlap and still be one after the other
DEVICES = (2, 4, 8)  # the numbers of alike devices the grid time is estimated on


@dataclass(frozen=True)
class Timing:
    """The time of a report's runs, from their records: `busy`, during which at least one
    trained; how many `shared` their device with another run at once (stretched wall times);
    the wall times of the others, summed (`one`, on one device) and spread over DEVICES (`on`)."""

    runs: int
    busy: float
    shared: int
    alone: int  # the runs that had their device to themselves
    one: float
    on: dict[int, float]


def timing(runs: list[dict[str, Any]]) -> Timing:
    """The `Timing` of `runs`."""
    shared = shared_device(runs)
    alone = [r["wall_time_s"] for r, s in zip(runs, shared, strict=True) if not s]
    on = {k: grid_time(alone, k) for k in DEVICES} if alone else {}
    return Timing(len(runs), busy_time(runs), sum(shared), len(alone), sum(alone), on)


def grid_time(seconds: list[float], devices: int) -> float:
    """The wall time of runs taking `seconds` each on `devices` alike devices, each run going
    to the first free device, longest first."""
    loads = [0.0] * devices
    for t in sorted(seconds, reverse=True):
        loads[loads.index(min(loads))] += t
    return max(loads)


def _span(run: dict[str, Any]) -> tuple[float, float]:
    return moment(run["started_at"]), moment(run["finished_at"])


def shared_device(runs: list[dict[str, Any]]) -> list[bool]:
    """Per run: True when another run trained on the same device of the same machine at the
    same time, so that both were slowed and neither wall time is the device's own. A record
    that names no machine never counts as sharing."""
    spans = [_span(r) for r in runs]
    where = [(r["machine"], r["device"]) for r in runs]

    def overlap(i: int, j: int) -> float:
        return min(spans[i][1], spans[j][1]) - max(spans[i][0], spans[j][0])

    return [
        where[i][0] is not None
        and any(
            j != i and where[j] == where[i] and overlap(i, j) > OVERLAP_SLACK
            for j in range(len(runs))
        )
        for i in range(len(runs))
    ]


def busy_time(runs: list[dict[str, Any]]) -> float:
    """Seconds during which at least one of the runs was training (the union of their
    intervals): the grid's elapsed time as the records show it, start-up between runs aside."""
    total, reach = 0.0, -math.inf
    for start, end in sorted(_span(r) for r in runs):
        total += max(0.0, end - max(start, reach))
        reach = max(reach, end)
    return total
