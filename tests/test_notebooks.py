"""The notebooks: thin, clean, parameterized, documented, and executable with papermill; a named
notebook trains its own model; their first call sets up one-line errors."""

import json
import logging
from types import SimpleNamespace

import nbformat
import papermill as pm
import pytest

from common import runner
from common.errors import ConfigError, UserError
from common.runner import (
    KERNEL,
    NOTEBOOK_PARAMETERS,
    NOTEBOOKS,
    Run,
    notebook_config,
    notebook_parameters,
    run_config,
    run_lock,
)
from tests.conftest import TINY

NAMES = [f"{m}_data-{s}.ipynb" for m in ("resnet18", "resnet50") for s in ("1-16", "50", "100")]
RUNS = [*NAMES, "model.ipynb"]  # model.ipynb: every other model, the same cells


def load(name):
    return nbformat.read(NOTEBOOKS / name, as_version=4)


# What Jupyter writes into a notebook it opens with the project's kernel: committed as such, so
# that opening one does not mark it modified. JupyterLab also marks it modified when the kernel's
# Python version differs (checked in a browser), so the notebooks carry the version behind the
# committed figures; on another Python, saving changes that line only.
KERNELSPEC = {"display_name": f"Python ({KERNEL})", "language": "python", "name": KERNEL}
LANGUAGE_INFO = {
    "codemirror_mode": {"name": "ipython", "version": 3},
    "file_extension": ".py",
    "mimetype": "text/x-python",
    "name": "python",
    "nbconvert_exporter": "python",
    "pygments_lexer": "ipython3",
}


@pytest.mark.parametrize("name", [*RUNS, "scaling.ipynb"])
def test_notebook_is_committed_as_jupyter_saves_it_without_outputs(name):
    nb = load(name)
    assert (NOTEBOOKS / name).read_text() == nbformat.writes(nb) + "\n"  # Jupyter's layout
    assert nb.metadata.kernelspec == KERNELSPEC
    assert {k: v for k, v in nb.metadata.language_info.items() if k != "version"} == LANGUAGE_INFO
    assert set(nb.metadata) == {"kernelspec", "language_info"}  # no papermill or widget state
    [params] = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert "notebook_setup()" in nb.cells[params + 1].source  # one-line errors before its work
    for cell in nb.cells:
        assert set(cell.metadata) <= {"tags"}
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None


@pytest.mark.parametrize("name", RUNS)
def test_every_parameter_is_typed_and_documented(name):
    params = pm.inspect_notebook(str(NOTEBOOKS / name))  # what papermill --help-notebook shows
    assert set(params) == {*NOTEBOOK_PARAMETERS, "overrides"}  # the rest through overrides
    assert all(p["inferred_type_name"] != "None" and p["help"] for p in params.values())
    if name == "model.ipynb":
        assert params["model"]["default"] == '"resnet34"'  # a model without a named notebook
        return
    model, size = name.removesuffix(".ipynb").split("_data-")
    assert params["model"]["default"] == f'"{model}"'
    assert params["data_fraction"]["default"] == {"1-16": "1 / 16", "50": "0.5", "100": "1.0"}[size]


def own_model(name: str) -> str:
    """The model a notebook passes to `notebook_config` as its own: its name's, or None."""
    return "None" if name == "model.ipynb" else f'"{name.split("_data-")[0]}"'


def test_notebooks_share_the_same_code_but_their_own_model():
    bodies = set()
    for name in RUNS:
        cells = [c.source for c in load(name).cells[2:]]
        assert cells[0].startswith("from common import runner\n\nrunner.notebook_setup()")
        lines = cells[0].splitlines()
        own = lines.index("cfg = runner.notebook_config(") + 1
        assert lines[own].startswith(f"    {own_model(name)},  # ")
        bodies.add(json.dumps(["\n".join(lines[:own] + lines[own + 1 :]), *cells[1:]]))
    assert len(bodies) == 1  # only the parameters, the title and the own model differ


def test_a_named_notebook_refuses_another_model_and_overrides_reach_the_rest():
    asked = dict(data_fraction=0.25, pretrained=False, seed=0, profile="quick")
    with pytest.raises(ConfigError, match="notebooks/model.ipynb") as e:
        notebook_config("resnet18", "resnet18", overrides={"model": "resnet50"}, **asked)
    assert str(e.value).startswith("this notebook trains resnet18: run resnet50 in")
    with pytest.raises(ConfigError, match="trains resnet18: run resnet50"):
        notebook_config("resnet18", "resnet50", **asked)  # as papermill injects it
    with pytest.raises(ConfigError, match="overrides seed: set the notebook's parameter"):
        notebook_config(None, "resnet34", overrides={"seed": 1}, **asked)
    # what run_all.py injects for a --set of a value without a parameter rebuilds its config
    cfg = run_config(Run("scratch", "resnet18", 0.25, 0), "/tmp/x", profile="quick", lr=0.05)
    params = notebook_parameters(cfg, ["lr"])
    assert params["overrides"] == {"lr": 0.05}
    again = notebook_config("resnet18", **params)
    assert again.training_key() == cfg.training_key() and again.lr == 0.05


class FakeShell:
    """What `one_line_in_jupyter` asks of IPython's shell: the exceptions it gets handlers for."""

    def __init__(self) -> None:
        self.handled: list[tuple[type, ...]] = []

    def set_custom_exc(self, types: tuple[type, ...], handler: object) -> None:
        self.handled.append(types)


def test_notebook_setup_shows_user_errors_in_one_line_and_drops_the_interrupt_log(
    monkeypatch, caplog
):
    import IPython

    shell = FakeShell()
    shell.kernel = SimpleNamespace(log=logging.getLogger("IPKernelApp"))
    monkeypatch.setattr(IPython, "get_ipython", lambda: shell)
    runner.notebook_setup()  # what the notebooks call
    assert shell.handled == [(UserError,)]
    # the line jupyter_client's interrupt before shutdown makes the kernel log goes; others stay
    shell.kernel.log.error("KeyboardInterrupt caught in kernel.")
    shell.kernel.log.error("Exception in message handler:")
    assert [r.getMessage() for r in caplog.records] == ["Exception in message handler:"]


def test_a_notebook_never_overwrites_a_finished_run_and_says_so_in_one_line(
    fake_data, tmp_path, capsys
):
    # the notebook's own call, in this process: trained, then read back, never retrained
    params = dict(profile="quick", data_dir=str(fake_data), output_dir=str(tmp_path), **TINY)
    cfg = notebook_config("resnet18", "resnet18", **params)
    metrics = runner.train_or_reuse(cfg)
    record = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    assert runner.train_or_reuse(cfg) == metrics
    assert f"{tmp_path} already holds this run" in capsys.readouterr().out
    with run_lock(tmp_path), pytest.raises(ConfigError, match="being run by another process"):
        runner.train_or_reuse(cfg)
    # another configuration, through papermill: refused in one line, the folder untouched
    notebook = dict(params, seed=1, device="cpu")
    notebook["overrides"] = {k: v for k, v in TINY.items() if k not in NOTEBOOK_PARAMETERS}
    for key in notebook["overrides"]:
        del notebook[key]
    executed = tmp_path.parent / "executed.ipynb"
    with pytest.raises(pm.PapermillExecutionError) as e:
        pm.execute_notebook(
            str(NOTEBOOKS / "resnet18_data-1-16.ipynb"), str(executed), notebook, progress_bar=False
        )
    message = (
        f"{tmp_path} holds a finished run of another configuration: set output_dir to another "
        "folder, or delete that folder to replace its run"
    )
    assert (e.value.ename, e.value.evalue) == ("ConfigError", message)
    [error] = [
        o
        for c in nbformat.read(executed, 4).cells
        for o in c.get("outputs", [])
        if o.output_type == "error"
    ]
    assert error.traceback == [f"ConfigError: {message}"]
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == record
