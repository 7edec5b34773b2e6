"""metrics.json: what a run records (schema SCHEMA), how it is read back (older records through
`upgrade`, the one converter of older records), and how runs are grouped into conditions (one
configuration of one setting, model and fraction, over seeds)."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import statistics
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
import torchvision

from .config import REPO, RunConfig, make_config
from .data import FOLDER, TEST_FILE, TRAIN_FILES, data_origin, fraction_title
from .errors import UserError
from .files import read_json, write_json
from .models import CUSTOM, parameter_count
from .training import cpu_name

METRICS = "metrics.json"
# How a run was executed, as metrics.json records it: run_all.py sets EXECUTED=papermill in the
# environment of the kernels it starts; a run in another Jupyter kernel is a "notebook" one;
# run_all.py --direct and the sweeps train "direct"ly in their own process.
EXECUTED = "BIG_VS_SMALL_EXECUTED"
SCHEMA = 2  # 1: the records written before metrics.json carried a schema version
# The settings added for the cited recipes, as a record written before they existed trained
FORMER_DEFAULTS: dict[str, Any] = dict(
    budget="sqrt",
    cutout=0,
    pad_mode="zeros",
    tta="none",
    mixup=0.0,
    head_init="default",
    resize=None,
    warmup_share=None,
    lr_start_factor=0.0,
    lr_drops=[],
)
REQUIRED_KEYS = (
    "model",
    "data_fraction",
    "pretrained",
    "seed",
    "epochs",
    "train_images",
    "history",
    "best_val_acc",
    "test_acc",
    "wall_time_s",
    "device",
    "torch",
    "torchvision",
)
# The starting point we compare with: one run each, real CIFAR-10, 20 epochs (docs/running.md).
STARTING_POINT = {
    ("scratch", "resnet18", 1.0): 85.13,
    ("scratch", "resnet50", 1.0): 84.64,
    ("pretrained", "resnet18", 1.0): 87.03,
    ("pretrained", "resnet50", 1.0): 88.47,
    ("pretrained", "resnext50_32x4d", 1.0): 89.31,
}
MODEL_TITLES = {
    "resnet18": "ResNet-18",
    "resnet34": "ResNet-34",
    "resnet50": "ResNet-50",
    "resnet101": "ResNet-101",
    "resnet152": "ResNet-152",
    "resnext50_32x4d": "ResNeXt50_32x4d",
}
SETTING_TITLES = {"scratch": "from scratch", "pretrained": "fine-tuned from ImageNet"}


def hardware(device: str | None = None, name: str | None = None) -> str:
    """A short description of the device a run trained on: "cpu", or "cuda:3" with the GPU's
    `name` as the run recorded it (the index is the machine's, which the run's own process may
    not see); None: this machine's GPU if torch can use one, else its CPU."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        return f"{name or torch.cuda.get_device_name()} (GPU)"
    return f"{cpu_name()}, {len(os.sched_getaffinity(0))} cores (CPU)"


def portable(path: str | None, run_dir: str | Path) -> str | None:
    """`path` as metrics.json keeps it: relative to the repository when inside it, else to the
    run folder, so that no machine's absolute paths travel with the results."""
    if not path:
        return path
    resolved = Path(path).resolve()
    if resolved.is_relative_to(REPO):
        return resolved.relative_to(REPO).as_posix() or "."
    return os.path.relpath(resolved, Path(run_dir).resolve())


def portable_config(cfg: RunConfig) -> dict[str, Any]:
    """The run's configuration with its paths made portable (see `portable`)."""
    config = cfg.to_dict()
    for key in ("data_dir", "output_dir", "weights_path"):
        config[key] = portable(config[key], cfg.output_dir)
    return config


@functools.cache
def file_identity(*paths: str) -> str | None:
    """A short digest of the files' sizes and modification times (cached: once per process),
    or None when one is missing."""
    try:
        stats = [(Path(p).name, os.stat(p).st_size, os.stat(p).st_mtime_ns) for p in paths]
    except OSError:
        return None
    return hashlib.sha256(json.dumps(stats).encode()).hexdigest()[:16]


def input_identity(data_dir: str, weights_path: str | None) -> dict[str, str | None]:
    """Which CIFAR-10 files and which weights file a run reads, by size and mtime: a run whose
    inputs changed since it finished is not done (rundir.same_run)."""
    folder = Path(data_dir) / FOLDER
    return {
        "data": file_identity(*(str(folder / n) for n in [*TRAIN_FILES, TEST_FILE])),
        "weights": file_identity(weights_path) if weights_path else None,
    }


def how_executed() -> str:
    """How this process executes a run: "papermill" where run_all.py started its kernel (it
    says so in the environment), "notebook" in any other Jupyter kernel, else "script"."""
    return os.environ.get(EXECUTED) or ("notebook" if "ipykernel" in sys.modules else "script")


def make_metrics(
    cfg: RunConfig, result: dict[str, Any], executed: str | None = None
) -> dict[str, Any]:
    """The metrics.json record of a finished run; `executed`: how (None: `how_executed`)."""
    return {
        "schema": SCHEMA,
        "model": cfg.model,
        "data_fraction": cfg.data_fraction,
        "pretrained": cfg.pretrained,
        "setting": cfg.setting,
        "seed": cfg.seed,
        "parameters": parameter_count(cfg.model, cfg.stem),  # as trained: 10 classes, its stem
        "epochs": len(result["history"]),
        "planned_epochs": cfg.epochs,
        "profile": cfg.profile,
        **{
            k: result[k]
            for k in (
                "train_images",
                "val_images",
                "test_images",
                "steps_per_epoch",
                "evaluations",
                "precision",
                "history",
                "best_epoch",
                "best_val_acc",
                "test_acc",
                "test_loss",
                "wall_time_s",
                "device",
                "device_name",
                "machine",
            )
        },
        "test_tta": cfg.tta,  # whether test_acc averaged the mirror's logits ("flip") or not
        "hardware": hardware(result["device"], result["device_name"]),
        "threads": torch.get_num_threads(),  # CPU numbers change with it (float rounding)
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "config": portable_config(cfg),
        "inputs": input_identity(cfg.data_dir, cfg.weights_path),
        "data": data_origin(cfg.data_dir),
        "started_at": stamp(result["started_at"]),
        "finished_at": stamp(time.time()),
        "executed": executed or how_executed(),
    }


def stamp(seconds: float) -> str:
    """A moment as metrics.json writes it: ISO 8601 in UTC, to the millisecond."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")


def moment(text: str) -> float:
    """The seconds since the epoch of a time metrics.json wrote (`stamp`, or the older
    second-resolution form with a numeric offset)."""
    return datetime.fromisoformat(text).timestamp()


def save_metrics(run_dir: str | Path, metrics: dict[str, Any]) -> Path:
    path = Path(run_dir) / METRICS
    write_json(path, metrics)
    return path


def is_complete(metrics: Any) -> bool:
    """True for a metrics record that has every documented key and a non-empty history."""
    return (
        isinstance(metrics, dict)
        and all(k in metrics for k in REQUIRED_KEYS)
        and bool(metrics["history"])
    )


def load_metrics(run_dir: str | Path) -> dict[str, Any] | None:
    """The run's metrics in today's schema, or None when the file is absent, unreadable or
    incomplete."""
    metrics = read_json(Path(run_dir) / METRICS)
    return upgrade(metrics) if is_complete(metrics) else None


def upgrade(record: dict[str, Any]) -> dict[str, Any]:
    """A complete metrics record in today's schema: a copy of an older one with what it did
    not record filled in (settings that did not exist yet at FORMER_DEFAULTS; the start is its
    end less its wall time; paths relative to the repository); today's records unchanged."""
    if record.get("schema") == SCHEMA:
        return record
    old = {**record, "schema": SCHEMA, "config": dict(record.get("config") or {})}
    config = old["config"]
    for key, value in FORMER_DEFAULTS.items():
        config.setdefault(key, value)
    config.setdefault("weights", "(version unrecorded)" if old["pretrained"] else None)
    config.setdefault("stem", today_recipe(old).stem)
    if config.get("data_dir") and Path(config["data_dir"]).is_absolute():
        config["data_dir"] = os.path.relpath(Path(config["data_dir"]).resolve(), REPO)
    end = moment(old["finished_at"])
    old["finished_at"] = stamp(end)
    old.setdefault("started_at", stamp(end - old["wall_time_s"]))
    old.setdefault("test_tta", config["tta"])
    old.setdefault("parameters", parameter_count(old["model"], config["stem"]))
    if "device_name" not in old:  # it named the GPU in `device`, its index unrecorded
        gpu = not old["device"].startswith(("cpu", "cuda"))
        old["device_name"] = old["device"] if gpu else None
        old["device"] = "cuda" if gpu else old["device"]
    old.setdefault("machine", None)  # unknown: never counted as sharing a device
    old.setdefault("inputs", {"data": None, "weights": None})
    old.setdefault("data", "unknown")
    return old


def today_recipe(metrics: dict[str, Any]) -> RunConfig:
    """Today's recipe for the run's cell."""
    return make_config(
        metrics["model"], metrics["data_fraction"], metrics["pretrained"], 0, metrics["profile"]
    )


def parameters(metrics: dict[str, Any]) -> int:
    """The run's parameter count as trained."""
    return int(metrics["parameters"])


def weights_title(metrics: dict[str, Any]) -> str:
    """The ImageNet weights a run started from: 'ImageNet V1' (torchvision's), 'custom: <file>'
    (one's own), '–' from scratch; runs recorded before the setting existed say so."""
    if not metrics["pretrained"]:
        return "–"
    weights = metrics["config"]["weights"]
    return weights if weights.startswith(CUSTOM) else f"ImageNet {weights}"


def summary_line(metrics: dict[str, Any]) -> str:
    """One line for a finished run."""
    quick = " [quick profile]" if metrics.get("profile") == "quick" else ""
    return (
        f"{MODEL_TITLES[metrics['model']]} {SETTING_TITLES[metrics['setting']]}"
        f"{weights_clause(metrics)}, {fraction_title(metrics['data_fraction'])} of the data "
        f"({metrics['train_images']:,} images), seed {metrics['seed']}: "
        f"best val acc {100 * metrics['best_val_acc']:.2f}% (epoch {metrics['best_epoch']}), "
        f"test acc {100 * metrics['test_acc']:.2f}% on {metrics['test_images']:,} images, "
        f"{metrics['wall_time_s']:.0f} s on {device_title(metrics)}{quick}"
    )


def device_title(metrics: dict[str, Any]) -> str:
    """'NVIDIA H200 (cuda:3)', 'cpu' (a CPU record without the CPU's name)."""
    name = metrics.get("device_name")
    return f"{name} ({metrics['device']})" if name else metrics["device"]


def weights_clause(metrics: dict[str, Any]) -> str:
    """' (ImageNet V1)' after a fine-tuned run's title (see `weights_title`), '' from scratch."""
    return f" ({weights_title(metrics)})" if metrics["pretrained"] else ""


Variant = tuple[tuple[str, Any], ...]


def variant(metrics: dict[str, Any]) -> Variant:
    """What a run's training differs in from today's recipe for its cell, as sorted (field,
    value) pairs: () for the recipe. The seed does not count, nor do the weights, which group
    runs of their own (`group_conditions`): a `--weights V2` grid is one configuration."""
    config = metrics["config"]
    try:
        recipe = today_recipe(metrics).training_key()
    except UserError:  # a profile or model this version no longer knows
        return (("recipe", "unknown"),)
    skip = ("seed", "weights")  # the weights are part of the condition, not of the recipe
    differs = {k: v for k, v in config.items() if k in recipe and k not in skip and recipe[k] != v}
    # lists (lr_drops) as tuples: a variant is a key of the grouping
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in differs.items()))


def variant_labels(variants: Iterable[Variant]) -> dict[Variant, str]:
    """Per configuration, the fields whose values differ between the configurations given
    ('lr=0.01' against 'lr: recipe'); '' for all when there is only one."""
    variants = set(variants)
    if len(variants) < 2:
        return dict.fromkeys(variants, "")
    keys = sorted({k for v in variants for k, _ in v})
    varying = [k for k in keys if len({repr(dict(v).get(k)) for v in variants}) > 1]
    return {
        v: ", ".join(f"{k}={dict(v)[k]}" if k in dict(v) else f"{k}: recipe" for k in varying)
        for v in variants
    }


def split_configurations(
    metrics: list[dict[str, Any]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(runs of each setting's main configuration, runs of any other). The main configuration is
    the one most of the setting's runs share, the latest of them where several tie, so that one
    stray run never redefines it. Curves, figures and fits use only its runs: runs that trained
    differently must not be averaged with them. Scratch and fine-tuned runs have recipes of
    their own."""
    rank: dict[tuple[bool, Variant], tuple[int, float]] = {}
    for m in metrics:
        count, when = rank.get((m["pretrained"], variant(m)), (0, 0.0))
        rank[m["pretrained"], variant(m)] = (count + 1, max(when, moment(m["finished_at"])))
    main = {pretrained: v for (pretrained, v), _ in sorted(rank.items(), key=lambda i: i[1])}
    same = [m for m in metrics if variant(m) == main[m["pretrained"]]]
    return same, [m for m in metrics if variant(m) != main[m["pretrained"]]]


def split_weights(
    metrics: list[dict[str, Any]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(runs of the ImageNet weights of their model's latest fine-tuned run, with every run from
    scratch; the fine-tuned runs of other weights). Curves, figures and fits draw one line per
    setting and model, which must never pool two sets of weights."""
    latest: dict[str, tuple[float, str]] = {}
    for m in metrics:
        if m["pretrained"]:
            when = moment(m["finished_at"])
            latest[m["model"]] = max(latest.get(m["model"], (-1.0, "")), (when, weights_title(m)))
    same = [m for m in metrics if not m["pretrained"] or weights_title(m) == latest[m["model"]][1]]
    return same, [
        m for m in metrics if m["pretrained"] and weights_title(m) != latest[m["model"]][1]
    ]


@dataclass
class Condition:
    """One experimental condition: all seeds of one (setting, model, fraction) of the grid in
    one configuration, aggregated."""

    setting: str
    model: str
    fraction: float
    runs: list[dict[str, Any]]
    variant: Variant = ()
    label: str = ""  # what differs from the other configurations of its setting

    def stat(self, key: str) -> tuple[float, float, int]:
        """Mean, sample standard deviation (0 for one run) and count of `key` over seeds."""
        values = [r[key] for r in self.runs]
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return statistics.fmean(values), sd, len(values)


def group_conditions(metrics: Iterable[dict[str, Any]]) -> list[Condition]:
    """Group runs by (setting, model, fraction), weights and configuration (everything that
    changes training but the seed), sorted for display; each labelled with what tells it from
    the other configurations of its setting ('' where its setting has one)."""
    cells: dict[tuple[str, str, float, str, Variant], Condition] = {}
    for m in metrics:
        key = (m["setting"], m["model"], m["data_fraction"], weights_title(m), variant(m))
        cells.setdefault(key, Condition(*key[:3], runs=[], variant=key[4])).runs.append(m)
    for setting in {c.setting for c in cells.values()}:  # each setting has its own recipe
        mine = [c for c in cells.values() if c.setting == setting]
        labels = variant_labels(c.variant for c in mine)
        for cell in mine:
            cell.label = labels[cell.variant]
    order = {name: i for i, name in enumerate(MODEL_TITLES)}
    return sorted(
        cells.values(),
        key=lambda c: (c.setting != "scratch", order[c.model], c.fraction, str(c.variant)),
    )


def collect(output_dir: str | Path, profile: str) -> list[dict[str, Any]]:
    """Every complete metrics.json under `output_dir` trained with `profile`, in today's
    schema."""
    found = []
    for path in sorted(Path(output_dir).glob(f"*/*/{METRICS}")):
        metrics = read_json(path)
        if is_complete(metrics) and metrics.get("profile") == profile:
            found.append(upgrade(metrics))
    return found
