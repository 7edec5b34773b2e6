"""The end of a run, as its notebook calls it: its curves and metrics.json written, its resumable
checkpoints pruned, its curves shown."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from .checkpoint import KEEP_CHECKPOINTS, prune_checkpoints
from .config import RunConfig
from .plots import plot_curves, save_figure
from .results import make_metrics, save_metrics


def save_run(
    cfg: RunConfig,
    result: dict[str, Any],
    keep_checkpoints: bool | None = None,
    executed: str | None = None,
) -> dict[str, Any]:
    """Write the run's curves (acc.png, loss.png) and then its metrics.json (last: its presence
    marks the run complete), then drop its resumable checkpoints, keeping best.pt, unless
    asked to keep them (None: as run_all.py --keep-checkpoints tells the kernel it started).
    `executed`: how the run was executed (None: as results.how_executed finds it)."""
    metrics = make_metrics(cfg, result, executed)
    for metric in ("acc", "loss"):
        save_figure(plot_curves([metrics], metric), Path(cfg.output_dir) / f"{metric}.png")
    save_metrics(cfg.output_dir, metrics)
    if not (os.environ.get(KEEP_CHECKPOINTS) if keep_checkpoints is None else keep_checkpoints):
        prune_checkpoints(cfg.output_dir)
    return metrics


def show_curves(metrics: dict[str, Any]) -> None:
    """Draw the run's accuracy and loss curves inline (in Jupyter) or on screen."""
    for metric in ("acc", "loss"):
        plot_curves([metrics], metric)
    plt.show()
