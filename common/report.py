"""What a sweep leaves for readers, in Markdown and PNG: curves per condition, the summary table
(results/summary.md), the grid-time estimate, and the README's headline and results section."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import REPO
from .data import fraction_title
from .files import write_text
from .grid import BASE_MODELS, EXTRA_MODEL, SEED_FRACTIONS
from .observations import extrapolation_table, observations
from .plots import SETTING_DIRS, curve_path, save_curves
from .results import (
    MODEL_TITLES,
    SETTING_TITLES,
    STARTING_POINT,
    Condition,
    collect,
    group_conditions,
    split_configurations,
    weights_title,
)

README_START = "<!-- results:start -->"
README_END = "<!-- results:end -->"
HEADLINE_START = "<!-- headline:start -->"  # the README's first screen: one compact table
HEADLINE_END = "<!-- headline:end -->"


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
    ImageNet weights file `weights`, which is not to be had here."""

    failed: str = ""
    weights: str = ""


ConditionKey = tuple[str, str, float]  # (setting, model, fraction)


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
    """One line for every cell that needs ImageNet weights it cannot have here; '' if none."""
    cells = {k: v for k, v in missing.items() if v.weights}
    if not cells:
        return ""
    files = ", ".join(sorted({v.weights for v in cells.values()}))
    n = len(cells)
    return (
        f"not produced: needs ImageNet weights: {n} pretrained cell{'s' * (n != 1)} "
        f"({_where_list(cells)}) need {files}, not to be had here."
    )


def tta_title(runs: list[dict[str, Any]]) -> str:
    """Whether the runs' test accuracy used test-time augmentation: 'flip', 'none' (runs
    recorded before the setting existed used none)."""
    return "/".join(sorted({r.get("test_tta", "none") for r in runs}))


def summary_table(cells: list[Condition], missing: dict[ConditionKey, NotProduced]) -> str:
    """The Markdown summary: one row per cell and configuration (with several configurations,
    the setting column names what differs), a row for each cell whose runs failed, and one line
    under it for all the cells that need ImageNet weights not to be had here."""
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
                f"| {mean_sd(*c.stat('best_val_acc'))} | {mean_sd(*c.stat('test_acc'))}{test_note} "
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


def grid_time_line(cells: list[Condition]) -> str:
    """How long these runs take one after another on one device, and, estimated, on several."""
    times = [r["wall_time_s"] for c in cells for r in c.runs]
    if not times:
        return ""
    more = ", ".join(f"{n} devices {duration(grid_time(times, n))}" for n in (2, 4, 8))
    runs = "the run above" if len(times) == 1 else f"the {len(times)} runs above"
    return (
        f"Grid time: {runs} trained for {duration(sum(times))} in all, the "
        "sum of the wall times each run measured (without its notebook's start-up), which is "
        "the grid's time on one device. On several devices like it, estimated from those "
        f"per-run times (each run to the first free device, longest first): {more}.\n"
    )


def replace_between(text: str, block: str, start: str, end: str) -> str:
    """Put `block` between the marker lines `start` and `end` (appended if absent)."""
    if start in text and end in text and text.index(start) < text.index(end):
        head, rest = text.split(start, 1)
        return f"{head}{start}\n{block.strip()}\n{end}{rest.split(end, 1)[1]}"
    return f"{text.rstrip()}\n\n{start}\n{block.strip()}\n{end}\n"


def _curve_tables(
    cells: list[Condition], images_dir: Path, base: Path, missing: dict[ConditionKey, NotProduced]
) -> str:
    """The seed's layout: per setting and metric, models by rows and the three sizes by columns;
    a setting none of whose cells ran is one line."""
    have = {(c.setting, c.model, c.fraction) for c in cells}
    out = []
    for setting in SETTING_DIRS:
        models = [*BASE_MODELS, *([EXTRA_MODEL] if setting == "pretrained" else [])]
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
                + " | ".join(fraction_title(f) for f in SEED_FRACTIONS)
                + " |\n|---|"
                + "---|" * len(SEED_FRACTIONS)
            )
            for model in models:
                row = []
                for f in SEED_FRACTIONS:
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
                if model == EXTRA_MODEL and all(r == "–" for r in row):
                    continue
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


def data_title(runs: list[dict]) -> str:
    """The runs' data folders, relative to the repository: never a machine's absolute path."""
    folders = sorted({Path(r["config"]["data_dir"]).resolve() for r in runs})
    if not folders:
        return "–"
    return ", ".join(
        f"`{f.relative_to(REPO)}/`" if f.is_relative_to(REPO) else "a folder outside the repository"
        for f in folders
    )


def headline(cells: list[Condition], missing: dict[ConditionKey, NotProduced], profile: str) -> str:
    """The README's first answer: test accuracy per model and size, scratch beside fine-tuned,
    with the starting point, the hardware and the profile."""
    by_key = {(c.setting, c.model, c.fraction): c for c in cells}
    keys = set(by_key) | set(missing)
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
            row = []
            for setting in SETTING_DIRS:
                cell = by_key.get((setting, model, fraction))
                if cell:
                    weights = (
                        f" ({weights_title(cell.runs[0])})" if cell.runs[0]["pretrained"] else ""
                    )
                    row.append(mean_sd(*cell.stat("test_acc")) + weights)
                else:
                    row.append("not produced" if (setting, model, fraction) in missing else "–")
            start = [STARTING_POINT.get((s, model, fraction)) for s in SETTING_DIRS]
            first = " / ".join(f"{v}" if v else "–" for v in start) if any(start) else "–"
            name, size = MODEL_TITLES[model], fraction_title(fraction)
            lines.append(f"| {name} | {size} | {' | '.join(row)} | {first} |")
    return "\n".join(lines) + "\n"


def write_report(
    output_dir: str | Path,
    images_dir: str | Path,
    results_dir: str | Path,
    readme: str | Path | None,
    profile: str,
    command: str,
    missing: dict[ConditionKey, NotProduced],
    notes: list[str] | tuple[str, ...] = (),
) -> Path:
    """Draw every cell's curves, write results/summary.md, and the README's headline and
    results section.

    `missing` says why cells have no runs (shown instead of numbers); `notes` are remedies,
    listed under the table.
    """
    images_dir = Path(images_dir)
    latest, others = split_configurations(collect(output_dir, profile))
    cells = group_conditions(latest)
    for cell in cells:
        save_curves(cell.runs, images_dir)
    have = {(c.setting, c.model, c.fraction) for c in cells}
    missing = {k: v for k, v in missing.items() if k not in have}
    header = _header(cells, profile, command)
    rows = group_conditions(latest + others)  # labelled by what differs between configurations
    if others:
        notes = [*notes, others_line([c for c in rows if c.variant != cells[0].variant])]
    table = summary_table(rows, missing)
    table += "".join(f"\n- {note}" for note in notes) + ("\n" if notes else "")
    table += f"\n{grid_time_line(cells)}" if cells else ""
    summary = Path(results_dir) / "summary.md"
    write_text(summary, f"# Summary\n\n{header}\n{table}")
    if readme:
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
            f"### Curves\n\n{_curve_tables(cells, images_dir, base, missing)}\n"
            f"### Summary table\n\n{table}\n{_scaling_section(cells, images_dir, base)}"
        )
        text = replace_between(text, block, README_START, README_END)
        if HEADLINE_START in text and HEADLINE_END in text:
            text = replace_between(
                text, headline(cells, missing, profile), HEADLINE_START, HEADLINE_END
            )
        write_text(readme, text)
    return summary


def section_runs(text: str) -> int | None:
    """How many runs the README's results section reports, or None without one."""
    if README_START not in text or README_END not in text:
        return None
    section = text.split(README_START, 1)[1].split(README_END, 1)[0]
    found = re.search(r"<!-- runs: (\d+) -->", section) or re.search(
        r"Grid time: the (\d+) runs", section
    )
    return int(found.group(1)) if found else 0


def _scaling_section(cells: list[Condition], images_dir: Path, base: Path) -> str:
    """The scaling figures (drawn by notebooks/scaling.ipynb), the extrapolation check and the
    observations, all generated from the same runs as the table."""
    metrics = [r for c in cells for r in c.runs]
    figures = [
        images_dir / "scaling" / f"{name}.png"
        for name in ("error_vs_data", "accuracy_vs_time", "pretrained_gap")
    ]
    images = " ".join(f"![{p.stem}]({os.path.relpath(p, base)})" for p in figures if p.exists())
    bullets = "\n".join(f"- {line}" for line in observations(metrics))
    check = f"Fit on the smaller sizes, predict the largest:\n\n{extrapolation_table(metrics)}\n"
    return (
        f"### Scaling with data\n\n{images or '(figures not drawn yet)'}\n\n{check}"
        f"### Observations (generated from the numbers above)\n\n{bullets}\n"
    )
