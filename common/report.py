"""What a sweep leaves for readers, in Markdown and PNG: curves per condition, the summary table
(results/summary.md), the grid time, and the README's headline and results section. Each is a
renderer of one `analysis.Analysis`, built once per report."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from . import analysis
from .analysis import Analysis, busy_time, grid_time, shared_device
from .config import DEVIATIONS, SAME_RECIPE, SETTINGS, make_config, recipe_model
from .data import fraction_title
from .files import write_text
from .fits import AXIS_SIZES
from .grid import BASE_MODELS, SEED_FRACTIONS
from .observations import extrapolation_table, joint_table, observations
from .plots import SETTING_DIRS, curve_path, save_curves
from .results import MODEL_TITLES, SETTING_TITLES, STARTING_POINT, Condition, collect, weights_title

README_START, README_END = "<!-- results:start -->", "<!-- results:end -->"
HEADLINE_START = "<!-- headline:start -->"  # the README's first screen: one compact table
HEADLINE_END = "<!-- headline:end -->"
ConditionKey = tuple[str, str, float]  # (setting, model, fraction)


@dataclass(frozen=True)
class NotProduced:
    """Why a cell of the grid has no runs: its runs `failed` (the error), or they need the
    ImageNet weights file `weights`, which was not found on this machine."""

    failed: str = ""
    weights: str = ""


@dataclass
class Call:
    """What the command that writes a report knows beyond the runs' files."""

    command: str  # as the report quotes it
    missing: dict[ConditionKey, NotProduced] = field(default_factory=dict)  # cells without runs
    failed: dict[ConditionKey, dict[int, str]] = field(default_factory=dict)  # seed -> reason
    notes: list[str] = field(default_factory=list)  # remedies, listed under the table
    trained: int = 0  # how many runs it trained
    started: float = field(default_factory=time.perf_counter)  # when it started
    figures: list[Path] | None = None  # scaling figures this call drew (None: those on disk)


def mean_sd(mean: float, sd: float, n: int) -> str:
    """A percentage, with its sd and count when there are several seeds: '52.00 ± 2.00 (n=3)'."""
    return f"{100 * mean:.2f}" + (f" ± {100 * sd:.2f} (n={n})" if n > 1 else "")


def _where_list(keys: Iterable[ConditionKey]) -> str:
    """'ResNet-18 at 1/16, 50%; ResNeXt50_32x4d at 100%'."""
    by_model: dict[str, list[float]] = {}
    for _, model, fraction in sorted(keys, key=lambda k: (list(MODEL_TITLES).index(k[1]), k[2])):
        by_model.setdefault(model, []).append(fraction)
    return "; ".join(
        f"{MODEL_TITLES[m]} at {', '.join(map(fraction_title, fs))}" for m, fs in by_model.items()
    )


def weights_line(missing: dict[ConditionKey, NotProduced]) -> str:
    """One line for every cell that needs ImageNet weights not found here; '' if none."""
    cells = {k: v for k, v in missing.items() if v.weights}
    if not cells:
        return ""
    files, n = ", ".join(sorted({v.weights for v in cells.values()})), len(cells)
    return (
        f"not produced: needs ImageNet weights: {n} pretrained {'cell' if n == 1 else 'cells'} "
        f"({_where_list(cells)}) {'needs' if n == 1 else 'need'} {files}, not found on this "
        "machine."
    )


def _start(key: ConditionKey, profile: str) -> str:
    """The source notebooks' figure for a cell: beside full-profile rows only."""
    value = STARTING_POINT.get(key) if profile == "full" else None
    return f"{value}" if value else "–"


def summary_table(
    rows: list[Condition],
    missing: dict[ConditionKey, NotProduced],
    failed: dict[ConditionKey, dict[int, str]] | None = None,
    profile: str = "full",
) -> str:
    """The Markdown summary: one row per cell and configuration, a row for each cell whose runs
    all failed, and one line for the cells that need ImageNet weights not found here; the
    starting-point column only for the full profile."""
    failed, full = failed or {}, profile == "full"
    lines = [
        "| model | data | setting | weights | train images | epochs | best val acc % "
        "| test acc % | TTA |" + (" starting point % |" if full else "") + " wall time / run |",
        "|---|---|---|---|---:|---:|---:|---:|---|" + ("---:|" if full else "") + "---:|",
    ]
    order = {name: i for i, name in enumerate(MODEL_TITLES)}
    out: list[tuple[tuple, str]] = []
    for c in rows:
        key, first = (c.setting, c.model, c.fraction), c.runs[0]
        epochs = "/".join(sorted({str(r["epochs"]) for r in c.runs}))
        test_note = "" if first["test_images"] >= 10_000 else f" ({first['test_images']:,} imgs)"
        out.append(
            (
                (c.setting != "scratch", order[c.model], c.fraction, str(c.variant)),
                f"| {MODEL_TITLES[c.model]} | {fraction_title(c.fraction)} "
                f"| {c.setting}{f' ({c.label})' if c.label else ''} | {weights_title(first)} "
                f"| {first['train_images']:,} | {epochs} "
                f"| {mean_sd(*c.stat('best_val_acc'))} | {seeds_cell(c, failed.get(key, {}))}"
                f"{test_note} | {'/'.join(sorted({r['test_tta'] for r in c.runs}))} |"
                + (f" {_start(key, profile)} |" if full else "")
                + f" {c.stat('wall_time_s')[0]:.0f} s |",
            )
        )
    for key, why in missing.items():
        if why.failed:
            out.append(
                (
                    (key[0] != "scratch", order[key[1]], key[2], ""),
                    f"| {MODEL_TITLES[key[1]]} | {fraction_title(key[2])} | {key[0]} | – | – "
                    f"| – | not produced | not produced: failed: {why.failed} | – |"
                    + (f" {_start(key, profile)} |" if full else "")
                    + " – |",
                )
            )
    table = "\n".join(lines + [r for _, r in sorted(out, key=lambda r: r[0])]) + "\n"
    line = weights_line(missing)
    return table + (f"\n- {line}\n" if line else "")


def seeds_cell(cell: Condition, failed: dict[int, str]) -> str:
    """The cell's test accuracy over its seeds, naming the seeds of it that failed."""
    mean, sd, n = cell.stat("test_acc")
    if not failed:
        return mean_sd(mean, sd, n)
    why = "; ".join(f"seed {seed} failed: {reason}" for seed, reason in sorted(failed.items()))
    spread = f" ± {100 * sd:.2f}" if n > 1 else ""
    return f"{100 * mean:.2f}{spread} (n = {n} of {n + len(failed)}: {why})"


def duration(seconds: float) -> str:
    """95 s, 8.1 min, 31 min, 3.2 h."""
    if seconds < 100:
        return f"{seconds:.0f} s"
    minutes = seconds / 60
    if minutes < 10:
        return f"{minutes:.1f} min"
    return f"{minutes:.0f} min" if minutes < 180 else f"{minutes / 60:.1f} h"


def grid_time_line(cells: list[Condition], elapsed: float | None = None, trained: int = 0) -> str:
    """The grid's elapsed time (`elapsed`, measured by the call that trained `trained` runs;
    else from the records), the one-device time of the runs that had their device to
    themselves, and the estimates on several devices that differ from it."""
    runs = [r for c in cells for r in c.runs]
    if not runs:
        return ""
    n = len(runs)
    if elapsed is not None:
        out = [
            f"Grid time: the call that trained {trained} of the {n} runs above took "
            f"{duration(elapsed)} from its start to this report, measured (its imports and "
            "checks, the notebooks' start-up and the scaling figures included)."
        ]
    else:
        which = "the run above" if n == 1 else f"the {n} runs above"
        out = [
            f"Grid time: {which} trained for {duration(busy_time(runs))}, the time during "
            "which at least one of them was training, from their recorded start and end."
        ]
    shared = shared_device(runs)
    alone = [r["wall_time_s"] for r, s in zip(runs, shared, strict=True) if not s]
    if sum(shared):
        out.append(
            f"{sum(shared)} of them shared their device with another run at the same time, so "
            "their wall times are stretched: they are left out of the sums below."
        )
    if alone:
        one = duration(sum(alone))
        which = (
            "the run that had its device to itself"
            if len(alone) == 1
            else (f"the {len(alone)} runs that had their device to themselves")
        )
        out.append(f"On one device, {which} trained for {one} in all (start-up excluded)")
        more, seen = [], one
        for k in (2, 4, 8):
            if (text := duration(grid_time(alone, k))) != seen:
                more.append(f"{k} devices {text}")
                seen = text
        out[-1] += (
            "; on several devices like it, estimated from those times (each run to the first "
            f"free device, longest first): {', '.join(more)}."
            if more
            else "."
        )
    return " ".join(out) + "\n"


def replace_between(text: str, block: str, start: str, end: str) -> str:
    """Put `block` between the marker lines `start` and `end` (appended if absent)."""
    if start in text and end in text and text.index(start) < text.index(end):
        head, rest = text.split(start, 1)
        return f"{head}{start}\n{block.strip()}\n{end}{rest.split(end, 1)[1]}"
    return f"{text.rstrip()}\n\n{start}\n{block.strip()}\n{end}\n"


def _curve_tables(a: Analysis, images: Path, base: Path, missing: dict) -> str:
    """Per setting and metric, models by rows and sizes by columns; a setting none of whose
    cells ran is one line."""
    have = {(c.setting, c.model, c.fraction) for c in a.drawn}
    out = []
    for setting in SETTING_DIRS:
        keys = {k for k in have | set(missing) if k[0] == setting}
        models = [m for m in MODEL_TITLES if m in BASE_MODELS or any(k[1] == m for k in keys)]
        fractions = sorted(set(SEED_FRACTIONS) | {k[2] for k in keys if k in have})
        title = SETTING_TITLES[setting]
        out.append(f"#### {title[0].upper()}{title[1:]}\n")
        if not any(k[0] == setting for k in have):
            out.append("Not produced (see the summary table).\n" if keys else "No runs yet.\n")
            continue
        for metric, word in (("acc", "Accuracy"), ("loss", "Loss")):
            out.append(f"| {word} | " + " | ".join(map(fraction_title, fractions)) + " |")
            out.append("|---|" + "---|" * len(fractions))
            for model in models:
                row = []
                for f in fractions:
                    key = (setting, model, f)
                    path = os.path.relpath(curve_path(images, *key, metric), base)
                    row.append(
                        f"![{model} {metric} {fraction_title(f)}]({path})"
                        if key in have
                        else "not produced: " + ("failed" if missing[key].failed else "no weights")
                        if key in missing
                        else "–"
                    )
                out.append(f"| {MODEL_TITLES[model]} | " + " | ".join(row) + " |")
            out.append("")
    return "\n".join(out)


def _header(a: Analysis, command: str) -> str:
    """Who made these numbers: the command, date, profile, hardware, versions and data."""
    runs = a.runs
    hardware = "; ".join(sorted({r["hardware"] for r in runs})) or "none"
    versions = "; ".join(
        sorted({f"torch {r['torch']}, torchvision {r['torchvision']}" for r in runs})
    )
    quick = (
        " **Quick profile: short smoke runs on a CPU (few capped epochs, validation and test "
        "on fixed subsets), not converged results.**"
        if a.quick
        else ""
    )
    return (
        f"_Generated by `{command}` on {time.strftime('%Y-%m-%d')}: profile `{a.profile}`, "
        f"hardware {hardware}, {versions or '–'}._{quick}\n\nData: CIFAR-10 from "
        f"{data_title(runs)}.\n\n{recipe_line(a)}\n"
    )


DATA_ORIGINS = {
    "original": "the original files (their MD5s match torchvision's)",
    "re-encoded": (
        "a re-encoded copy (its checksums differ from torchvision's MD5s of the original "
        "files): accuracies are close to, not equal to, what the original files give"
    ),
    "unknown": "files whose origin was not recorded",
}


def data_title(runs: list[dict]) -> str:
    """The runs' data folders, relative to the repository, and where they came from."""
    folders = sorted({r["config"]["data_dir"] for r in runs})
    if not folders:
        return "–"
    names = [
        f"`{f}/`" if not f.startswith("..") else "a folder outside the repository" for f in folders
    ]
    origins = sorted({r["data"] for r in runs})
    return f"{', '.join(names)}: " + "; ".join(DATA_ORIGINS[o] for o in origins)


def recipe_line(a: Analysis) -> str:
    """The recipe that made these numbers, read from the runs' own configurations."""
    if not a.runs:
        return ""
    if not a.recipe:
        return "Recipe: today's (`common/config.py`, RECIPES), as the runs' configurations record."
    r = a.runs[0]
    today = make_config(r["model"], r["data_fraction"], r["pretrained"], 0, r["profile"])
    now = today.training_key()
    differs = ", ".join(f"{k} {v} (today {now.get(k)})" for k, v in a.recipe)
    return (
        "Recipe: **a former recipe**, as the runs' configurations record; it differs from "
        f"today's in {differs}. Today's recipe has not made these numbers."
    )


def headline(a: Analysis, missing: dict[ConditionKey, NotProduced]) -> str:
    """The README's first answer: test accuracy per model and size, scratch beside fine-tuned
    (one row per set of ImageNet weights), the recipe, and the starting point (full only)."""
    keys = {(c.setting, c.model, c.fraction) for c in a.cells} | set(missing)
    hardware = "; ".join(sorted({r["hardware"] for r in a.runs})) or "none yet"
    full = a.profile == "full"
    lines = [
        f"Test accuracy %, mean ± sd over seeds; profile `{a.profile}`, {hardware}."
        + ("" if full else " A pipeline check, not a result: see [Results](#results)."),
        "",
        recipe_line(a),
        "",
        "| model | data | from scratch | fine-tuned |"
        + (" starting point (scratch / fine-tuned) |" if full else ""),
        "|---|---|---:|---:|" + ("---:|" if full else ""),
    ]
    for model in MODEL_TITLES:
        for fraction in sorted({k[2] for k in keys if k[1] == model}):
            mine = [c for c in a.cells if (c.model, c.fraction) == (model, fraction)]
            cell = {s: [_headline_cell(c) for c in mine if c.setting == s] for s in SETTINGS}
            absent = ["not produced" if (s, model, fraction) in missing else "–" for s in SETTINGS]
            start = [STARTING_POINT.get((s, model, fraction)) for s in SETTINGS]
            first = " / ".join(f"{v}" if v else "–" for v in start) if any(start) else "–"
            left = cell["scratch"][0] if cell["scratch"] else absent[0]
            for right in cell["pretrained"] or absent[1:]:
                row = f"| {MODEL_TITLES[model]} | {fraction_title(fraction)} | {left} | {right} |"
                lines.append(row + (f" {first} |" if full else ""))
    return "\n".join(lines) + "\n"


def _headline_cell(cell: Condition) -> str:
    weights = f" ({weights_title(cell.runs[0])})" if cell.runs[0]["pretrained"] else ""
    return mean_sd(*cell.stat("test_acc")) + weights


def notes(a: Analysis, call: Call) -> list[str]:
    """The lines under the table: remedies, other configurations, inherited recipes, runs of
    other ImageNet weights, and where the recipes depart from their sources."""
    out = list(call.notes)
    if a.others:
        n, labels = sum(len(c.runs) for c in a.others), sorted({c.label for c in a.others})
        out.append(
            f"{n} run{'s' * (n != 1)} of {len(labels)} other configuration"
            f"{'s' * (len(labels) != 1)} ({'; '.join(labels)}) in this folder trained "
            "differently from the latest runs: separate rows of the table, left out of the "
            "curves, figures, fits and observations."
        )
    models = {c.model for c in a.cells}
    out += [
        f"{MODEL_TITLES[m]} trains with {MODEL_TITLES[recipe_model(m)]}'s recipe, not tuned "
        f"for it: {SAME_RECIPE[m][1]}."
        for m in MODEL_TITLES
        if m in models and m in SAME_RECIPE
    ]
    if a.apart:
        which = sorted({f"{MODEL_TITLES[r['model']]} from {weights_title(r)}" for r in a.apart})
        n = len(a.apart)
        out.append(
            f"{n} fine-tuned run{'s' * (n != 1)} started from other ImageNet weights than the "
            f"latest runs of {'their' if n != 1 else 'its'} model ({'; '.join(which)}): rows of "
            "their own in the table and the headline, left out of the curves, figures, fits and "
            "observations, which never pool two sets of weights."
        )
    return out


def deviations() -> str:
    """Where the recipes depart from their sources (config.DEVIATIONS), as a list."""
    return "Where the recipes depart from their sources:\n\n" + "".join(
        f"- {d}\n" for d in DEVIATIONS
    )


def _missing(a: Analysis, call: Call) -> dict[ConditionKey, NotProduced]:
    """The cells without runs: those the call could not run, and those whose seeds all failed."""
    have = {(c.setting, c.model, c.fraction) for c in a.cells}
    failed = {
        k: NotProduced(failed="; ".join(f"seed {s}: {why}" for s, why in sorted(seeds.items())))
        for k, seeds in call.failed.items()
    }
    return {k: v for k, v in (call.missing | failed).items() if k not in have}


def write_report(
    output_dir: str | Path,
    images_dir: str | Path,
    results_dir: str | Path,
    readme: str | Path | None,
    profile: str,
    call: Call,
) -> Path:
    """Build the analysis record once, draw every cell's curves, and render
    results/summary.md and the README's headline and results section from it (never a quick
    profile's over a full one's: see `keeps_full`)."""
    images = Path(images_dir)
    a = analysis.build(collect(output_dir, profile), profile)
    for cell in a.drawn:
        save_curves(cell.runs, images)
    missing = _missing(a, call)
    table = summary_table(a.rows, missing, call.failed, profile)
    table += "".join(f"\n- {note}" for note in notes(a, call)) + "\n"
    elapsed = time.perf_counter() - call.started if call.trained else None
    table += f"\n{grid_time_line(a.cells, elapsed, call.trained)}" if a.cells else ""
    header = _header(a, call.command)
    summary = Path(results_dir) / "summary.md"
    here = summary.resolve().parent
    sized = model_size_section(a, images, here, call.figures)
    scaled = _scaling_section(a, images, here, call.figures)
    write_text(summary, f"# Summary\n\n{header}\n{table}\n{deviations()}\n{scaled}{sized}")
    if not readme or keeps_full(Path(readme), profile):
        return summary
    readme, runs = Path(readme), len(a.runs) + sum(len(c.runs) for c in a.others)
    base, text = readme.resolve().parent, readme.read_text() if readme.exists() else ""
    held = section_runs(text)
    if held is not None and runs < held:
        print(
            f"{readme}: its results section held {held} runs and now shows {runs}: the "
            "earlier section is replaced (it is in version control)"
        )
    block = (
        f"<!-- runs: {runs} -->\n{header}\n{deviations()}\n"
        f"### Curves\n\n{_curve_tables(a, images, base, missing)}\n"
        f"### Summary table\n\n{table}\n{_scaling_section(a, images, base, call.figures)}"
        f"{model_size_section(a, images, base, call.figures)}"
    )
    text = replace_between(text, block, README_START, README_END)
    if HEADLINE_START in text and HEADLINE_END in text:
        text = replace_between(text, headline(a, missing), HEADLINE_START, HEADLINE_END)
    write_text(readme, text)
    return summary


def _section(text: str) -> str | None:
    if README_START not in text or README_END not in text:
        return None
    return text.split(README_START, 1)[1].split(README_END, 1)[0]


def keeps_full(readme: Path, profile: str) -> bool:
    """True when `readme` shows full-profile results and this report is a quick one, which
    must not replace them (the quick summary still goes to its own summary.md)."""
    return profile == "quick" and readme.exists() and section_profile(readme.read_text()) == "full"


def section_profile(text: str) -> str | None:
    """The profile whose results the README's section shows, or None without one."""
    found = re.search(r"profile `(\w+)`", _section(text) or "")
    return found.group(1) if found else None


def section_runs(text: str) -> int | None:
    """How many runs the README's results section reports, or None without one."""
    section = _section(text)
    if section is None:
        return None
    found = re.search(r"<!-- runs: (\d+) -->", section)
    return int(found.group(1)) if found else 0


def figure_links(names: Iterable[str], images: Path, base: Path, drawn: list[Path] | None) -> str:
    """Markdown images of the scaling figures `names` that exist, relative to `base`; with
    `drawn`, only those this call drew (a figure left by an earlier call is not linked)."""
    figures = [images / "scaling" / f"{name}.png" for name in names]
    if drawn is not None:
        figures = [f for f in figures if f.resolve() in {d.resolve() for d in drawn}]
    return " ".join(f"![{p.stem}]({os.path.relpath(p, base)})" for p in figures if p.exists())


def _scaling_section(a: Analysis, images: Path, base: Path, drawn: list[Path] | None) -> str:
    """The scaling figures (notebooks/scaling.ipynb's), the extrapolation check and the
    observations."""
    links = figure_links(
        ("error_vs_data", "accuracy_vs_time", "pretrained_gap"), images, base, drawn
    )
    bullets = "\n".join(f"- {line}" for line in observations(a))
    return (
        f"### Scaling with data\n\n{links or '(figures not drawn yet)'}\n\nFit on the smaller "
        f"sizes, predict the largest:\n\n{extrapolation_table(a)}\n"
        f"### Observations (generated from the numbers above)\n\n{bullets}\n"
    )


def model_size_section(a: Analysis, images: Path, base: Path, drawn: list[Path] | None) -> str:
    """With runs of AXIS_SIZES or more models: the model-size figure and the joint fit with its
    leave-one-out checks; '' with fewer."""
    if len({r["model"] for r in a.plotted}) < AXIS_SIZES:
        return ""
    image = figure_links(["error_vs_parameters"], images, base, drawn) or "(figure not drawn yet)"
    return (
        f"\n### Scaling with model size\n\n{image}\n\nThe joint fit over data and model size, "
        "and fitted without the largest model or size, its prediction of what was left out:"
        f"\n\n{joint_table(a)}"
    )
