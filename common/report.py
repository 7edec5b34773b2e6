"""What a sweep leaves for readers, in Markdown and PNG: curves per condition, the summary table
(results/summary.md), the grid-time estimate, and the README's headline and results section."""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import REPO, SAME_RECIPE, SETTINGS, recipe_model
from .data import fraction_title
from .files import write_text
from .fits import AXIS_SIZES
from .grid import BASE_MODELS, SEED_FRACTIONS
from .observations import extrapolation_table, joint_table, observations
from .plots import SETTING_DIRS, curve_path, save_curves
from .results import (
    MODEL_TITLES,
    SETTING_TITLES,
    STARTING_POINT,
    Condition,
    collect,
    group_conditions,
    moment,
    split_configurations,
    split_weights,
    weights_title,
)

README_START = "<!-- results:start -->"
README_END = "<!-- results:end -->"
HEADLINE_START = "<!-- headline:start -->"  # the README's first screen: one compact table
HEADLINE_END = "<!-- headline:end -->"
OVERLAP_SLACK = 2.0  # seconds two runs' records may overlap and still be one after the other


def weights_apart_line(apart: list[dict[str, Any]], plotted: list[dict[str, Any]]) -> str:
    """One line on the fine-tuned runs whose ImageNet weights differ from those of their model's
    latest runs: rows of their own in the table, never pooled into a curve or a fit."""
    used = {m["model"]: weights_title(m) for m in plotted if m["pretrained"]}
    other: dict[str, set[str]] = {}
    for m in apart:
        other.setdefault(m["model"], set()).add(weights_title(m))
    which = "; ".join(
        f"{MODEL_TITLES[model]} from {', '.join(sorted(other[model]))} (the curves and figures "
        f"use {used[model]})"
        for model in sorted(other, key=list(MODEL_TITLES).index)
    )
    n = len(apart)
    return (
        f"{n} fine-tuned run{'s' * (n != 1)} started from other ImageNet weights than the latest "
        f"runs of {'their' if n != 1 else 'its'} model: {which}. They are rows of their own in "
        "the table and the headline, and left out of the curves, figures, fits and observations, "
        "which never pool two sets of weights."
    )


def others_line(others: list[Condition]) -> str:
    """One line on the cells of configurations other than the latest: how many runs, what
    differs, and what became of them."""
    runs = sum(len(c.runs) for c in others)
    labels = sorted({c.label for c in others})
    return (
        f"{runs} run{'s' * (runs != 1)} of {len(labels)} other "
        f"configuration{'s' * (len(labels) != 1)} ({'; '.join(labels)}) in this folder "
        "trained differently from the latest runs: they are separate rows of the table, and "
        "left out of the curves, figures, fits and observations."
    )


def mean_sd(mean: float, sd: float, n: int) -> str:
    """A percentage, with its sd and count when there are several seeds: '52.00 ± 2.00 (n=3)'."""
    return f"{100 * mean:.2f}" + (f" ± {100 * sd:.2f} (n={n})" if n > 1 else "")


@dataclass(frozen=True)
class NotProduced:
    """Why a cell of the grid has no runs: its runs `failed` (the error), or they need the
    ImageNet weights file `weights`, which was not found on this machine."""

    failed: str = ""
    weights: str = ""


ConditionKey = tuple[str, str, float]  # (setting, model, fraction)


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


def _where_list(keys: Iterable[ConditionKey]) -> str:
    """'ResNet-18 at 1/16, 50%; ResNeXt50_32x4d at 100%'."""
    by_model: dict[str, list[float]] = {}
    for _, model, fraction in sorted(keys, key=lambda k: (list(MODEL_TITLES).index(k[1]), k[2])):
        by_model.setdefault(model, []).append(fraction)
    return "; ".join(
        f"{MODEL_TITLES[m]} at {', '.join(fraction_title(f) for f in fs)}"
        for m, fs in by_model.items()
    )


def weights_line(missing: dict[ConditionKey, NotProduced]) -> str:
    """One line for every cell that needs ImageNet weights not found on this machine; ''
    if none."""
    cells = {k: v for k, v in missing.items() if v.weights}
    if not cells:
        return ""
    files = ", ".join(sorted({v.weights for v in cells.values()}))
    n = len(cells)
    return (
        f"not produced: needs ImageNet weights: {n} pretrained "
        f"{'cell' if n == 1 else 'cells'} ({_where_list(cells)}) "
        f"{'needs' if n == 1 else 'need'} {files}, not found on this machine."
    )


def tta_title(runs: list[dict[str, Any]]) -> str:
    """Whether the runs' test accuracy used test-time augmentation: 'flip', 'none' (runs
    recorded before the setting existed used none)."""
    return "/".join(sorted({r.get("test_tta", "none") for r in runs}))


def summary_table(
    cells: list[Condition],
    missing: dict[ConditionKey, NotProduced],
    failed: dict[ConditionKey, dict[int, str]] | None = None,
) -> str:
    """The Markdown summary: one row per cell and configuration (with several configurations,
    the setting column names what differs; a row names the seeds of it that `failed`), a row
    for each cell whose runs all failed, and one line under it for all the cells that need
    ImageNet weights not found on this machine."""
    failed = failed or {}
    lines = [
        "| model | data | setting | weights | train images | epochs | best val acc % "
        "| test acc % | TTA | starting point % | wall time / run |",
        "|---|---|---|---|---:|---:|---:|---:|---|---:|---:|",
    ]
    rows: list[tuple[tuple[Any, ...], str]] = []
    order = {name: i for i, name in enumerate(MODEL_TITLES)}
    for c in cells:
        first = c.runs[0]
        epochs = sorted({r["epochs"] for r in c.runs})
        start = STARTING_POINT.get((c.setting, c.model, c.fraction))
        test_note = "" if first["test_images"] >= 10_000 else f" ({first['test_images']:,} imgs)"
        setting = c.setting + (f" ({c.label})" if c.label else "")
        rows.append(
            (
                (c.setting != "scratch", order[c.model], c.fraction, str(c.variant)),
                f"| {MODEL_TITLES[c.model]} | {fraction_title(c.fraction)} "
                f"| {setting} | {weights_title(first)} | {first['train_images']:,} "
                f"| {'/'.join(map(str, epochs))} "
                f"| {mean_sd(*c.stat('best_val_acc'))} "
                f"| {seeds_cell(c, failed.get((c.setting, c.model, c.fraction), {}))}{test_note} "
                f"| {tta_title(c.runs)} | {start if start else '–'} "
                f"| {c.stat('wall_time_s')[0]:.0f} s |",
            )
        )
    for (setting, model, fraction), why in missing.items():
        if why.failed:
            start = STARTING_POINT.get((setting, model, fraction))
            rows.append(
                (
                    (setting != "scratch", order[model], fraction, ""),
                    f"| {MODEL_TITLES[model]} | {fraction_title(fraction)} | {setting} | – | – "
                    f"| – | not produced | not produced: failed: {why.failed} | – "
                    f"| {start if start else '–'} | – |",
                )
            )
    table = "\n".join(lines + [r for _, r in sorted(rows, key=lambda r: r[0])]) + "\n"
    line = weights_line(missing)
    return table + (f"\n- {line}\n" if line else "")


def seeds_cell(cell: Condition, failed: dict[int, str]) -> str:
    """The cell's test accuracy over its seeds, naming the seeds of it that failed:
    '84.10 ± 0.20 (n = 2 of 3: seed 1 failed: <reason>)'."""
    mean, sd, n = cell.stat("test_acc")
    if not failed:
        return mean_sd(mean, sd, n)
    why = "; ".join(f"seed {seed} failed: {reason}" for seed, reason in sorted(failed.items()))
    spread = f" ± {100 * sd:.2f}" if n > 1 else ""
    return f"{100 * mean:.2f}{spread} (n = {n} of {n + len(failed)}: {why})"


def grid_time(seconds: Iterable[float], devices: int) -> float:
    """The wall time of runs taking `seconds` each on `devices` alike devices, each run going
    to the first free device, longest first."""
    loads = [0.0] * devices
    for t in sorted(seconds, reverse=True):
        loads[loads.index(min(loads))] += t
    return max(loads)


def duration(seconds: float) -> str:
    """95 s, 8.1 min, 31 min, 3.2 h."""
    if seconds < 100:
        return f"{seconds:.0f} s"
    minutes = seconds / 60
    if minutes < 10:
        return f"{minutes:.1f} min"
    return f"{minutes:.0f} min" if minutes < 180 else f"{minutes / 60:.1f} h"


def interval(run: dict[str, Any]) -> tuple[float, float]:
    """When a run trained, in seconds since the epoch: its last session's start and its end
    (older records kept no start: their end less their wall time)."""
    end = moment(run["finished_at"])
    start = moment(run["started_at"]) if "started_at" in run else end - run["wall_time_s"]
    return start, end


def shared_device(runs: list[dict[str, Any]]) -> list[bool]:
    """Per run: True when another run trained on the same device of the same machine at the
    same time, so that both were slowed and neither wall time is the device's own. Older
    records, which name neither the machine nor the device's index, never count as sharing."""
    spans = [interval(r) for r in runs]
    where = [(r.get("machine"), r["device"]) for r in runs]

    def overlap(i: int, j: int) -> float:
        return min(spans[i][1], spans[j][1]) - max(spans[i][0], spans[j][0])

    # older records stamp to the second: runs one after another may seem to touch
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
    for start, end in sorted(interval(r) for r in runs):
        total += max(0.0, end - max(start, reach))
        reach = max(reach, end)
    return total


def grid_time_line(cells: list[Condition], elapsed: float | None = None, trained: int = 0) -> str:
    """The grid's measured elapsed time (`elapsed`, of the call that trained `trained` of the
    runs; else from the runs' records), the time on one device from the runs that had their
    device to themselves, and from those an estimate on several devices."""
    runs = [r for c in cells for r in c.runs]
    if not runs:
        return ""
    n = len(runs)
    if elapsed is not None:
        head = (
            f"Grid time: the call that trained {trained} of the {n} runs above took "
            f"{duration(elapsed)} from its start to this report, measured (its imports and "
            "checks, the notebooks' start-up and the scaling figures included)."
        )
    else:
        which = "the run above" if n == 1 else f"the {n} runs above"
        head = (
            f"Grid time: {which} trained for {duration(busy_time(runs))}, the time during "
            "which at least one of them was training, from their recorded start and end."
        )
    shared = shared_device(runs)
    alone = [r["wall_time_s"] for r, s in zip(runs, shared, strict=True) if not s]
    out = [head]
    if sum(shared):
        out.append(
            f"{sum(shared)} of them shared their device with another run at the same time, so "
            "their wall times are stretched: they are left out of the sums below."
        )
    if alone:
        more = ", ".join(f"{k} devices {duration(grid_time(alone, k))}" for k in (2, 4, 8))
        which = (
            "the run that had its device"
            if len(alone) == 1
            else (f"the {len(alone)} runs that had their device")
        )
        out.append(
            f"On one device, {which} to {'itself' if len(alone) == 1 else 'themselves'} trained "
            f"for {duration(sum(alone))} in all (each run's own wall time, start-up excluded); "
            "on several devices like it, estimated from those times (each run to the first free "
            f"device, longest first): {more}."
        )
    return " ".join(out) + "\n"


def replace_between(text: str, block: str, start: str, end: str) -> str:
    """Put `block` between the marker lines `start` and `end` (appended if absent)."""
    if start in text and end in text and text.index(start) < text.index(end):
        head, rest = text.split(start, 1)
        return f"{head}{start}\n{block.strip()}\n{end}{rest.split(end, 1)[1]}"
    return f"{text.rstrip()}\n\n{start}\n{block.strip()}\n{end}\n"


def _curve_tables(
    cells: list[Condition], images_dir: Path, base: Path, missing: dict[ConditionKey, NotProduced]
) -> str:
    """The seed's layout: per setting and metric, models by rows (ResNet-18 and ResNet-50, and
    every other model with runs or missing cells) and sizes by columns (the three seed sizes
    and any other with runs); a setting none of whose cells ran is one line."""
    have = {(c.setting, c.model, c.fraction) for c in cells}
    out = []
    for setting in SETTING_DIRS:
        keys = {k for k in have | set(missing) if k[0] == setting}
        models = [m for m in MODEL_TITLES if m in BASE_MODELS or any(k[1] == m for k in keys)]
        fractions = sorted(set(SEED_FRACTIONS) | {k[2] for k in keys if k in have})
        title = SETTING_TITLES[setting]
        out.append(f"#### {title[0].upper()}{title[1:]}\n")
        if not any(k[0] == setting for k in have):
            why = (
                "no runs yet"
                if not any(k[0] == setting for k in missing)
                else ("not produced (see the summary table)")
            )
            out.append(f"{why[0].upper()}{why[1:]}.\n")
            continue
        for metric, word in (("acc", "Accuracy"), ("loss", "Loss")):
            out.append(
                f"| {word} | "
                + " | ".join(fraction_title(f) for f in fractions)
                + " |\n|---|"
                + "---|" * len(fractions)
            )
            for model in models:
                row = []
                for f in fractions:
                    key = (setting, model, f)
                    if key in have:
                        rel = os.path.relpath(
                            curve_path(images_dir, setting, model, f, metric), base
                        )
                        row.append(f"![{model} {metric} {fraction_title(f)}]({rel})")
                    elif key in missing:
                        row.append(
                            "not produced: " + ("failed" if missing[key].failed else "no weights")
                        )
                    else:
                        row.append("–")
                out.append(f"| {MODEL_TITLES[model]} | " + " | ".join(row) + " |")
            out.append("")
    return "\n".join(out)


def _header(cells: list[Condition], profile: str, command: str) -> str:
    """Who made these numbers: the command, date, profile, hardware, versions and data."""
    runs = [r for c in cells for r in c.runs]
    hardware = sorted({r["hardware"] for r in runs}) or ["none"]
    versions = sorted({f"torch {r['torch']}, torchvision {r['torchvision']}" for r in runs}) or [
        "–"
    ]
    quick = (
        " **Quick profile: short smoke runs on a CPU (few capped epochs, validation and test "
        "on fixed subsets), not converged results.**"
        if profile == "quick"
        else ""
    )
    return (
        f"_Generated by `{command}` on {time.strftime('%Y-%m-%d')}: profile `{profile}`, "
        f"hardware {'; '.join(hardware)}, {'; '.join(versions)}._{quick}\n\n"
        f"Data: CIFAR-10 from {data_title(runs)}.\n"
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
    """The runs' data folders, relative to the repository (never a machine's absolute path),
    and whether they are the original files or a re-encoded copy."""
    folders = sorted({_folder_title(r["config"]["data_dir"]) for r in runs})
    if not folders:
        return "–"
    origins = sorted({r.get("data", "unknown") for r in runs})
    return f"{', '.join(folders)}: " + "; ".join(DATA_ORIGINS[o] for o in origins)


def _folder_title(path: str) -> str:
    """`data/` for a folder of the repository, recorded relative to it (or, in older records,
    absolute); 'a folder outside the repository' otherwise."""
    folder = Path(path)
    if folder.is_absolute():
        inside = folder.resolve().is_relative_to(REPO)
        folder = folder.resolve().relative_to(REPO) if inside else folder
    else:
        inside = not folder.as_posix().startswith("..") and folder.as_posix() != "."
    return f"`{folder.as_posix()}/`" if inside else "a folder outside the repository"


def headline(cells: list[Condition], missing: dict[ConditionKey, NotProduced], profile: str) -> str:
    """The README's first answer: test accuracy per model and size, scratch beside fine-tuned,
    with the starting point, the hardware and the profile. Fine-tuned cells from different
    ImageNet weights (V1, V2, one's own) are rows of their own, never one number."""
    keys = {(c.setting, c.model, c.fraction) for c in cells} | set(missing)
    runs = [r for c in cells for r in c.runs]
    hardware = "; ".join(sorted({r["hardware"] for r in runs})) or "none yet"
    lines = [
        f"Test accuracy %, mean ± sd over seeds; profile `{profile}`, {hardware}."
        + (
            " A pipeline check, not a result: see [Results](#results)."
            if profile == "quick"
            else ""
        ),
        "",
        "| model | data | from scratch | fine-tuned | starting point (scratch / fine-tuned) |",
        "|---|---|---:|---:|---:|",
    ]
    for model in MODEL_TITLES:
        for fraction in sorted({k[2] for k in keys if k[1] == model}):
            mine = [c for c in cells if (c.model, c.fraction) == (model, fraction)]
            scratch = [_headline_cell(c) for c in mine if c.setting == "scratch"]
            tuned = [_headline_cell(c) for c in mine if c.setting == "pretrained"]
            absent = ["not produced" if (s, model, fraction) in missing else "–" for s in SETTINGS]
            start = [STARTING_POINT.get((s, model, fraction)) for s in SETTINGS]
            first = " / ".join(f"{v}" if v else "–" for v in start) if any(start) else "–"
            name, size = MODEL_TITLES[model], fraction_title(fraction)
            left = scratch[0] if scratch else absent[0]  # the latest configuration: one cell
            for right in tuned or absent[1:]:
                lines.append(f"| {name} | {size} | {left} | {right} | {first} |")
    return "\n".join(lines) + "\n"


def _headline_cell(cell: Condition) -> str:
    weights = f" ({weights_title(cell.runs[0])})" if cell.runs[0]["pretrained"] else ""
    return mean_sd(*cell.stat("test_acc")) + weights


def write_report(
    output_dir: str | Path,
    images_dir: str | Path,
    results_dir: str | Path,
    readme: str | Path | None,
    profile: str,
    call: Call,
) -> Path:
    """Draw every cell's curves, write results/summary.md, and the README's headline and
    results section (never a quick profile's over a full one's: see `keeps_full`)."""
    images_dir = Path(images_dir)
    latest, others = split_configurations(collect(output_dir, profile))
    plotted, apart = split_weights(latest)
    cells = group_conditions(latest)  # every set of weights: the table and the headline
    drawn = group_conditions(plotted)  # one set per model: curves, figures, fits, observations
    for cell in drawn:
        save_curves(cell.runs, images_dir)
    have = {(c.setting, c.model, c.fraction) for c in cells}
    all_failed = {
        k: NotProduced(failed="; ".join(f"seed {s}: {why}" for s, why in sorted(seeds.items())))
        for k, seeds in call.failed.items()
        if k not in have
    }
    missing = {k: v for k, v in (call.missing | all_failed).items() if k not in have}
    header = _header(cells, profile, call.command)
    rows = group_conditions(latest + others)  # labelled by what differs between configurations
    notes = call.notes
    if others:
        notes = [*notes, others_line([c for c in rows if c.variant != cells[0].variant])]
    table = summary_table(rows, missing, call.failed)
    notes = [*notes, *inherited_recipes({c.model for c in cells})]
    notes += [weights_apart_line(apart, plotted)] if apart else []
    table += "".join(f"\n- {note}" for note in notes) + ("\n" if notes else "")
    elapsed = time.perf_counter() - call.started if call.trained else None
    table += f"\n{grid_time_line(cells, elapsed, call.trained)}" if cells else ""
    summary = Path(results_dir) / "summary.md"
    sized = model_size_section(drawn, images_dir, summary.resolve().parent, call.figures)
    write_text(summary, f"# Summary\n\n{header}\n{table}{sized}")
    if readme and not keeps_full(Path(readme), profile):
        readme = Path(readme)
        base = readme.resolve().parent
        text = readme.read_text() if readme.exists() else ""
        runs = len(latest) + len(others)
        held = section_runs(text)
        if held is not None and runs < held:
            print(
                f"{readme}: its results section held {held} runs and now shows {runs}: the "
                "earlier section is replaced (it is in version control)"
            )
        block = (
            f"<!-- runs: {runs} -->\n{header}\n"
            f"### Curves\n\n{_curve_tables(drawn, images_dir, base, missing)}\n"
            f"### Summary table\n\n{table}\n"
            f"{_scaling_section(drawn, images_dir, base, call.figures)}"
            f"{model_size_section(drawn, images_dir, base, call.figures)}"
        )
        text = replace_between(text, block, README_START, README_END)
        if HEADLINE_START in text and HEADLINE_END in text:
            text = replace_between(
                text, headline(cells, missing, profile), HEADLINE_START, HEADLINE_END
            )
        write_text(readme, text)
    return summary


def keeps_full(readme: Path, profile: str) -> bool:
    """True when `readme` shows full-profile results and this report is a quick one, which
    must not replace them (the quick summary still goes to its own summary.md)."""
    if profile != "quick" or not readme.exists():
        return False
    return section_profile(readme.read_text()) == "full"


def section_profile(text: str) -> str | None:
    """The profile whose results the README's section shows, or None without one."""
    if README_START not in text or README_END not in text:
        return None
    section = text.split(README_START, 1)[1].split(README_END, 1)[0]
    found = re.search(r"profile `(\w+)`", section)
    return found.group(1) if found else None


def section_runs(text: str) -> int | None:
    """How many runs the README's results section reports, or None without one."""
    if README_START not in text or README_END not in text:
        return None
    section = text.split(README_START, 1)[1].split(README_END, 1)[0]
    found = re.search(r"<!-- runs: (\d+) -->", section) or re.search(
        r"Grid time: the (\d+) runs", section
    )
    return int(found.group(1)) if found else 0


def figure_links(
    names: Iterable[str], images_dir: Path, base: Path, drawn: list[Path] | None
) -> str:
    """Markdown images of the scaling figures `names` that exist, relative to `base`; with
    `drawn`, only those this call drew (a figure left by an earlier call is not linked)."""
    figures = [images_dir / "scaling" / f"{name}.png" for name in names]
    if drawn is not None:
        figures = [f for f in figures if f.resolve() in {d.resolve() for d in drawn}]
    return " ".join(f"![{p.stem}]({os.path.relpath(p, base)})" for p in figures if p.exists())


def _scaling_section(
    cells: list[Condition], images_dir: Path, base: Path, drawn: list[Path] | None
) -> str:
    """The scaling figures (drawn by notebooks/scaling.ipynb; only those of `drawn`, when
    given), the extrapolation check and the observations, all from the same runs as the table."""
    metrics = [r for c in cells for r in c.runs]
    names = ("error_vs_data", "accuracy_vs_time", "pretrained_gap")
    images = figure_links(names, images_dir, base, drawn)
    bullets = "\n".join(f"- {line}" for line in observations(metrics))
    check = f"Fit on the smaller sizes, predict the largest:\n\n{extrapolation_table(metrics)}\n"
    return (
        f"### Scaling with data\n\n{images or '(figures not drawn yet)'}\n\n{check}"
        f"### Observations (generated from the numbers above)\n\n{bullets}\n"
    )


def inherited_recipes(models: Iterable[str]) -> list[str]:
    """One note per model that trains with another model's recipe (config.SAME_RECIPE), with
    the reason."""
    return [
        f"{MODEL_TITLES[m]} trains with {MODEL_TITLES[recipe_model(m)]}'s recipe, not tuned "
        f"for it: {SAME_RECIPE[m][1]}."
        for m in MODEL_TITLES
        if m in models and m in SAME_RECIPE
    ]


def model_size_section(
    cells: list[Condition], images_dir: Path, base: Path, drawn: list[Path] | None = None
) -> str:
    """With runs of AXIS_SIZES or more models (what the joint fit needs): the model-size figure
    (drawn by notebooks/scaling.ipynb; with `drawn`, only if this call drew it) and the joint
    fit over data and model size with its leave-one-out checks; '' with fewer."""
    metrics = [r for c in cells for r in c.runs]
    if len({m["model"] for m in metrics}) < AXIS_SIZES:
        return ""
    image = figure_links(["error_vs_parameters"], Path(images_dir), base, drawn)
    image = image or "(figure not drawn yet)"
    return (
        f"\n### Scaling with model size\n\n{image}\n\nThe joint fit over data and model size, "
        "and fitted without the largest model or size, its prediction of what was left out:"
        f"\n\n{joint_table(metrics)}"
    )
