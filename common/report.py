"""The report: what a run records in metrics.json and how runs group into cells and
configurations; each cell's curves; the summary and the README's generated sections, rendered
from the one analysis record of a report (common/analysis.py)."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import statistics
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import numpy as np
import torch
import torchvision
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .config import REPO, SAME_RECIPE, SETTINGS, RunConfig, make_config, recipe_model
from .data import FOLDER, TEST_FILE, TRAIN_FILES, data_origin, fraction_label, fraction_title
from .errors import UserError
from .files import atomic_path, read_json, write_json, write_text
from .models import CUSTOM, parameter_count
from .training import cpu_name

if TYPE_CHECKING:
    from .analysis import Analysis

METRICS = "metrics.json"
# run_all.py sets this in its kernels' environment, so that a record says how its run executed
EXECUTED = "BIG_VS_SMALL_EXECUTED"
SCHEMA = 2  # older records are not read: results/runs-full-nvidia-h200/convert.py shows the step
REQUIRED_KEYS = ("model", "data_fraction", "pretrained", "seed", "epochs", "train_images")
REQUIRED_KEYS += ("history", "best_val_acc", "test_acc", "wall_time_s", "device", "torch")
DEPTHS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
MODEL_TITLES = {m: f"ResNet-{m[6:]}" for m in DEPTHS} | {"resnext50_32x4d": "ResNeXt50_32x4d"}
SETTING_TITLES = {"scratch": "from scratch", "pretrained": "fine-tuned from ImageNet"}
SETTING_DIRS = {"scratch": "from-scratch", "pretrained": "finetune"}  # the seed's image folders
DATA_ORIGINS = {  # data.data_origin's verdicts
    "original": "the original files (their MD5s match torchvision's)",
    "re-encoded": "**a re-encoded (JPEG) copy**, not the original files: accuracies are close "
    "to, not equal to, theirs",
    "unknown": "files whose origin was not recorded",
}
DEPARTURES = "docs/recipes.md#where-we-depart-from-the-sources"
LEFT_OUT = "left out of the curves, figures, fits and claims"
README_START, README_END = "<!-- results:start -->", "<!-- results:end -->"
HEADLINE_START, HEADLINE_END = "<!-- headline:start -->", "<!-- headline:end -->"
Record = dict[str, Any]
Key = tuple[str, str, float]  # (setting, model, fraction)
Variant = tuple[tuple[str, Any], ...]
PathLike = str | Path


def hardware(device: str | None = None, name: str | None = None) -> str:
    """'NVIDIA H200 (GPU)' with the GPU's recorded `name`, or this CPU; None: this machine's."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        return f"{name or torch.cuda.get_device_name()} (GPU)"
    return f"{cpu_name()}, {len(os.sched_getaffinity(0))} cores (CPU)"


def portable(path: str | None, run_dir: str | Path) -> str | None:
    """`path` relative to the repository when inside it, else to the run folder."""
    if not path:
        return path
    resolved = Path(path).resolve()
    if resolved.is_relative_to(REPO):
        return resolved.relative_to(REPO).as_posix() or "."
    return os.path.relpath(resolved, Path(run_dir).resolve())


@functools.cache
def file_identity(*paths: str) -> str | None:
    """A digest of the files' names, sizes and mtimes (once per process); None if one is missing."""
    try:
        stats = [(Path(p).name, os.stat(p).st_size, os.stat(p).st_mtime_ns) for p in paths]
    except OSError:
        return None
    return hashlib.sha256(json.dumps(stats).encode()).hexdigest()[:16]


def input_identity(data_dir: str, weights_path: str | None) -> dict[str, str | None]:
    """Which data and weights files a run reads: a run whose inputs changed is not done."""
    folder = Path(data_dir) / FOLDER
    return {
        "data": file_identity(*(str(folder / n) for n in [*TRAIN_FILES, TEST_FILE])),
        "weights": file_identity(weights_path) if weights_path else None,
    }


def make_metrics(cfg: RunConfig, result: Record, executed: str | None = None) -> Record:
    """The metrics.json record of a finished run; `executed`: how (None: from the environment)."""
    config = cfg.to_dict()
    for key in ("data_dir", "output_dir", "weights_path"):
        config[key] = portable(config[key], cfg.output_dir)
    kernel = "notebook" if "ipykernel" in sys.modules else "script"
    copied = ("train_images", "val_images", "test_images", "steps_per_epoch", "evaluations")
    copied += ("precision", "history", "best_epoch", "best_val_acc", "test_acc", "test_loss")
    copied += ("wall_time_s", "device", "device_name", "machine")
    return {
        "schema": SCHEMA,
        **{k: getattr(cfg, k) for k in ("model", "data_fraction", "pretrained", "setting", "seed")},
        "parameters": parameter_count(cfg.model, cfg.stem),  # as trained: 10 classes, its stem
        "epochs": len(result["history"]),
        "planned_epochs": cfg.epochs,
        "profile": cfg.profile,
        **{k: result[k] for k in copied},
        "test_tta": cfg.tta,
        "hardware": hardware(result["device"], result["device_name"]),
        "threads": torch.get_num_threads(),  # CPU numbers change with it (float rounding)
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "config": config,
        "inputs": input_identity(cfg.data_dir, cfg.weights_path),
        "data": data_origin(cfg.data_dir),
        "started_at": stamp(result["started_at"]),
        "finished_at": stamp(time.time()),
        "executed": executed or os.environ.get(EXECUTED) or kernel,
    }


def stamp(seconds: float) -> str:
    """A moment as metrics.json writes it: ISO 8601 in UTC, to the millisecond."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")


def moment(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def save_metrics(run_dir: str | Path, metrics: Record) -> None:
    write_json(Path(run_dir) / METRICS, metrics)


def load_metrics(run_dir: str | Path) -> Record | None:
    """The run's record, or None when it is absent, unreadable, incomplete or of another schema."""
    m = read_json(Path(run_dir) / METRICS)
    ok = isinstance(m, dict) and m.get("schema") == SCHEMA and all(k in m for k in REQUIRED_KEYS)
    return m if ok and m["history"] else None


def collect(output_dir: str | Path, profile: str) -> list[Record]:
    """Every complete record under `output_dir` trained with `profile`."""
    runs = (load_metrics(p.parent) for p in sorted(Path(output_dir).glob(f"*/*/{METRICS}")))
    return [m for m in runs if m and m["profile"] == profile]


def weights_title(m: Record) -> str:
    """'ImageNet V1' (torchvision's), 'custom: <file>' (one's own), '–' from scratch."""
    if not m["pretrained"]:
        return "–"
    weights = m["config"]["weights"]
    return weights if weights.startswith(CUSTOM) else f"ImageNet {weights}"


def images_title(m: Record) -> str:
    """'45,000 images', or '4,096 images seen, drawn from 45,000' where quick runs cap the steps."""
    batch = m["config"]["batch_size"]
    if (m["steps_per_epoch"] + 1) * batch > m["train_images"]:
        return f"{m['train_images']:,} images"
    seen = len(m["history"]) * m["steps_per_epoch"] * batch
    return f"{seen:,} images seen, drawn from {m['train_images']:,}"


def cell_title(m: Record) -> str:
    """'ResNet-18 from scratch, 1/16 of the data (2,810 images)', with fine-tuned runs' weights."""
    weights = f" ({weights_title(m)})" if m["pretrained"] else ""
    return (
        f"{MODEL_TITLES[m['model']]} {SETTING_TITLES[m['setting']]}{weights}, "
        f"{fraction_title(m['data_fraction'])} of the data ({images_title(m)})"
    )


def summary_line(m: Record) -> str:
    """One line for a finished run."""
    device = f"{m['device_name']} ({m['device']})" if m.get("device_name") else m["device"]
    return (
        f"{cell_title(m)}, seed {m['seed']}: best val acc {100 * m['best_val_acc']:.2f}% (epoch "
        f"{m['best_epoch']}), test acc {100 * m['test_acc']:.2f}% on {m['test_images']:,} "
        f"images, {m['wall_time_s']:.0f} s on {device}"
    ) + " [quick profile]" * (m["profile"] == "quick")


def today_recipe(m: Record) -> dict[str, Any]:
    """The training settings today's recipe gives a run's cell and profile."""
    cfg = make_config(m["model"], m["data_fraction"], m["pretrained"], 0, m["profile"])
    return cfg.training_key()


def variant(m: Record) -> Variant:
    """The (field, value) pairs a run's training differs in from today's (seed, weights aside)."""
    try:
        recipe = today_recipe(m)
    except UserError:  # a model or profile this version no longer knows
        return (("recipe", "unknown"),)
    ignored = ("seed", "weights")
    differs = {k: v for k, v in m["config"].items() if k not in ignored and recipe.get(k, v) != v}
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in differs.items()))


@dataclass
class Condition:
    """All seeds of one (setting, model, fraction) in one configuration and set of weights."""

    setting: str
    model: str
    fraction: float
    runs: list[Record]
    variant: Variant = ()
    label: str = ""  # what differs from the other configurations of its setting

    @property
    def key(self) -> Key:
        return self.setting, self.model, self.fraction

    @property
    def weights(self) -> str:
        return weights_title(self.runs[0])

    def stat(self, key: str) -> tuple[float, float, int]:
        """Mean, sample standard deviation (0 for one run) and count of `key` over seeds."""
        values = [r[key] for r in self.runs]
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return statistics.fmean(values), sd, len(values)


def order(key: Key) -> tuple:
    """Scratch before fine-tuned, then the models as MODEL_TITLES lists them, then the size."""
    return key[0] != "scratch", list(MODEL_TITLES).index(key[1]), key[2]


def group_conditions(runs: Iterable[Record]) -> list[Condition]:
    """Runs by cell, weights and configuration, labelled by what differs ('lr=0.01')."""
    cells: dict[tuple, Condition] = {}
    for m in runs:
        key = (m["setting"], m["model"], m["data_fraction"], weights_title(m), variant(m))
        cells.setdefault(key, Condition(*key[:3], runs=[], variant=key[4])).runs.append(m)
    for setting in SETTINGS:  # each setting has its own recipe
        mine = [c for c in cells.values() if c.setting == setting]
        variants = {c.variant for c in mine}
        keys = sorted({k for v in variants for k, _ in v})
        varying = [k for k in keys if len({repr(dict(v).get(k)) for v in variants}) > 1]
        for c in mine:
            own = dict(c.variant)
            c.label = ", ".join(f"{k}={own[k]}" if k in own else f"{k}: recipe" for k in varying)
    return sorted(cells.values(), key=lambda c: (*order(c.key), str(c.variant)))


def curve_path(images: PathLike, setting: str, model: str, fraction: float, metric: str) -> Path:
    """images/from-scratch/resnet18_acc_1-16.png, images/finetune/resnet50_loss_100.png, ..."""
    return Path(images, SETTING_DIRS[setting], f"{model}_{metric}_{fraction_label(fraction)}.png")


def plot_curves(runs: list[Record], metric: str) -> Figure:
    """Train and validation `metric` ('acc' or 'loss') per epoch of one cell's seeds: mean ± sd."""
    fig, ax = plt.subplots(figsize=(7.2, 4.2), dpi=110, layout="constrained")
    length = min(len(r["history"]) for r in runs)
    for split, color in (("train", "tab:blue"), ("val", "tab:orange")):
        key = f"{split}_{metric}"
        epochs = np.array([h["epoch"] for h in runs[0]["history"][:length] if key in h])
        values = np.array([[r["history"][e - 1][key] for e in epochs] for r in runs])
        values = values * 100 if metric == "acc" else values
        label = "training batches\n(augmented)" if split == "train" else "validation"
        if split == "val" and epochs.size and epochs[0] > 1:
            label += f"\n(every {epochs[0]} epochs)"
        ax.plot(epochs, values.mean(axis=0), marker="o", ms=3, color=color, label=label)
        if len(runs) > 1:
            mean, sd = values.mean(axis=0), values.std(axis=0, ddof=1)
            ax.fill_between(epochs, mean - sd, mean + sd, color=color, alpha=0.2)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # 1 epoch: one tick
    ax.set(xlabel="epoch", ylabel="accuracy (%)" if metric == "acc" else "cross-entropy loss")
    seeds = f"mean ± sd of {len(runs)} seeds" if len(runs) > 1 else f"seed {runs[0]['seed']}"
    quick = "\n[quick profile: a short CPU smoke run, not a converged result]"
    title = f"{cell_title(runs[0])}\n{seeds}{quick * (runs[0]['profile'] == 'quick')}"
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.legend(loc="outside right upper", fontsize=8)
    return fig


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Save `fig` as a PNG atomically and close it."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(path)


@dataclass(frozen=True)
class NotProduced:
    """Why a cell has no runs: they `failed` (the error), or need the weights file `weights`."""

    failed: str = ""
    weights: str = ""


@dataclass
class Call:
    """What the command that writes a report knows beyond the runs' files."""

    command: str  # as the report quotes it
    missing: dict[Key, NotProduced] = field(default_factory=dict)  # cells without runs
    failed: dict[Key, dict[int, str]] = field(default_factory=dict)  # seed -> reason
    notes: list[str] = field(default_factory=list)  # remedies, listed under the table
    trained: int = 0  # how many runs it trained
    started: float = field(default_factory=time.perf_counter)
    figures: list[Path] | None = None  # scaling figures this call drew (None: those on disk)


def table(head: str, rows: Iterable[Sequence[object]]) -> str:
    """A Markdown table: `head` names the columns ('|' between, ':' ending a right-aligned one)."""
    names = head.split("|")
    rule = "|" + "".join("---:|" if name.endswith(":") else "---|" for name in names)
    lines = ["| " + " | ".join(map(str, r)) + " |" for r in [[n.rstrip(":") for n in names], *rows]]
    return "\n".join([lines[0], rule, *lines[1:]]) + "\n"


def count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' * (n != 1)}"


def mean_sd(mean: float, sd: float, n: int, failed: dict[int, str] | None = None) -> str:
    """'52.00 ± 2.00 (n=3)', '52.00 (n=1)'; with failed seeds '(n = 2 of 3: why)'."""
    spread = f" ± {100 * sd:.2f}" if n > 1 else ""
    if failed:
        why = "; ".join(f"seed {seed} failed: {reason}" for seed, reason in sorted(failed.items()))
        return f"{100 * mean:.2f}{spread} (n = {n} of {n + len(failed)}: {why})"
    return f"{100 * mean:.2f}{spread} (n={n})"


SUMMARY = "model|data|setting|weights|train images:|epochs:|best val acc %:|test acc %:|TTA"


def summary_table(a: Analysis) -> str:
    """A row per cell and configuration, and per failed cell."""
    out = []
    for c in a.rows:
        first, failed = c.runs[0], a.failed.get(c.key)
        test = "" if first["test_images"] >= 10_000 else f" ({first['test_images']:,} imgs)"
        epochs, tta = (
            "/".join(sorted({str(r[k]) for r in c.runs})) for k in ("epochs", "test_tta")
        )
        images = images_title(first).removesuffix(" images").replace("images ", "")
        cells = [c.setting + (f" ({c.label})" if c.label else ""), c.weights, images, epochs]
        cells += [mean_sd(*c.stat("best_val_acc")), mean_sd(*c.stat("test_acc"), failed) + test]
        out.append((c.key, str(c.variant), [*cells, tta, f"{c.stat('wall_time_s')[0]:.0f} s"]))
    for key, why in ((k, v) for k, v in a.missing.items() if v.failed):
        failed = f"not produced: failed: {why.failed}"
        out.append((key, "", [key[0], "–", "–", "–", "not produced", failed, "–", "–"]))
    out.sort(key=lambda row: (*order(row[0]), row[1]))
    rows = [[MODEL_TITLES[k[1]], fraction_title(k[2]), *cells] for k, _, cells in out]
    return table(f"{SUMMARY}|wall time / run:", rows)


def duration(seconds: float) -> str:
    """95 s, 8.1 min, 31 min, 3.2 h."""
    if seconds < 100:
        return f"{seconds:.0f} s"
    minutes = seconds / 60
    if minutes < 10:
        return f"{minutes:.1f} min"
    return f"{minutes:.0f} min" if minutes < 180 else f"{minutes / 60:.1f} h"


def grid_time_line(runs: list[Record], elapsed: float | None = None, trained: int = 0) -> str:
    """The grid's time: measured by the call that trained, else the union of the runs' intervals."""
    if not runs:
        return ""
    summed = f"their wall times sum to {duration(sum(r['wall_time_s'] for r in runs))}.\n"
    if elapsed is not None:
        return (
            f"Grid time: the call that trained {trained} of the {count(len(runs), 'run')} above "
            f"took {duration(elapsed)} from its start to this report, measured; {summed}"
        )
    busy, reach = 0.0, -np.inf
    for start, end in sorted((moment(r["started_at"]), moment(r["finished_at"])) for r in runs):
        busy, reach = busy + max(0.0, end - max(start, reach)), max(reach, end)
    return (
        f"Grid time: the {count(len(runs), 'run')} above trained for {duration(busy)} from the "
        f"first start to the last end their records give; {summed}"
    )


def curve_tables(a: Analysis, images: Path, base: Path, metrics: Sequence[str]) -> str:
    """Per setting with runs and metric, models by rows and sizes by columns, linking the PNGs."""
    out, have = [], {c.key for c in a.drawn}
    absent = {
        k: f"not produced: {'failed' if v.failed else 'no weights'}" for k, v in a.missing.items()
    }
    for setting in (s for s in SETTINGS if any(k[0] == s for k in have)):
        keys = {k for k in have | set(absent) if k[0] == setting}
        models = [m for m in MODEL_TITLES if any(k[1] == m for k in keys)]
        fractions = sorted({k[2] for k in keys})
        out.append(f"**{SETTING_TITLES[setting].capitalize()}**\n")
        for metric in metrics:
            cell = absent | {
                k: f"![{k[1]} {metric} {fraction_title(k[2])}]"
                f"({os.path.relpath(curve_path(images, *k, metric), base)})"
                for k in keys & have
            }
            rows = [
                [MODEL_TITLES[m], *(cell.get((setting, m, f), "–") for f in fractions)]
                for m in models
            ]
            head = "Accuracy" if metric == "acc" else "Loss"
            out.append(table("|".join([head, *map(fraction_title, fractions)]), rows))
    return "\n".join(out) or "No curves: no runs yet.\n"


def recipe_line(a: Analysis) -> str:
    """The recipe that made these numbers, per setting, as the runs' configurations record it."""
    main = {c.setting: c for c in a.cells}  # one configuration per setting
    if not any(c.variant for c in main.values()):
        return "Recipe: today's (`common/config.py`), as the runs' configurations record."
    parts = []
    for c in main.values():
        today = today_recipe(c.runs[0])
        differs = ", ".join(f"{k} {v} (today {today.get(k)})" for k, v in c.variant)
        said = f"**not today's recipe**, which differs in {differs}" if differs else "today's"
        parts.append(f"{'fine-tuned' if c.setting == 'pretrained' else 'from scratch'}: {said}")
    return f"Recipe, as the runs record it: {'; '.join(parts)}."


def link(path: str, base: Path) -> str:
    """A Markdown link from `base` to `path` in the repository, or the path where base is not."""
    to = os.path.relpath(REPO / path, base)
    return f"[{to}]({to})" if base.is_relative_to(REPO) else f"`{path}`"


def provenance(a: Analysis, command: str, base: Path, readme: bool = False) -> str:
    """Who made these numbers, one line each; the recipe where no headline says it."""
    data = ", ".join(
        "a folder outside the repository" if d.startswith("..") else f"`{d}/`"
        for d in sorted({r["config"]["data_dir"] for r in a.runs})
    )
    origins = "; ".join(DATA_ORIGINS[o] for o in sorted({r["data"] for r in a.runs}))
    weights = sorted({c.weights for c in a.cells if c.setting == "pretrained"})
    cells = sorted((k for k, v in a.missing.items() if v.weights), key=order)  # no weights here
    by_model: dict[str, list[str]] = {}
    for _, model, fraction in cells:
        by_model.setdefault(MODEL_TITLES[model], []).append(fraction_title(fraction))
    where = "; ".join(f"{model} at {', '.join(sizes)}" for model, sizes in by_model.items())
    files, n = ", ".join(sorted({a.missing[k].weights for k in cells})), len(cells)
    needs = (
        f"not produced: needs ImageNet weights: {count(n, 'pretrained cell')} ({where}) "
        f"{'needs' if n == 1 else 'need'} {files}, not found on this machine."
    ) * bool(cells)
    versions = {f"torch {r['torch']}, torchvision {r['torchvision']}" for r in a.runs}
    lines = [
        f"_Generated by `{command}` on {time.strftime('%Y-%m-%d')}: profile `{a.profile}`, "
        f"{a.hardware or 'no hardware'}, {'; '.join(sorted(versions)) or '–'}._",
        f"**Quick profile: short CPU smoke runs, each saw {a.seen} training images whatever "
        "its data size; not converged results.**" * a.quick,
        f"Data: CIFAR-10 from {data or '–'}: {origins}.",
        "" if readme else recipe_line(a),
        f"Where the recipes depart from their sources: {link(DEPARTURES, base)}."
        * (not readme and not a.quick),
        f"Fine-tuned from: {', '.join(weights)}." * bool(weights),
        needs,
        f"How these runs were made, and what each label means: {link('docs/results.md', base)}.",
    ]
    return "\n".join(f"- {line}" if i else line for i, line in enumerate(lines) if line) + "\n"


def headline(a: Analysis) -> str:
    """The README's first answer: test accuracy per model and size and setting."""
    keys = {(c.model, c.fraction) for c in a.cells} | {k[1:] for k in a.missing}
    rows = []
    for model, fraction in sorted(keys, key=lambda k: order(("", *k))):
        cell: dict[str, list[str]] = {s: [] for s in SETTINGS}
        for c in (c for c in a.cells if (c.model, c.fraction) == (model, fraction)):
            weights = f" ({c.weights})" if c.setting == "pretrained" else ""
            cell[c.setting].append(mean_sd(*c.stat("test_acc")) + weights)
        for s in SETTINGS:
            cell[s] = cell[s] or ["not produced" if (s, model, fraction) in a.missing else "–"]
        rows += [
            [MODEL_TITLES[model], fraction_title(fraction), cell["scratch"][0], right]
            for right in cell["pretrained"]
        ]
    data = "; ".join(DATA_ORIGINS[o].split(":")[0] for o in sorted({r["data"] for r in a.runs}))
    quick = " **A pipeline check, not a result**: see [Results](#results)." if a.quick else ""
    return (
        f"Test accuracy %, mean ± sd over n seeds; profile `{a.profile}`, "
        f"{a.hardware or 'no runs yet'}; CIFAR-10 from {data or '–'}.{quick}\n\n"
        f"{table('model|data|from scratch:|fine-tuned:', rows)}\n{recipe_line(a)}\n"
    )


def notes(a: Analysis, call: Call) -> list[str]:
    """Under the summary table: remedies, other configurations, inherited recipes, other weights."""
    out, models = list(call.notes), {c.model for c in a.cells}
    if others := [c for c in a.rows if c not in a.cells]:
        n, labels = sum(len(c.runs) for c in others), sorted({c.label for c in others})
        out.append(
            f"{count(n, 'run')} of {count(len(labels), 'other configuration')} "
            f"({'; '.join(labels)}) in this folder trained differently from the main "
            f"configuration (that of most runs): separate rows of the table, {LEFT_OUT}."
        )
    for m in (m for m in MODEL_TITLES if m in models and m in SAME_RECIPE):
        out.append(
            f"{MODEL_TITLES[m]} trains with {MODEL_TITLES[recipe_model(m)]}'s recipe, not tuned "
            f"for it: {SAME_RECIPE[m][1]}."
        )
    if apart := [r for c in a.cells if c not in a.drawn for r in c.runs]:
        which = sorted({f"{MODEL_TITLES[r['model']]} from {weights_title(r)}" for r in apart})
        out.append(
            f"{count(len(apart), 'fine-tuned run')} started from other ImageNet weights than "
            f"the latest of their model ({'; '.join(which)}): rows of their own, {LEFT_OUT}."
        )
    return out


def write_report(
    output_dir: PathLike,
    images_dir: PathLike,
    results_dir: PathLike,
    readme: PathLike | None,
    profile: str,
    call: Call,
) -> Path:
    """Analyse once; draw the curves; render results/summary.md and the README's sections."""
    from . import analysis  # it reads this module's schema: imported here, not at the top

    images, summary = Path(images_dir), Path(results_dir) / "summary.md"
    a = analysis.build(collect(output_dir, profile), profile, call.missing, call.failed)
    for c in a.drawn:
        for metric in ("acc", "loss"):
            save_figure(plot_curves(c.runs, metric), curve_path(images, *c.key, metric))
    rows = summary_table(a) + "".join(f"\n- {note}" for note in notes(a, call)) + "\n"
    elapsed = time.perf_counter() - call.started if call.trained else None
    rows += f"\n{grid_time_line(a.runs, elapsed, call.trained)}"
    here, drawn = summary.resolve().parent, {p.name for p in call.figures or []}
    shown = [images / "scaling" / f"{f}.png" for f in analysis.FIGURES]
    shown = [p for p in shown if p.exists() and (call.figures is None or p.name in drawn)]
    links = " ".join(f"![{p.stem}]({os.path.relpath(p, here)})" for p in shown)
    write_text(
        summary,
        f"# Summary\n\n{provenance(a, call.command, here)}\n### Summary table\n\n{rows}\n"
        f"### Curves\n\n{curve_tables(a, images, here, ('acc', 'loss'))}\n{analysis.claims(a)}"
        f"\n### Figures and fits\n\n{links or '(figures not drawn yet)'}\n\n{analysis.fits(a)}",
    )
    if readme and not keeps_full(Path(readme), profile):
        base = Path(readme).resolve().parent
        to = os.path.relpath(summary, base)
        block = (
            f"{provenance(a, call.command, base, readme=True)}\nThe full table, the loss curves, "
            f"the figures and the fits: [{to}]({to}).\n\n"
            f"### Curves\n\n{curve_tables(a, images, base, ('acc',))}\n{analysis.claims(a)}"
        )
        text = Path(readme).read_text() if Path(readme).exists() else ""
        text = replace_between(text, block, README_START, README_END)
        if HEADLINE_START in text and HEADLINE_END in text:
            text = replace_between(text, headline(a), HEADLINE_START, HEADLINE_END)
        write_text(Path(readme), text)
    return summary


def replace_between(text: str, block: str, start: str, end: str) -> str:
    """Put `block` between the marker lines `start` and `end` (appended if absent)."""
    if start in text and end in text and text.index(start) < text.index(end):
        head, rest = text.split(start, 1)
        return f"{head}{start}\n{block.strip()}\n{end}{rest.split(end, 1)[1]}"
    return f"{text.rstrip()}\n\n{start}\n{block.strip()}\n{end}\n"


def keeps_full(readme: Path, profile: str) -> bool:
    """True when `readme` shows full-profile results, which a quick report must not replace."""
    text = readme.read_text() if profile == "quick" and readme.exists() else ""
    section = text.split(README_START, 1)[1].split(README_END, 1)[0] if README_END in text else ""
    return bool(found := re.search(r"profile `(\w+)`", section)) and found[1] == "full"
