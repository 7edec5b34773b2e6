"""What the run notebooks call before training: the one-line display of a UserError (asked for
explicitly: importing `common` changes nothing), and the run's configuration from a notebook's
parameters, where a notebook named for a model runs that model only."""

from __future__ import annotations

from typing import Any

from .config import RunConfig, make_config
from .errors import ConfigError, one_line_in_jupyter

MODEL_NOTEBOOK = "notebooks/model.ipynb"  # the notebook that runs any model
# A notebook's first call: in Jupyter or IPython, a UserError raised in a cell shows as its one
# line (what to do) instead of a traceback through the library; elsewhere nothing changes.
notebook_setup = one_line_in_jupyter


def notebook_config(
    own_model: str | None, model: str, overrides: dict[str, Any] | None = None, **params: Any
) -> RunConfig:
    """The run's validated configuration from a notebook's parameters: `params` as its
    parameters cell names them, `overrides` any other RunConfig field. `own_model` is the model
    a named notebook is for (None: notebooks/model.ipynb, which runs any model).

    Raises a one-line ConfigError for another model in a named notebook, or for an override of
    a value the notebook has a parameter for."""
    overrides = dict(overrides or {})
    asked = overrides.get("model", model)
    if own_model is not None and asked != own_model:
        raise ConfigError(
            f'this notebook trains {own_model}: run {asked} in {MODEL_NOTEBOOK} (model = "{asked}")'
        )
    if twice := sorted(set(overrides) & {"model", *params}):
        raise ConfigError(
            f"overrides {', '.join(twice)}: set the notebook's parameter of that name instead"
        )
    return make_config(model=model, **params, **overrides)
