"""Accuracy and loss curves: train and validation per epoch, mean and spread over seeds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .data import fraction_label, fraction_title
from .files import atomic_path
from .results import MODEL_TITLES, SETTING_TITLES, weights_clause

SETTING_DIRS = {"scratch": "from-scratch", "pretrained": "finetune"}
METRIC_LABELS = {"acc": "accuracy", "loss": "cross-entropy loss"}


def curve_path(
    images_dir: str | Path, setting: str, model: str, fraction: float, metric: str
) -> Path:
    """images/from-scratch/resnet18_acc_1-16.png, images/finetune/resnet50_loss_100.png, ..."""
    name = f"{model}_{metric}_{fraction_label(fraction)}.png"
    return Path(images_dir) / SETTING_DIRS[setting] / name


def curve_title(runs: list[dict[str, Any]]) -> str:
    first = runs[0]
    seeds = f", mean ± sd of {len(runs)} seeds" if len(runs) > 1 else f", seed {first['seed']}"
    quick = "\n[quick profile: short CPU smoke run, not a converged result]"
    return (
        f"{MODEL_TITLES[first['model']]} {SETTING_TITLES[first['setting']]}"
        f"{weights_clause(first)}, {fraction_title(first['data_fraction'])} of the data "
        f"({first['train_images']:,} images){seeds}{quick * (first.get('profile') == 'quick')}"
    )


def plot_curves(runs: list[dict[str, Any]], metric: str) -> Figure:
    """Train and validation `metric` ('acc' or 'loss') per epoch for the seeds of one cell.

    Training figures are drawn for every epoch, validation ones at the epochs that were
    evaluated. With several seeds, the line is the mean and the band one standard deviation;
    seeds that stopped early are averaged over the epochs they share.
    """
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    length = min(len(r["history"]) for r in runs)
    for split, color in (("train", "tab:blue"), ("val", "tab:orange")):
        key = f"{split}_{metric}"
        rows = [h for h in runs[0]["history"][:length] if key in h]
        epochs = np.array([h["epoch"] for h in rows])
        values = np.array([[r["history"][e - 1][key] for e in epochs] for r in runs])
        if metric == "acc":
            values = values * 100
        mean = values.mean(axis=0)
        label = "train (augmented batches)" if split == "train" else "validation"
        if split == "val" and epochs.size and epochs[0] > 1:  # eval_every's cap on its cost
            label += f", every {epochs[0]} epochs (a capped evaluation cost: eval_share)"
        ax.plot(epochs, mean, marker="o", ms=3, color=color, label=label)
        if len(runs) > 1:
            sd = values.std(axis=0, ddof=1)
            ax.fill_between(epochs, mean - sd, mean + sd, color=color, alpha=0.2)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # 1 epoch: one tick
    ax.set_xlabel("epoch")
    ax.set_ylabel(METRIC_LABELS[metric] + (" (%)" if metric == "acc" else ""))
    ax.set_title(curve_title(runs), fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Save `fig` as a PNG atomically and close it."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(path)


def save_curves(runs: list[dict[str, Any]], images_dir: str | Path) -> list[Path]:
    """Write the accuracy and loss PNGs of one cell under its seed-style names."""
    cell = (runs[0]["setting"], runs[0]["model"], runs[0]["data_fraction"])
    return [
        save_figure(plot_curves(runs, metric), curve_path(images_dir, *cell, metric))
        for metric in ("acc", "loss")
    ]
