"""The grid of runs: which runs a command asks for, which notebook runs each, its config and
where its files go."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import LIFT, SETTINGS, RunConfig, make_config, run_name
from .data import fraction_label
from .errors import ConfigError
from .models import check_model, flops_per_image

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
SEED_FRACTIONS = (1 / 16, 0.5, 1.0)  # the sizes the six notebooks are named for
BASE_MODELS = ("resnet18", "resnet50")  # at every fraction and setting; each has named notebooks
MODEL_NOTEBOOK = "model.ipynb"  # the same cells, for every other model
EXTRA_MODEL = "resnext50_32x4d"  # the seed's extra run: pretrained, on 100% only
# The run notebooks' `parameters` cell, which run_all.py injects: what a student changes (seed,
# epochs, data_dir, weights, profile) and what places the run in the grid. Every other RunConfig
# field a run sets (--set, a weights file) goes into the cell's one `overrides` dict.
NOTEBOOK_PARAMETERS = (
    "model",
    "data_fraction",
    "pretrained",
    "seed",
    "epochs",
    "data_dir",
    "weights",
    "profile",
    "output_dir",
    "device",
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
    def condition(self) -> tuple[str, str, float]:
        """(setting, model, fraction): what the summary's rows group its seeds by."""
        return (self.setting, self.model, self.fraction)

    @property
    def cost(self) -> float:
        """A relative training time, only to start the longest runs first: the share of the
        data times the model's forward FLOPs per image relative to ResNet-18's (counted by
        torch on a 32 px image through the CIFAR stem; the ImageNet stem scales every model
        alike)."""
        return self.fraction * flops_per_image(self.model) / flops_per_image("resnet18")

    @property
    def notebook(self) -> Path:
        """ResNet-18 and ResNet-50: their named notebook at the nearest of the three seed sizes;
        every other model: notebooks/model.ipynb. Papermill injects the exact model and
        fraction, so any cell can run through either."""
        if self.model not in BASE_MODELS:
            return NOTEBOOKS / MODEL_NOTEBOOK
        nearest = min(SEED_FRACTIONS, key=lambda f: abs(f - self.fraction))
        return NOTEBOOKS / f"{self.model}_data-{fraction_label(nearest)}.ipynb"


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
        runs += [Run("pretrained", EXTRA_MODEL, 1.0, seed) for seed in seeds]
    return list(dict.fromkeys(runs))


def run_config(run: Run, output_dir: str | Path, **overrides: Any) -> RunConfig:
    """The validated configuration a run's notebook will build from the injected parameters."""
    return make_config(
        model=run.model,
        data_fraction=run.fraction,
        pretrained=run.pretrained,
        seed=run.seed,
        output_dir=str(Path(output_dir) / run.setting / run.name),
        **overrides,
    )


def notebook_parameters(cfg: RunConfig, extra_keys: Iterable[str] = ()) -> dict[str, Any]:
    """The values papermill injects into the notebook's `parameters` cell; `extra_keys` (other
    RunConfig fields, e.g. the --set keys) and a local weights file go in its `overrides`."""
    params = {k: getattr(cfg, k) for k in NOTEBOOK_PARAMETERS}
    extra = [k for k in extra_keys if k not in NOTEBOOK_PARAMETERS]
    extra += ["weights_path"] if cfg.weights_path and "weights_path" not in extra else []
    params["overrides"] = {  # a lifted cap must stay lifted: None there means the recipe's
        k: LIFT if getattr(cfg, k) is None else getattr(cfg, k) for k in extra
    }
    return params
