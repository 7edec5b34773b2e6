"""Shared code of the experiment suite: data, models, training, results and plots."""

from .config import RECIPES, RunConfig, make_config
from .data import Cifar10, fraction_label, fraction_title, load_cifar10, make_splits, parse_fraction
from .errors import (
    ConfigError,
    DataError,
    TrainingError,
    UserError,
    WeightsError,
    one_line_in_jupyter,
)
from .models import build_model, ensure_weights, find_weights, weights_file
from .results import load_metrics, summary_line
from .run import save_run, show_curves
from .training import train

one_line_in_jupyter()  # a notebook's bad parameter reads as one line, not a traceback

__all__ = [
    "RECIPES",
    "Cifar10",
    "ConfigError",
    "DataError",
    "RunConfig",
    "TrainingError",
    "UserError",
    "WeightsError",
    "build_model",
    "ensure_weights",
    "find_weights",
    "fraction_label",
    "fraction_title",
    "load_cifar10",
    "load_metrics",
    "make_config",
    "make_splits",
    "parse_fraction",
    "save_run",
    "show_curves",
    "summary_line",
    "train",
    "weights_file",
]
