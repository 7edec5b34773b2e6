"""The six notebooks: thin, clean, parameterized, and executable with papermill."""

import json

import nbformat
import papermill as pm
import pytest

from common.grid import NOTEBOOK_PARAMETERS, NOTEBOOKS
from tests.conftest import TINY

NAMES = [f"{m}_data-{s}.ipynb" for m in ("resnet18", "resnet50") for s in ("1-16", "50", "100")]


def load(name):
    return nbformat.read(NOTEBOOKS / name, as_version=4)


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_clean_and_parameterized(name):
    nb = load(name)
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1
    names = {line.split("=")[0].strip() for line in params[0].source.splitlines() if "=" in line}
    assert set(NOTEBOOK_PARAMETERS) <= names
    assert all(
        not c.get("outputs") and c.get("execution_count") is None
        for c in nb.cells
        if c.cell_type == "code"
    )
    model, size = name.removesuffix(".ipynb").split("_data-")
    assert f'model = "{model}"' in params[0].source
    value = {"1-16": "1 / 16", "50": "0.5", "100": "1.0"}[size]
    assert f"data_fraction = {value}" in params[0].source


def test_notebooks_share_the_same_code():
    bodies = {json.dumps([c.source for c in load(n).cells[2:]]) for n in NAMES}
    assert len(bodies) == 1  # only the parameters and the title differ


def test_papermill_runs_a_notebook_end_to_end(fake_data, tmp_path):
    out = tmp_path / "run"
    tiny = {k: v for k, v in TINY.items() if k in NOTEBOOK_PARAMETERS}
    pm.execute_notebook(
        str(NOTEBOOKS / "resnet18_data-1-16.ipynb"),
        str(tmp_path / "executed.ipynb"),
        parameters=dict(
            tiny,
            data_dir=str(fake_data),
            output_dir=str(out),
            device="cpu",
            profile="quick",
            overrides={k: v for k, v in TINY.items() if k not in tiny},
        ),
        kernel_name="python3",
        progress_bar=False,
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == "resnet18" and metrics["data_fraction"] == 1 / 16
    assert len(metrics["history"]) == TINY["epochs"]
    executed = nbformat.read(tmp_path / "executed.ipynb", as_version=4)
    outputs = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs]
    assert any(
        o.get("output_type") == "display_data" and "image/png" in o.get("data", {}) for o in outputs
    )  # the curves show inline
    assert any("test acc" in o.get("text", "") for o in outputs)
