"""The grid of runs: which notebook runs which cell, where its files go, and whether it is done."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import LIFT, SETTINGS, RunConfig, make_config, run_name
from .data import fraction_label
from .errors import ConfigError
from .files import read_json
from .models import check_model
from .results import input_identity, load_metrics, same_inputs

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
SEED_FRACTIONS = (1 / 16, 0.5, 1.0)  # the sizes the six notebooks are named for
BASE_MODELS = ("resnet18", "resnet50")
FAILED = "failed.json"
# The notebooks' `parameters` cell; the rest of a run's settings come from the recipe table.
NOTEBOOK_PARAMETERS = (
    "model",
    "data_fraction",
    "pretrained",
    "epochs",
    "batch_size",
    "lr",
    "image_size",
    "seed",
    "val_size",
    "patience",
    "data_dir",
    "output_dir",
    "device",
    "profile",
    "weights_path",
)


@dataclass(frozen=True)
class Run:
    """One cell of the grid for one seed."""

    setting: str
    model: str
    fraction: float
    seed: int

    @property
    def pretrained(self) -> bool:
        return self.setting == "pretrained"

    @property
    def name(self) -> str:
        return run_name(self.model, self.fraction, self.seed)

    @property
    def cell(self) -> tuple[str, str, float]:
        return (self.setting, self.model, self.fraction)

    @property
    def cost(self) -> float:
        """A rough relative training time, only to start the longest runs first: the share of
        the data times the model's time per image (ResNet-50-sized models about twice
        ResNet-18's on the CPU benchmark of benchmarks/results/pipeline-cpu.md)."""
        return self.fraction * (1.0 if self.model == "resnet18" else 2.0)

    def run_dir(self, output_dir: str | Path) -> Path:
        return Path(output_dir) / self.setting / self.name

    @property
    def notebook(self) -> Path:
        """The named notebook of the model's family at the nearest of the three seed sizes;
        papermill injects the exact model and fraction, so any cell can run through it."""
        family = "resnet18" if self.model == "resnet18" else "resnet50"
        nearest = min(SEED_FRACTIONS, key=lambda f: abs(f - self.fraction))
        return NOTEBOOKS / f"{family}_data-{fraction_label(nearest)}.ipynb"


def build_grid(
    settings: list[str], models: list[str] | None, fractions: list[float], seeds: list[int]
) -> list[Run]:
    """All runs of the grid. With `models` unset: ResNet-18 and ResNet-50 at every fraction and
    setting, plus ResNeXt50_32x4d pretrained on 100% of the data (the seed's 13 runs)."""
    for s in settings:
        if s not in SETTINGS:
            raise ConfigError(f"unknown setting {s!r}: choose from {', '.join(SETTINGS)}")
    for m in models or []:
        check_model(m)
    runs = [
        Run(s, m, f, seed)
        for s in settings
        for m in (models or BASE_MODELS)
        for f in fractions
        for seed in seeds
    ]
    if models is None and "pretrained" in settings and 1.0 in fractions:
        runs += [Run("pretrained", "resnext50_32x4d", 1.0, seed) for seed in seeds]
    return list(dict.fromkeys(runs))


def run_config(run: Run, output_dir: str | Path, **overrides: Any) -> RunConfig:
    """The validated configuration a run's notebook will build from the injected parameters."""
    return make_config(
        model=run.model,
        data_fraction=run.fraction,
        pretrained=run.pretrained,
        seed=run.seed,
        output_dir=str(run.run_dir(output_dir)),
        **overrides,
    )


def notebook_parameters(cfg: RunConfig, extra_keys: Iterable[str] = ()) -> dict[str, Any]:
    """The values papermill injects into the notebook's `parameters` cell; `extra_keys` are
    other RunConfig fields, passed in its `overrides` dict."""
    params = {k: getattr(cfg, k) for k in NOTEBOOK_PARAMETERS}
    params["overrides"] = {  # a lifted cap must stay lifted: None there means the recipe's
        k: LIFT if getattr(cfg, k) is None else getattr(cfg, k)
        for k in extra_keys
        if k not in NOTEBOOK_PARAMETERS
    }
    return params


def status(run: Run, cfg: RunConfig) -> str:
    """'done' (complete metrics for the same training settings, data and weights files),
    'failed' or 'todo'."""
    metrics = load_metrics(cfg.output_dir)
    if (
        metrics
        and metrics.get("config", {})
        and _same_training(metrics["config"], cfg)
        and same_inputs(metrics.get("inputs"), input_identity(cfg.data_dir, cfg.weights_path))
    ):
        return "done"
    return "failed" if (Path(cfg.output_dir) / FAILED).exists() else "todo"


def _same_training(saved: dict[str, Any], cfg: RunConfig) -> bool:
    key = cfg.training_key()
    return {k: saved.get(k) for k in key} == key


def failure_reason(run_dir: str | Path) -> str | None:
    record = read_json(Path(run_dir) / FAILED)
    return record.get("error") if isinstance(record, dict) else None
