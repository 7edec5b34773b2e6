"""torchvision's ResNets and ResNeXt with a 10-class head, from scratch or from ImageNet weights
(torchvision's, found or downloaded, or one's own file), and their size: parameters and FLOPs."""

from __future__ import annotations

import contextlib
import functools
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
import torchvision.models as tvm
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .errors import ConfigError, WeightsError

MODELS: dict[str, Callable[..., nn.Module]] = {
    name: tvm.get_model_builder(name)
    for name in ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d")
}
# torchvision's IMAGENET1K_<version> weights; V1 is the default: ResNet-18 and -34 have no other
VERSIONS = ("V1", "V2")
CUSTOM = "custom: "  # the label of one's own file: "custom: <name> (sha256 <8 hex digits>)"
STEMS = ("cifar", "imagenet")
MIN_IMAGE_SIZE = 32  # five stride-2 stages: smaller inputs vanish before the pooling layer
Where = str | Path | None  # a folder or file, if any


def check_model(name: str) -> None:
    """Raise a one-line error for a model name we do not build."""
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}: choose one of {', '.join(MODELS)}")


def weights_version(name: str, asked: str = "V1") -> str:
    """`asked` (a checked model, one of VERSIONS) where the model has it, else V1."""
    return asked if f"IMAGENET1K_{asked}" in tvm.get_model_weights(name).__members__ else "V1"


def _url(name: str, version: str) -> str:
    return tvm.get_model_weights(name)[f"IMAGENET1K_{weights_version(name, version)}"].url


def weights_file(name: str, version: str = "V1") -> str:
    """torchvision's file name for the model's ImageNet weights, e.g. 'resnet50-0676ba61.pth'."""
    return _url(name, version).rsplit("/", 1)[1]


def hub_dir() -> Path:
    """torchvision's own weight cache: $TORCH_HOME/hub/checkpoints (default ~/.cache/torch)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def _folders(weights_dir: Where) -> list[Path]:
    """Where the weights are looked for, in order: `weights_dir`, then torchvision's cache."""
    return ([Path(weights_dir).expanduser()] if weights_dir else []) + [hub_dir()]


def locate_weights(
    name: str, weights_dir: Where, download: bool, version: str
) -> tuple[Path | None, str]:
    """(The model's ImageNet weights file, found or downloaded hash-checked, "") or (None, why)."""
    file = weights_file(name, version)
    found = next((f / file for f in _folders(weights_dir) if (f / file).is_file()), None)
    if found or not download:
        return found, "" if found else "it was not downloaded"
    made = [p for p in (hub_dir(), *hub_dir().parents) if not p.exists()]  # deepest first
    try:  # renamed into the cache only when whole and hash-checked
        hub_dir().mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=hub_dir()) as tmp:
            part, prefix = Path(tmp) / file, torch.hub.HASH_REGEX.search(file).group(1)
            torch.hub.download_url_to_file(_url(name, version), str(part), prefix, progress=False)
            return part.replace(hub_dir() / file), ""
    except Exception as e:  # e.g. torch's "invalid hash value", a URLError naming the lookup
        for folder in made:  # no folder left behind that this call made
            with contextlib.suppress(OSError):
                folder.rmdir()
        text = " ".join(str(getattr(e, "reason", None) or e).split()) or "no detail"
        return None, f"the download failed ({type(e).__name__}: {text})"


def build_model(
    name: str,
    pretrained: bool = False,
    stem: str = "cifar",
    weights_path: Where = None,
    seed: int | None = None,
    weights: str | None = "V1",
) -> nn.Module:
    """A 10-class model: from scratch with `stem`, or pretrained (ImageNet stem) from
    `weights_path` or torchvision's `weights` version, never other weights; `seed` seeds init."""
    check_model(name)
    if seed is not None:
        torch.manual_seed(seed)
    if not pretrained:
        # each residual block starts as the identity: stable at high lr (Goyal et al., 2017)
        model = MODELS[name](weights=None, num_classes=10, zero_init_residual=True)
        if stem == "cifar":  # 3x3 stride 1, no max-pool: 32 px reach layer1 whole
            model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
            nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
            model.maxpool = nn.Identity()
        return model
    path, why = (weights_path, "") if weights_path else locate_weights(name, None, True, weights)
    if path is None:
        raise WeightsError(missing_weights({name: why}, weights, None))
    model = MODELS[name](weights=None)
    try:  # a file of torch.save(model.state_dict()), or of a dict holding one as "state_dict"
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = dict(state.get("state_dict", state))
    except Exception as e:
        raise WeightsError(
            f"cannot read weights file {path} ({type(e).__name__}): "
            "pass a state dict saved with torch.save(model.state_dict(), path)"
        ) from None
    head = {k: v for k, v in model.state_dict().items() if k.startswith("fc.")}
    try:  # every key at its size, float16 too; only the head, replaced below, may be absent
        model.load_state_dict(head | state)
    except RuntimeError as e:
        detail = str(e).split("\n\t")[1] if "\n\t" in str(e) else str(e).splitlines()[0]
        raise WeightsError(
            f"weights file {path} does not fit {name} ({detail.strip()[:200]}): "
            f"pass ImageNet weights saved from torchvision's {name}, e.g. {weights_file(name)}"
        ) from None
    model.fc = nn.Linear(model.fc.in_features, 10)
    return model


def grid_weights(
    models: Iterable[str],
    custom: dict[str, str],
    version: str,
    weights_dir: Where,
    download: bool,
    check: bool,
) -> tuple[dict[str, str], dict[str, str]]:
    """Each model's weights file (`custom`'s or torchvision's), and why the others have none."""
    files, not_possible = {}, {}
    for model in sorted(set(models)):
        found, why = custom.get(model), ""
        if found is None:
            found, why = locate_weights(model, weights_dir, download, version)
        if found is None:
            not_possible[model] = why
            continue
        files[model] = str(found)
        if check:  # a wrong file stops the grid before any run starts
            build_model(model, pretrained=True, weights_path=found)
    return files, not_possible


def missing_weights(not_possible: dict[str, str], version: str, weights_dir: Where) -> str:
    """One line for all models whose ImageNet weights are missing: where, why, and the remedy."""
    folders = " or ".join(str(f) for f in _folders(weights_dir))
    reasons = "; ".join(sorted(set(not_possible.values())))
    return (
        f"the ImageNet weights of {', '.join(sorted(not_possible))} are not in {folders}, and "
        f"{reasons}. {weights_remedy(not_possible, version)}"
    )


def weights_remedy(models: Iterable[str], version: str) -> str:
    """The remedy for missing ImageNet weights, without absolute paths (the README quotes it)."""
    files = ", ".join(sorted({weights_file(m, version) for m in models}))
    cache, home = hub_dir(), Path.home()
    cache = Path("~") / cache.relative_to(home) if cache.is_relative_to(home) else cache
    return (
        f"Remedy: download torchvision's {files} from https://download.pytorch.org/models/ on a "
        f"machine with internet, and put them in torchvision's cache ({cache}) or in a folder "
        "passed with --weights-dir (docs/offline.md)."
    )


@functools.cache
def parameter_count(name: str, stem: str = "cifar") -> int:
    """The parameters of `name` as trained here, with its 10-class head and `stem`."""
    with torch.device("meta"):  # shapes only: no memory, no time
        return sum(p.numel() for p in build_model(name, stem=stem).parameters())


@functools.cache
def flops_per_image(name: str, stem: str = "cifar", image_size: int = 32) -> int:
    """The forward FLOPs of one image through `name`, counted on the meta device."""
    with torch.device("meta"):
        model = build_model(name, stem=stem).eval()  # batch norm refuses one 1x1 map training
        image = torch.empty(1, 3, image_size, image_size)
    with FlopCounterMode(display=False) as counter:
        model(image)
    return int(counter.get_total_flops())
