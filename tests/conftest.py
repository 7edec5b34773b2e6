"""Fixtures: a tiny synthetic CIFAR-10 in the standard layout, and test-made weight files; each
xdist worker's share of the cores as torch threads."""

from __future__ import annotations

import os
import pickle
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
# Small enough for a 2-core CPU: these override the quick recipe in tests that train; a checkpoint
# and a validation pass after every epoch give the resume and early-stopping tests their epochs.
TINY = dict(
    epochs=2,
    batch_size=16,
    steps_per_epoch=2,
    eval_images=40,
    val_size=40,
    precision="fp32",
    checkpoint_every=0,
    eval_share=2.0,
)


def pytest_configure(config: pytest.Config) -> None:
    """Under xdist, give each worker (and the runs and kernels it starts) its share of the cores
    as torch threads, unless OMP_NUM_THREADS is set: more threads than cores make every training
    step several times slower (why common/runner.py shares the cores out among parallel runs)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1 and "OMP_NUM_THREADS" not in os.environ:
        share = max(1, len(os.sched_getaffinity(0)) // workers)
        os.environ["OMP_NUM_THREADS"] = str(share)
        torch.set_num_threads(share)


def fake_result(acc: float = 0.5, epochs: int = 2) -> dict[str, Any]:
    """What `train` returns, for `epochs` evaluated epochs ending at accuracy `acc`."""
    history = [
        {
            "epoch": e,
            "train_loss": 2.0 / e,
            "train_acc": acc / 2,
            "val_loss": 1.5 / e,
            "val_acc": acc,
            "lr": 0.1,
        }
        for e in range(1, epochs + 1)
    ]
    return {
        "history": history,
        "best_epoch": epochs,
        "best_val_acc": acc,
        "test_acc": acc,
        "test_loss": 1.0,
        "train_images": 100,
        "val_images": 20,
        "test_images": 10_000,
        "steps_per_epoch": 3,
        "evaluations": epochs,
        "precision": "fp32",
        "wall_time_s": 12.0,
        "started_at": time.time() - 12.0,
        "device": "cpu",
        "device_name": "test CPU",
        "machine": "0123abcd",
    }


def write_fake_cifar(
    root: Path, train_per_class: int = 20, test_per_class: int = 6, seed: int = 0
) -> Path:
    """Write a learnable CIFAR-10 look-alike (each class a colour and a stripe, plus noise)
    as data_batch_1..5, test_batch and batches.meta under root/cifar-10-batches-py."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)

    def images(per_class: int) -> tuple[np.ndarray, list[int]]:
        labels = np.tile(np.arange(10), per_class)
        x = rng.integers(0, 80, size=(len(labels), 3, 32, 32))
        for i, c in enumerate(labels):
            x[i, c % 3] += 100 + 15 * c
            x[i, :, 3 * c : 3 * c + 3, :] = 250
        return x.clip(0, 255).astype(np.uint8).reshape(len(labels), -1), labels.tolist()

    train_x, train_y = images(train_per_class)
    per_file = len(train_y) // 5
    for i in range(5):
        part = slice(i * per_file, (i + 1) * per_file)
        with open(folder / f"data_batch_{i + 1}", "wb") as f:
            pickle.dump({"data": train_x[part], "labels": train_y[part]}, f)
    test_x, test_y = images(test_per_class)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({"data": test_x, "labels": test_y}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [str(i) for i in range(10)]}, f)
    return root


@pytest.fixture(scope="session")
def fake_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fake_cifar(tmp_path_factory.mktemp("cifar"))


@pytest.fixture
def workdir(tmp_path: Path, fake_data: Path) -> Path:
    """A folder for a test's runs, with the fake data as its data/."""
    (tmp_path / "data").symlink_to(fake_data, target_is_directory=True)
    return tmp_path


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torchvision cache for this test: the tests never use real weights."""
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


def write_test_weights(model: str, folder: Path) -> Path:
    """A randomly initialised ImageNet-shaped state dict under torchvision's file name.

    Only for tests: it proves that the loading path works, never stands in for real weights.
    """
    from common.models import MODELS, weights_file

    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / weights_file(model)
    torch.save(MODELS[model](weights=None).state_dict(), path)
    return path


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make downloads fail at once, as on an offline machine, whatever the test host has."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("network unreachable (test)")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr("torchvision.datasets.utils.download_url", refuse)


def subprocess_env(**extra: str | None) -> dict[str, str]:
    """Environment for a child process that imports the repository's code (`extra`: variables
    to set, or with None to remove)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return {k: v for k, v in env.items() if v is not None}
