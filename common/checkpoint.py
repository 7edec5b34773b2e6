"""Resumable checkpoints of a run: atomic, with the previous one kept as a fallback."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from .files import atomic_path

LATEST = "checkpoint.pt"
PREVIOUS = "checkpoint.prev.pt"
BEST = "best.pt"
# Set (to anything) in a kernel's environment, e.g. by run_all.py --keep-checkpoints: a finished
# run keeps its resumable checkpoints.
KEEP_CHECKPOINTS = "BIG_VS_SMALL_KEEP_CHECKPOINTS"


def save_checkpoint(run_dir: str | Path, state: dict[str, Any]) -> None:
    """Write `state` as the latest checkpoint; the one it replaces becomes the previous."""
    run_dir = Path(run_dir)
    with atomic_path(run_dir / LATEST) as tmp:
        torch.save(state, tmp)
        if (run_dir / LATEST).exists():
            os.replace(run_dir / LATEST, run_dir / PREVIOUS)


def load_checkpoint(run_dir: str | Path, key: dict[str, Any]) -> dict[str, Any] | None:
    """The newest readable checkpoint written for the same training `key`, or None.

    A truncated or unreadable file is reported and the previous checkpoint is tried; a
    checkpoint from different settings (epochs, lr, ...) is ignored, so the run starts over.
    """
    for name in (LATEST, PREVIOUS):
        path = Path(run_dir) / name
        if not path.exists():
            continue
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            tqdm.write(f"checkpoint {path} is unreadable ({type(e).__name__}): trying an older one")
            continue
        if state.get("key") != key:
            tqdm.write(f"checkpoint {path} was written with other settings: starting over")
            return None
        return state
    return None


def save_weights(run_dir: str | Path, state_dict: dict[str, torch.Tensor]) -> None:
    """Save the best weights of a run as a plain state dict of CPU tensors (`best.pt`), which
    loads on any machine."""
    with atomic_path(Path(run_dir) / BEST) as tmp:
        torch.save({k: v.detach().cpu() for k, v in state_dict.items()}, tmp)


def prune_checkpoints(run_dir: str | Path) -> None:
    """Drop the resumable checkpoints of a finished run, keeping `best.pt`."""
    for name in (LATEST, PREVIOUS):
        (Path(run_dir) / name).unlink(missing_ok=True)
