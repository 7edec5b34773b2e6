"""Shared code of the experiment suite: data, models, training, results and plots. Importing it
changes nothing outside it (a notebook turns on the one-line errors with `notebook_setup`)."""

from .config import RECIPES, RunConfig, make_config
from .data import Cifar10, fraction_label, fraction_title, load_cifar10, make_splits, parse_fraction
from .errors import ConfigError, DataError, TrainingError, UserError, WeightsError
from .models import build_model, ensure_weights, find_weights, weights_file
from .notebook import notebook_config, notebook_setup
from .results import load_metrics, summary_line
from .run import save_run, show_curves
from .training import train

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
    "notebook_config",
    "notebook_setup",
    "parse_fraction",
    "save_run",
    "show_curves",
    "summary_line",
    "train",
    "weights_file",
]
