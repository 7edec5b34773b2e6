"""What a sweep leaves for readers, in Markdown and PNG: curves per condition, the summary table
(results/summary.md), the grid time, and the README's headline and results section (written
through common/readme.py), each rendered from the one `analysis.Analysis` of the report."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from . import analysis
from .analysis import DEVICES, Analysis, NotProduced, Timing
from .analysis import Key as ConditionKey
from .config import DEVIATIONS, SAME_RECIPE, SETTINGS, recipe_model
from .data import fraction_title
from .files import write_text
from .fits import AXIS_SIZES
from .observations import extrapolation_table, joint_table, observations, table
from .plots import SETTING_DIRS, curve_path, save_curves
from .readme import keeps_full, update
from .results import MODEL_TITLES, SETTING_TITLES, STARTING_POINT, Condition, collect, weights_title
from .runner import BASE_MODELS, SEED_FRACTIONS

SUMMARY = "model|data|setting|weights|train images:|epochs:|best val acc %:|test acc %:|TTA"
DATA_FIGURES = ("error_vs_data", "accuracy_vs_time", "pretrained_gap")  # scaling.write_scaling's
QUICK = (
    " **Quick profile: short smoke runs on a CPU (few capped epochs, validation and test on "
    "fixed subsets), not converged results.**"
)
DATA_ORIGINS = {  # results.data_origin's verdicts on the runs' data files
    "original": "the original files (their MD5s match torchvision's)",
    "re-encoded": "a re-encoded copy (its checksums differ from torchvision's MD5s of the original "
    "files): accuracies are close to, not equal to, what the original files give",
    "unknown": "files whose origin was not recorded",
}
DEVIATION_LIST = "Where the recipes depart from their sources:\n\n" + "".join(
    f"- {d}\n" for d in DEVIATIONS
)
OUTSIDE = "a folder outside the repository"  # a data folder not under the repository
LEFT_OUT = "left out of the curves, figures, fits and observations"


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


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' * (n != 1)}"  # '1 run', '3 runs'


def _order(key: ConditionKey) -> tuple:
    """Scratch before fine-tuned, then the models as MODEL_TITLES lists them, then the size."""
    return key[0] != "scratch", list(MODEL_TITLES).index(key[1]), key[2]


def mean_sd(mean: float, sd: float, n: int, failed: dict[int, str] | None = None) -> str:
    """'52.00 ± 2.00 (n=3)', '52.00 (n=1)' (one seed: no spread); with `failed` seeds,
    '(n = 2 of 3: why)'."""
    spread = f" ± {100 * sd:.2f}" if n > 1 else ""
    if failed:
        why = "; ".join(f"seed {seed} failed: {reason}" for seed, reason in sorted(failed.items()))
        return f"{100 * mean:.2f}{spread} (n = {n} of {n + len(failed)}: {why})"
    return f"{100 * mean:.2f}{spread} (n={n})"


def weights_line(missing: dict[ConditionKey, NotProduced]) -> str:
    """One line for every cell that needs ImageNet weights not found here; '' if none."""
    cells = sorted((k for k, v in missing.items() if v.weights), key=_order)
    by_model: dict[str, list[str]] = {}
    for _, model, fraction in cells:
        by_model.setdefault(MODEL_TITLES[model], []).append(fraction_title(fraction))
    where = "; ".join(f"{model} at {', '.join(sizes)}" for model, sizes in by_model.items())
    files, n = ", ".join(sorted({missing[k].weights for k in cells})), len(cells)
    if not n:
        return ""
    return (
        f"not produced: needs ImageNet weights: {_count(n, 'pretrained cell')} ({where}) "
        f"{'needs' if n == 1 else 'need'} {files}, not found on this machine."
    )


def summary_table(
    rows: list[Condition],
    missing: dict[ConditionKey, NotProduced],
    failed: dict[ConditionKey, dict[int, str]] | None = None,
    profile: str = "full",
) -> str:
    """A row per cell and configuration and per failed cell, a line for those without weights."""
    full, failed, out = profile == "full", failed or {}, []
    for c in rows:
        key, first = (c.setting, c.model, c.fraction), c.runs[0]
        test = "" if first["test_images"] >= 10_000 else f" ({first['test_images']:,} imgs)"
        epochs, tta = (
            "/".join(sorted({str(r[k]) for r in c.runs})) for k in ("epochs", "test_tta")
        )
        cells = [c.setting + (f" ({c.label})" if c.label else ""), weights_title(first)]
        cells += [f"{first['train_images']:,}", epochs, mean_sd(*c.stat("best_val_acc"))]
        cells += [mean_sd(*c.stat("test_acc"), failed.get(key)) + test, tta]
        out.append((key, str(c.variant), cells, f"{c.stat('wall_time_s')[0]:.0f} s"))
    for key, why in ((k, v) for k, v in missing.items() if v.failed):
        lost = [key[0], "–", "–", "–", "not produced", f"not produced: failed: {why.failed}", "–"]
        out.append((key, "", lost, "–"))
    out.sort(key=lambda row: (*_order(row[0]), row[1]))
    start = {k: [str(STARTING_POINT.get(k) or "–")] * full for k, *_ in out}
    rows_md = [
        [MODEL_TITLES[k[1]], fraction_title(k[2]), *cells, *start[k], wall]
        for k, _, cells, wall in out
    ]
    line = weights_line(missing)
    head = SUMMARY + "|starting point %:" * full + "|wall time / run:"
    return table(head, rows_md) + (f"\n- {line}\n" if line else "")


def duration(seconds: float) -> str:
    """95 s, 8.1 min, 31 min, 3.2 h."""
    if seconds < 100:
        return f"{seconds:.0f} s"
    minutes = seconds / 60
    if minutes < 10:
        return f"{minutes:.1f} min"
    return f"{minutes:.0f} min" if minutes < 180 else f"{minutes / 60:.1f} h"


def grid_time_line(t: Timing, elapsed: float | None = None, trained: int = 0) -> str:
    """The grid's elapsed time (`elapsed`, measured by the call that trained `trained` runs;
    else from the records), its time on one device and the differing estimates on several."""
    if not t.runs:
        return ""
    them = "the run" if t.runs == 1 else f"the {t.runs} runs"
    out = [
        f"Grid time: the call that trained {trained} of the {t.runs} runs above took "
        f"{duration(elapsed)} from its start to this report, measured (its imports and checks, "
        "the notebooks' start-up and the scaling figures included)."
        if elapsed is not None
        else f"Grid time: {them} above trained for {duration(t.busy)}, the time during which at "
        "least one of them was training, from their recorded start and end."
    ]
    if t.shared:
        out.append(
            f"{t.shared} of them shared their device with another run at the same time, so their "
            "wall times are stretched: they are left out of the sums below."
        )
    if t.alone:
        times = [duration(t.one)] + [duration(t.on[k]) for k in DEVICES]
        more = ", ".join(
            f"{k} devices {s}" for k, s, b in zip(DEVICES, times[1:], times, strict=False) if s != b
        )
        which = f"{t.alone} runs that had their device to themselves"
        which = "run that had its device to itself" if t.alone == 1 else which
        out.append(f"On one device, the {which} trained for {times[0]} in all (start-up excluded)")
        estimate = "; on several devices like it, estimated from those times (each run to the"
        out[-1] += f"{estimate} first free device, longest first): {more}." if more else "."
    return " ".join(out) + "\n"


def _curve_tables(a: Analysis, images: Path, base: Path) -> str:
    """Per setting and metric, models by rows and sizes by columns (one line if none ran)."""
    have, out = {(c.setting, c.model, c.fraction) for c in a.drawn}, []
    absent = {
        k: f"not produced: {'failed' if v.failed else 'no weights'}" for k, v in a.missing.items()
    }
    for setting in SETTING_DIRS:
        keys = {k for k in have | set(a.missing) if k[0] == setting}
        out.append(f"#### {SETTING_TITLES[setting][0].upper()}{SETTING_TITLES[setting][1:]}\n")
        if not keys & have:
            out.append("Not produced (see the summary table).\n" if keys else "No runs yet.\n")
            continue
        models = [m for m in MODEL_TITLES if m in BASE_MODELS or any(k[1] == m for k in keys)]
        fractions = sorted(set(SEED_FRACTIONS) | {k[2] for k in keys & have})
        for metric, word in (("acc", "Accuracy"), ("loss", "Loss")):
            cell = dict(absent)
            for k in keys & have:
                path = os.path.relpath(curve_path(images, *k, metric), base)
                cell[k] = f"![{k[1]} {metric} {fraction_title(k[2])}]({path})"
            rows = [
                [MODEL_TITLES[m]] + [cell.get((setting, m, f), "–") for f in fractions]
                for m in models
            ]
            out.append(table("|".join([word, *map(fraction_title, fractions)]), rows))
    return "\n".join(out)


def _header(a: Analysis, command: str) -> str:
    """Who made these numbers: the command, date, profile, hardware, versions, data, recipe."""
    data = ", ".join(OUTSIDE if f.startswith("..") else f"`{f}/`" for f in a.data_dirs)
    data += ": " + "; ".join(DATA_ORIGINS[o] for o in a.origins)
    return (
        f"_Generated by `{command}` on {time.strftime('%Y-%m-%d')}: profile `{a.profile}`, "
        f"hardware {'; '.join(a.hardware) or 'none'}, {'; '.join(a.versions) or '–'}._"
        f"{QUICK if a.quick else ''}\n\nData: CIFAR-10 from {data if a.data_dirs else '–'}.\n\n"
        f"{recipe_line(a)}\n"
    )


def recipe_line(a: Analysis) -> str:
    """The recipe that made these numbers, per setting, read from the runs' own configurations."""
    if not a.runs:
        return ""
    if not any(a.recipe.values()):
        return "Recipe: today's (`common/config.py`, RECIPES), as the runs' configurations record."
    parts = []
    for setting in (s for s in SETTINGS if s in a.recipe):
        runs = "fine-tuned" if setting == "pretrained" else "from scratch"
        today = a.today.get(setting, {})
        differs = ", ".join(f"{k} {v} (today {today.get(k)})" for k, v in a.recipe[setting])
        parts.append(
            f"{runs}: **a former recipe**; it differs from today's in {differs}"
            if differs
            else f"{runs}: today's"
        )
    return (
        f"Recipe, as the runs' configurations record: {'; '.join(parts)}. Today's recipe has "
        "not made the former recipe's numbers."
    )


def headline(a: Analysis) -> str:
    """The README's first answer: test accuracy per model and size, scratch beside each set of
    ImageNet weights fine-tuned, the recipe, and the starting point (full only)."""
    keys = {(c.model, c.fraction) for c in a.cells} | {k[1:] for k in a.missing}
    full, rows = a.profile == "full", []
    for model, fraction in sorted(keys, key=lambda k: _order(("", *k))):
        cell = {s: [] for s in SETTINGS}
        for c in (c for c in a.cells if (c.model, c.fraction) == (model, fraction)):
            weights = f" ({weights_title(c.runs[0])})" if c.runs[0]["pretrained"] else ""
            cell[c.setting].append(mean_sd(*c.stat("test_acc")) + weights)
        for s in SETTINGS:
            cell[s] = cell[s] or ["not produced" if (s, model, fraction) in a.missing else "–"]
        start = [STARTING_POINT.get((s, model, fraction)) for s in SETTINGS]
        first = " / ".join(f"{v}" if v else "–" for v in start) if any(start) else "–"
        head = [MODEL_TITLES[model], fraction_title(fraction), cell["scratch"][0]]
        rows += [[*head, right] + [first] * full for right in cell["pretrained"]]
    columns = "model|data|from scratch:|fine-tuned:"
    columns += "|starting point (scratch / fine-tuned):" * full
    return (
        f"Test accuracy %, mean ± sd over seeds; profile `{a.profile}`, "
        f"{'; '.join(a.hardware) or 'none yet'}."
        + ("" if full else " A pipeline check, not a result: see [Results](#results).")
        + f"\n\n{recipe_line(a)}\n\n{table(columns, rows)}"
    )


def notes(a: Analysis, call: Call) -> list[str]:
    """Under the table: remedies, other configurations, inherited recipes, other weights."""
    out, models = list(call.notes), {c.model for c in a.cells}
    if a.others:
        n, labels = sum(len(c.runs) for c in a.others), sorted({c.label for c in a.others})
        out.append(
            f"{_count(n, 'run')} of {_count(len(labels), 'other configuration')} "
            f"({'; '.join(labels)}) in this folder trained differently from the main "
            "configuration (that of most runs): "
            f"separate rows of the table, {LEFT_OUT}."
        )
    out += [
        f"{MODEL_TITLES[m]} trains with {MODEL_TITLES[recipe_model(m)]}'s recipe, not tuned for "
        f"it: {SAME_RECIPE[m][1]}."
        for m in MODEL_TITLES
        if m in models and m in SAME_RECIPE
    ]
    if a.apart:
        which = sorted({f"{MODEL_TITLES[r['model']]} from {weights_title(r)}" for r in a.apart})
        out.append(
            f"{_count(len(a.apart), 'fine-tuned run')} started from other ImageNet weights than "
            f"the latest runs of {'its' if len(a.apart) == 1 else 'their'} model "
            f"({'; '.join(which)}): rows of their own in the table and the headline, {LEFT_OUT}, "
            "which never pool two sets of weights."
        )
    return out


def write_report(
    output_dir: str | Path,
    images_dir: str | Path,
    results_dir: str | Path,
    readme: str | Path | None,
    profile: str,
    call: Call,
) -> Path:
    """Build the analysis record once, draw every cell's curves, and render results/summary.md
    and the README's headline and results section (see `keeps_full`) from it."""
    images = Path(images_dir)
    a = analysis.build(collect(output_dir, profile), profile, call.missing, call.failed)
    for cell in a.drawn:
        save_curves(cell.runs, images)
    rows = summary_table(a.rows, a.missing, a.failed, profile)
    rows += "".join(f"\n- {note}" for note in notes(a, call)) + "\n"
    elapsed = time.perf_counter() - call.started if call.trained else None
    rows += f"\n{grid_time_line(a.timing, elapsed, call.trained)}" if a.cells else ""
    header, summary = _header(a, call.command), Path(results_dir) / "summary.md"
    scaled = _scaling(a, images, summary.resolve().parent, call.figures)
    write_text(summary, f"# Summary\n\n{header}\n{rows}\n{DEVIATION_LIST}\n{scaled}")
    if not readme or keeps_full(Path(readme), profile):
        return summary
    base = Path(readme).resolve().parent
    block = (
        f"{header}\n{DEVIATION_LIST}\n### Curves\n\n{_curve_tables(a, images, base)}\n"
        f"### Summary table\n\n{rows}\n{_scaling(a, images, base, call.figures)}"
    )
    update(Path(readme), block, len(a.runs) + sum(len(c.runs) for c in a.others), headline(a))
    return summary


def figure_links(names: Iterable[str], images: Path, base: Path, drawn: list[Path] | None) -> str:
    """Links to the scaling figures `names` that exist (with `drawn`, that this call drew)."""
    paths = [images / "scaling" / f"{name}.png" for name in names]
    keep = {p.resolve() for p in (paths if drawn is None else drawn)}
    linked = [p for p in paths if p.exists() and p.resolve() in keep]
    return " ".join(f"![{p.stem}]({os.path.relpath(p, base)})" for p in linked)


def _scaling(a: Analysis, images: Path, base: Path, drawn: list[Path] | None) -> str:
    """The scaling figures, checks and observations; the model-size ones from AXIS_SIZES models."""
    links = figure_links(DATA_FIGURES, images, base, drawn)
    text = (
        f"### Scaling with data\n\n{links or '(figures not drawn yet)'}\n\nFit on the smaller "
        f"sizes, predict the largest:\n\n{extrapolation_table(a)}\n### Observations (generated "
        "from the numbers above)\n\n" + "\n".join(f"- {line}" for line in observations(a)) + "\n"
    )
    if len({r["model"] for r in a.plotted}) < AXIS_SIZES:
        return text
    image = figure_links(["error_vs_parameters"], images, base, drawn) or "(figure not drawn yet)"
    return (
        f"{text}\n### Scaling with model size\n\n{image}\n\nThe joint fit over data and model "
        "size, and fitted without the largest model or size, its prediction of what was left "
        f"out:\n\n{joint_table(a)}"
    )
