"""The experiment suite's library; the notebooks call the names below. Importing it changes
nothing outside it, and each name loads its module on first use (so `python -m common.config`
is not imported twice)."""

from importlib import import_module
from typing import Any

_HOME = {
    "notebook_config": "runner",
    "notebook_setup": "runner",
    "train_or_reuse": "runner",
    "show_curves": "runner",
    "summary_line": "report",
}
__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'common' has no attribute {name!r}")
    return getattr(import_module(f".{_HOME[name]}", __name__), name)
