"""Shared code of the experiment suite: data, models, training, results and plots. Importing it
changes nothing outside it (a notebook turns on the one-line errors with `notebook_setup`).

The names below load their module on first use, so that `python -m common.config` (or any
module run as a script) is not imported twice (runpy's RuntimeWarning)."""

from importlib import import_module
from typing import Any

_HOMES = {
    "config": ("RECIPES", "RunConfig", "make_config"),
    "data": (
        "Cifar10",
        "fraction_label",
        "fraction_title",
        "load_cifar10",
        "make_splits",
        "parse_fraction",
    ),
    "errors": ("ConfigError", "DataError", "TrainingError", "UserError", "WeightsError"),
    "models": ("build_model", "ensure_weights", "find_weights", "weights_file"),
    "report": ("load_metrics", "summary_line"),
    "runner": ("notebook_config", "notebook_setup", "save_run", "show_curves", "train_or_reuse"),
    "training": ("train",),
}
_HOME = {name: module for module, names in _HOMES.items() for name in names}
__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'common' has no attribute {name!r}")
    return getattr(import_module(f".{_HOME[name]}", __name__), name)
