"""The CUDA paths, on a GPU only (`pytest -m gpu`; skipped where CUDA is not available):
augmentation on the device, and a tiny run in the arithmetic `auto` picks there (autocast and
channels-last steps) that writes its metrics."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from common.config import RunConfig, make_config
from common.data import CIFAR_MEAN, CIFAR_STD, Batches, Cifar10, load_cifar10
from common.models import build_model
from common.runner import save_run
from common.training import gpu_precision, train
from tests.conftest import TINY

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]
CUDA = torch.device("cuda")


@pytest.fixture(scope="module")
def data(fake_data: Path) -> Cifar10:
    return load_cifar10(fake_data, download=False)


def gpu_config(tmp_path: Path, **kw: object) -> RunConfig:
    """A tiny full-profile run on the GPU, in the arithmetic `auto` picks there."""
    values = {**TINY, "precision": "auto", "device": "cuda", "output_dir": str(tmp_path / "run")}
    return make_config("resnet18", 1.0, profile="full", **{**values, **kw})


@pytest.mark.parametrize("aug", [{}, {"cutout": 12, "pad_mode": "reflect", "mixup": 0.4}])
def test_augmentation_on_the_device_matches_the_cpu(data: Cifar10, aug: dict) -> None:
    def first_batch(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = data.train_x.to(device), data.train_y.to(device)
        gen = torch.Generator().manual_seed(0)
        return next(iter(Batches(x, y, 16, True, CIFAR_MEAN, CIFAR_STD, gen=gen, **aug)))

    (xg, yg), (xc, yc) = first_batch(CUDA), first_batch(torch.device("cpu"))
    assert xg.is_cuda and torch.allclose(yg.cpu(), yc)
    assert torch.allclose(xg.cpu(), xc, atol=1e-5)


def test_a_tiny_run_on_cuda_has_a_finite_loss_and_writes_its_metrics(
    data: Cifar10, tmp_path: Path
) -> None:
    cfg = gpu_config(tmp_path)
    model = build_model("resnet18", stem=cfg.stem, seed=0)
    result = train(model, data, cfg, run_dir=cfg.output_dir, progress=False)
    save_run(cfg, result)
    metrics = json.loads((Path(cfg.output_dir) / "metrics.json").read_text())
    assert metrics["device_name"] == torch.cuda.get_device_name(CUDA)
    assert all(math.isfinite(h["train_loss"]) for h in metrics["history"])
    auto = gpu_precision(CUDA)
    assert metrics["precision"] == (
        "fp32" if auto == "fp32" else f"{auto} autocast + channels-last"
    )
    assert (Path(cfg.output_dir) / "acc.png").exists()
