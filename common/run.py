"""A run from its configuration to its folder, as the notebooks and `run_all.py --direct` do it:
its folder locked and checked, the model trained, its curves and metrics.json written, its
resumable checkpoints pruned, its curves shown."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from .config import RunConfig
from .errors import ConfigError
from .plots import plot_curves, save_figure
from .results import EXECUTED, load_metrics, make_metrics, save_metrics
from .rundir import Busy, run_lock, same_run
from .training import KEEP_CHECKPOINTS, prune_checkpoints


def train_or_reuse(cfg: RunConfig) -> dict[str, Any]:
    """The run `cfg` describes, trained in `cfg.output_dir`, or read back where that folder
    already holds it finished. The folder is locked while training (run_all.py holds the lock
    of the kernels it starts). Raises a one-line ConfigError where the folder holds a finished
    run of another configuration, or another process is running it: nothing there is touched."""
    if os.environ.get(EXECUTED) == "papermill":  # run_all.py locked and checked the folder
        return train_and_save(cfg)
    folder = Path(cfg.output_dir)
    try:
        with run_lock(folder):
            metrics = load_metrics(folder)
            if metrics is None:
                return train_and_save(cfg)
    except Busy:
        raise ConfigError(
            f"{folder} is being run by another process: wait for it, or set output_dir to "
            "another folder"
        ) from None
    if not same_run(metrics, cfg):
        raise ConfigError(
            f"{folder} holds a finished run of another configuration: set output_dir to another "
            "folder, or delete that folder to replace its run"
        )
    print(f"{folder} already holds this run (finished {metrics['finished_at']}): reusing it")
    return metrics


def train_and_save(
    cfg: RunConfig,
    keep_checkpoints: bool | None = None,
    executed: str | None = None,
    direct: bool = False,
) -> dict[str, Any]:
    """Build the model, load the data, train (resuming from a checkpoint) and save the run;
    `direct`: in run_all.py's own process, which fetched the data, with no progress bars."""
    from .data import load_cifar10
    from .models import build_model
    from .training import train

    model = build_model(
        cfg.model, cfg.pretrained, cfg.stem, cfg.weights_path, seed=cfg.seed, weights=cfg.weights
    )
    data = load_cifar10(cfg.data_dir, download=not direct)
    result = train(model, data, cfg, run_dir=cfg.output_dir, progress=not direct)
    return save_run(cfg, result, keep_checkpoints, executed)


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
