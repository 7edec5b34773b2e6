"""One code path on every device: autocast, channels-last and the gradient scaler run on the CPU
the way they run on a GPU; `auto` resolves per device, on a CPU by measurement."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

import common.training as training
from common.config import default_profile, make_config
from common.data import CIFAR_MEAN, CIFAR_STD, Batches, load_cifar10
from common.errors import ConfigError
from common.models import build_model
from common.training import Arithmetic, gpu_precision, place, resolve_device, train
from tests.conftest import TINY


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Each test probes into its own cache, never the user's."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "big-vs-small" / "precision.json"


def config(**kw):
    return make_config(
        "resnet18", profile="quick", **(TINY | dict(device="cpu", stem="imagenet") | kw)
    )


def test_bf16_channels_last_step_has_the_dtypes_and_layouts_of_the_gpu_path(fake_data):
    data = load_cifar10(fake_data, download=False)
    arithmetic = Arithmetic("bf16", True, "cpu")
    model = build_model("resnet18", stem="imagenet", seed=0)
    model.to(memory_format=arithmetic.memory_format)
    gen = torch.Generator().manual_seed(0)
    batches = Batches(
        data.train_x[:32], data.train_y[:32], 16, True, CIFAR_MEAN, CIFAR_STD,
        image_size=40, gen=gen, memory_format=arithmetic.memory_format,
    )  # fmt: skip
    xb, yb = next(iter(batches))  # 40 px: the upsampling branch too
    assert xb.dtype == torch.float32 and xb.shape == (16, 3, 40, 40)
    assert xb.is_contiguous(memory_format=torch.channels_last)
    assert model.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    with arithmetic.autocast():
        out = model(xb)
    assert out.dtype == torch.bfloat16 and F.cross_entropy(out.float(), yb).dtype == torch.float32
    assert not arithmetic.scaler().is_enabled()
    assert Arithmetic("fp16", True, "cpu").scaler().is_enabled()
    fp32 = Arithmetic("fp32", False, "cpu")
    with fp32.autocast():
        assert model(xb).dtype == torch.float32
    assert fp32.memory_format == torch.contiguous_format


@pytest.mark.parametrize(
    ("setting", "described"),
    [("bf16", "bf16 autocast + channels-last"), ("fp16", "fp16 autocast + channels-last")],
)
def test_mixed_precision_trains_through_the_same_loop(fake_data, setting, described):
    cfg = config(precision=setting)  # the ImageNet stem: 32 px maps, a fast step on a CPU
    data = load_cifar10(fake_data, download=False)
    result = train(build_model("resnet18", stem=cfg.stem, seed=0), data, cfg, progress=False)
    assert result["precision"] == described
    assert all(torch.isfinite(torch.tensor(h["train_loss"])) for h in result["history"])


@pytest.mark.parametrize(
    ("capability", "expected"),
    [((9, 0), "bf16"), ((8, 0), "bf16"), ((7, 5), "fp16"), ((6, 1), "fp32")],
)
def test_auto_on_a_gpu_follows_its_compute_capability(monkeypatch, capability, expected):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert gpu_precision(torch.device("cuda:0")) == expected


def test_auto_on_a_cpu_picks_the_faster_and_remembers_it(monkeypatch):
    measured = []

    def fake_throughput(model, arithmetic, batch_size, image_size, give_up_after):
        measured.append((arithmetic.precision, batch_size, image_size))
        return {"fp32": 10.0, "bf16": 25.0}[arithmetic.precision]

    monkeypatch.setattr(training, "train_throughput", fake_throughput)
    model = build_model("resnet18", stem="imagenet", seed=0)
    assert place(model, config(precision="auto"))[1] == Arithmetic("bf16", True, "cpu")
    assert len(measured) == 2
    assert place(model, config(precision="auto"))[1] == Arithmetic("bf16", True, "cpu")
    assert len(measured) == 2  # cached: no second probe
    place(model, config(precision="auto", image_size=64))
    assert len(measured) == 4  # another configuration is measured on its own
    chosen = place(model, config(precision="auto", channels_last=False))[1]
    assert chosen == Arithmetic("bf16", False, "cpu")


def test_auto_on_a_cpu_measures_for_real_and_gives_up_on_the_far_slower(private_cache):
    model = build_model("resnet18", stem="imagenet", seed=0)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    chosen = place(model, config(precision="auto", batch_size=4))[1]
    (entry,) = json.loads(private_cache.read_text()).values()
    assert entry["fp32_images_per_s"] > 0 and entry["bf16_images_per_s"] >= 0  # 0: gave up
    faster = max(("fp32", "bf16"), key=lambda p: entry[f"{p}_images_per_s"])
    assert entry["precision"] == chosen.precision == faster
    # the probe trains a copy: the run's weights and random stream are untouched
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    assert torch.equal(rng, torch.get_rng_state())
    fp32 = Arithmetic("fp32", False, "cpu")
    assert training.train_throughput(model, fp32, 4, 32, give_up_after=0.0) == 0.0


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"precision": "fp8"}, "unknown precision 'fp8'"),
        ({"channels_last": "yes"}, "channels_last must be True, False or None"),
        ({"checkpoint_every": -1}, "checkpoint_every must be a number of seconds"),
    ],
)
def test_bad_arithmetic_settings_are_one_line(override, message):
    with pytest.raises(ConfigError, match=message):
        make_config(profile="quick", **override)


def test_a_gpu_torch_cannot_use_is_reported_once_in_one_line(monkeypatch, tmp_path, capsys):
    driver = tmp_path / "version"
    driver.write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.129.03  Thu Oct 19\n")
    monkeypatch.setattr(training, "NVIDIA_DRIVER", driver)
    monkeypatch.setattr(training, "_reported", set())
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert default_profile() == "quick" and resolve_device("auto") == torch.device("cpu")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "CUDA 13.0" in err and "driver 535.129.03" in err
    assert "download.pytorch.org/whl/cu" in err and "Using the CPU" in err
    monkeypatch.setattr(torch.version, "cuda", None)
    assert "built without CUDA" in training.unusable_gpu()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert training.unusable_gpu() is None  # hidden on purpose
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.setattr(training, "NVIDIA_DRIVER", tmp_path / "absent")
    monkeypatch.setattr(training.shutil, "which", lambda name: None)
    assert training.unusable_gpu() is None  # no NVIDIA GPU: nothing to say
