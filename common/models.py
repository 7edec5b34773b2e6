"""torchvision's ResNets and ResNeXt with a 10-class head, from scratch or from ImageNet weights
(torchvision's, found or downloaded, or one's own file), and their size: parameters and FLOPs."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterable
from pathlib import Path
from urllib.parse import urlparse

import torch
import torchvision.models as tvm
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .errors import ConfigError, WeightsError
from .files import file_hash

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
    """`asked` where the model has that version of ImageNet weights, else V1."""
    check_model(name)
    if asked not in VERSIONS:
        raise ConfigError(f"unknown weights version {asked!r}: choose one of {', '.join(VERSIONS)}")
    return asked if f"IMAGENET1K_{asked}" in tvm.get_model_weights(name).__members__ else "V1"


def custom_label(path: str | Path) -> str:
    """One's own weights file by name and content hash, so two files of one name never pool."""
    try:
        digest = f"sha256 {file_hash(path, 'sha256')[:8]}"  # enough to tell files apart
    except OSError:
        digest = "file not found"
    return f"{CUSTOM}{Path(path).name} ({digest})"


def _url(name: str, version: str) -> str:
    return tvm.get_model_weights(name)[f"IMAGENET1K_{weights_version(name, version)}"].url


def weights_file(name: str, version: str = "V1") -> str:
    """torchvision's file name for the model's ImageNet weights, e.g. 'resnet50-0676ba61.pth'."""
    return Path(urlparse(_url(name, version)).path).name


def hub_dir() -> Path:
    """torchvision's own weight cache: $TORCH_HOME/hub/checkpoints (default ~/.cache/torch)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def _folders(weights_dir: Where) -> list[Path]:
    """Where the weights are looked for, in order: `weights_dir`, then torchvision's cache."""
    return ([Path(weights_dir).expanduser()] if weights_dir else []) + [hub_dir()]


def find_weights(name: str, weights_dir: Where = None, version: str = "V1") -> Path | None:
    """The local file of the model's ImageNet weights of `version`, or None."""
    file = weights_file(name, version)
    return next((f / file for f in _folders(weights_dir) if (f / file).is_file()), None)


def locate_weights(
    name: str, weights_dir: Where, download: bool, version: str
) -> tuple[Path | None, str]:
    """(The ImageNet weights file, found or downloaded and hash-checked, "") or (None, why)."""
    found = find_weights(name, weights_dir, version)
    if found or not download:
        return found, "" if found else "it was not downloaded"
    target = hub_dir() / weights_file(name, version)
    prefix = torch.hub.HASH_REGEX.search(target.name).group(1)
    made = [p for p in (target.parent, *target.parent.parents) if not p.exists()]
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(_url(name, version), str(target), prefix, progress=False)
        return target, ""
    except Exception as e:
        if isinstance(e, RuntimeError) and "invalid hash" in str(e):
            raise WeightsError(
                f"the download of {_url(name, version)} does not match torchvision's hash "
                f"(SHA-256 starting {prefix}) and was not kept: try again, or copy the file from "
                "a machine where it downloads whole"
            ) from None
        # a URLError's reason names e.g. the name resolution that failed
        text = " ".join(str(getattr(e, "reason", None) or e).split()) or "no detail"
        return None, f"the download failed ({type(e).__name__}: {text})"
    finally:
        for folder in [] if target.exists() else made:  # deepest first; each only if empty
            with contextlib.suppress(OSError):
                folder.rmdir()


def ensure_weights(
    name: str, weights_dir: Where = None, download: bool = True, version: str = "V1"
) -> Path:
    """The ImageNet weights file, found or downloaded; else one line: where, why, the remedy."""
    found, reason = locate_weights(name, weights_dir, download, version)
    if found:
        return found
    where, file = _folders(weights_dir), weights_file(name, version)
    raise WeightsError(
        f"ImageNet {weights_version(name, version)} weights for {name} ({file}) are unavailable: "
        f"not in {' or '.join(map(str, where))}, and {reason}; download {_url(name, version)} "
        f"on a machine with internet and put it in {where[0]} under that name"
    )


def build_model(
    name: str,
    pretrained: bool = False,
    stem: str = "cifar",
    weights_path: Where = None,
    seed: int | None = None,
    weights: str | None = "V1",
) -> nn.Module:
    """A 10-class model: from scratch with `stem`, or pretrained (ImageNet stem) from
    `weights_path` or torchvision's `weights` version, never other weights; `seed` seeds init.
    Pretrained weights may be float16 and lack the ImageNet head, which is replaced anyway."""
    check_model(name)
    if seed is not None:
        torch.manual_seed(seed)
    if stem not in STEMS:
        raise ConfigError(f"unknown stem {stem!r}: choose one of {', '.join(STEMS)}")
    if not pretrained:
        # each residual block starts as the identity: stable at high lr (Goyal et al., 2017)
        model = MODELS[name](weights=None, num_classes=10, zero_init_residual=True)
        if stem == "cifar":  # 3x3 stride 1, no max-pool: 32 px reach layer1 whole
            model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
            nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
            model.maxpool = nn.Identity()
        return model
    weights = weights or "V1"
    if not weights_path and weights.startswith(CUSTOM):
        raise WeightsError(f"weights {weights!r} need their file: pass weights_path")
    path = Path(weights_path) if weights_path else ensure_weights(name, version=weights)
    model = MODELS[name](weights=None)
    try:  # a file of torch.save(model.state_dict()), or of a dict holding one as "state_dict"
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = dict(state.get("state_dict", state))
    except Exception as e:
        raise WeightsError(
            f"cannot read weights file {path} ({type(e).__name__}): "
            "pass a state dict saved with torch.save(model.state_dict(), path)"
        ) from None
    try:
        result = model.load_state_dict(state, strict=False)  # still refuses a size mismatch
        missing = [k for k in result.missing_keys if not k.startswith("fc.")]
        detail = "; ".join(
            f"{what} key(s): {', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''}"
            for what, keys in (("missing", missing), ("unexpected", result.unexpected_keys))
            if keys
        )
    except RuntimeError as e:
        detail = str(e).split("\n\t")[1] if "\n\t" in str(e) else str(e).splitlines()[0]
    if detail:
        raise WeightsError(
            f"weights file {path} does not fit {name} ({detail.strip()[:200]}): "
            f"pass ImageNet weights saved from torchvision's {name}, e.g. {weights_file(name)}"
        )
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
    """Each model's weights file (from `custom`, or torchvision's) and why others have none;
    with `check`, each file is loaded into its model once."""
    files, not_possible = {}, {}
    for model in sorted(set(models)):
        found, why = custom.get(model), ""
        try:
            if found is None:
                found, why = locate_weights(model, weights_dir, download, version)
        except WeightsError as e:  # a download that does not match its hash
            why = str(e)
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
