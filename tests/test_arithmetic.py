"""One code path on every device: autocast, channels-last and the gradient scaler run on the CPU
the way they run on a GPU; `auto` resolves per device."""

from __future__ import annotations

import math

import pytest
import torch

import common.training as training
from common.config import default_profile, make_config
from common.data import CIFAR_MEAN, CIFAR_STD, Batches, load_cifar10
from common.errors import ConfigError
from common.training import DTYPES, Arithmetic, gpu_precision, place, resolve_device, train
from tests.conftest import TINY
from tests.test_train import tiny_model


def config(**kw):
    return make_config("resnet18", profile="quick", **(TINY | dict(device="cpu") | kw))


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_takes_the_gpu_path_on_the_cpu(fake_data, precision):
    data, model, cfg = (
        load_cifar10(fake_data, download=False),
        tiny_model(),
        config(precision=precision),
    )
    arithmetic = place(model, cfg)[1]
    assert arithmetic == Arithmetic(precision, True, "cpu")
    assert model.conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert arithmetic.scaler().is_enabled() == (precision == "fp16")  # bf16: fp32's range
    gen = torch.Generator().manual_seed(0)
    batches = Batches(
        data.train_x[:32], data.train_y[:32], 16, True, CIFAR_MEAN, CIFAR_STD,
        image_size=40, gen=gen, memory_format=arithmetic.memory_format,
    )  # fmt: skip
    xb, _ = next(iter(batches))  # 40 px: the upsampling branch too
    assert xb.dtype == torch.float32 and xb.shape == (16, 3, 40, 40)
    assert xb.is_contiguous(memory_format=torch.channels_last)
    with arithmetic.autocast():
        assert model(xb).dtype == DTYPES[precision]
    result = train(tiny_model(), data, cfg, progress=False)
    assert result["precision"] == f"{precision} autocast + channels-last"
    assert all(math.isfinite(h["train_loss"]) for h in result["history"])


@pytest.mark.parametrize(
    ("capability", "expected"),
    [((9, 0), "bf16"), ((8, 0), "bf16"), ((7, 5), "fp16"), ((6, 1), "fp32")],
)
def test_auto_on_a_gpu_follows_its_compute_capability(monkeypatch, capability, expected):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert gpu_precision(torch.device("cuda:0")) == expected


def test_auto_on_a_cpu_is_fp32_and_an_explicit_setting_wins():
    model = tiny_model()
    assert place(model, config(precision="auto"))[1] == Arithmetic("fp32", False, "cpu")
    chosen = place(model, config(precision="bf16", channels_last=False))[1]
    assert chosen == Arithmetic("bf16", False, "cpu")


def test_bad_arithmetic_settings_are_one_line():
    for override, message in [
        ({"precision": "fp8"}, "unknown precision 'fp8'"),
        ({"channels_last": "yes"}, "channels_last must be True, False or None"),
        ({"checkpoint_every": -1}, "checkpoint_every must be a number of seconds"),
    ]:
        with pytest.raises(ConfigError, match=message):
            make_config(profile="quick", **override)


def test_a_gpu_torch_cannot_use_is_reported_once_in_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(training, "NVIDIA_DRIVER", tmp_path)  # there: a driver is loaded
    monkeypatch.setattr(training, "_reported", set())
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert default_profile() == "quick" and resolve_device("auto") == torch.device("cpu")
    assert not training.cuda_usable()  # said once
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "built for CUDA 13.0, which this NVIDIA driver" in err
    assert "download.pytorch.org/whl/cu" in err and "Using the CPU" in err
    monkeypatch.setattr(torch.version, "cuda", None)
    assert not training.cuda_usable() and "built without CUDA" in capsys.readouterr().err
    monkeypatch.setattr(torch.version, "cuda", "12.0")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert not training.cuda_usable()  # hidden on purpose
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.setattr(training, "NVIDIA_DRIVER", tmp_path / "absent")
    monkeypatch.setattr(training.shutil, "which", lambda name: None)
    assert not training.cuda_usable()  # no NVIDIA GPU: nothing to say
    assert capsys.readouterr().err == ""
