"""benchmarks/pipeline.py on synthetic images: both pipelines measured, bad input in one line."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
import torch

from tests.conftest import REPO


def load_pipeline() -> ModuleType:
    """The benchmark script as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location("pipeline", REPO / "benchmarks" / "pipeline.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_both_pipelines_are_measured(tmp_path: Path) -> None:
    out = tmp_path / "pipeline.md"
    load_pipeline().main(
        [
            "--synthetic",
            "--device",
            "cpu",
            "--models",
            "resnet18",
            "--steps",
            "2",
            "--warmup",
            "1",
            "--batch-size",
            "8",
            "--workers",
            "1",
            "--image-size",
            "32",
            "--stem",
            "imagenet",
            "--out",
            str(out),
        ]
    )
    text = out.read_text()
    assert "SYNTHETIC" in text and "--synthetic" in text
    rows = {
        cells[2]: cells
        for line in text.splitlines()
        if line.startswith("| resnet18 |")
        for cells in [[c.strip() for c in line.split("|")]]
    }
    assert set(rows) == {"ours", "usual"}
    for cells in rows.values():
        assert cells[3:5] == ["32", "8"]
        assert float(cells[5].replace(",", "")) > 0
        assert 0 <= float(cells[6]) <= 100
    assert float(rows["ours"][7]) > 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["--models", "resnet7"], "unknown model 'resnet7'"),
        (["--steps", "0"], "--steps must be at least 1"),
        pytest.param(
            ["--device", "cuda"],
            "no GPU is visible",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present"),
        ),
    ],
)
def test_bad_input_is_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    with pytest.raises(SystemExit) as e:
        load_pipeline().main(["--synthetic", "--out", str(tmp_path / "x.md"), *args])
    assert message in str(e.value.code) and "\n" not in str(e.value.code)
    assert not (tmp_path / "x.md").exists()
