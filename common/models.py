"""The three torchvision models with a 10-class head, from scratch or from ImageNet weights."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import torch
import torchvision.models as tvm
from torch import nn

from .errors import ConfigError, WeightsError

# Builder and ImageNet weights per model: V2 where torchvision has them (ResNet-18 has only V1).
MODELS: dict[str, tuple[Callable[..., nn.Module], tvm.WeightsEnum]] = {
    "resnet18": (tvm.resnet18, tvm.ResNet18_Weights.IMAGENET1K_V1),
    "resnet50": (tvm.resnet50, tvm.ResNet50_Weights.IMAGENET1K_V2),
    "resnext50_32x4d": (tvm.resnext50_32x4d, tvm.ResNeXt50_32X4D_Weights.IMAGENET1K_V2),
}
STEMS = ("cifar", "imagenet")
MIN_IMAGE_SIZE = 32  # five stride-2 stages: smaller inputs vanish before the pooling layer


def check_model(name: str) -> None:
    """Raise a one-line error for a model name we do not build."""
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}: choose one of {', '.join(MODELS)}")


def weights_file(name: str) -> str:
    """torchvision's file name for the model's ImageNet weights, e.g. 'resnet50-11ad3fa6.pth'."""
    check_model(name)
    return Path(urlparse(MODELS[name][1].url).path).name


def hub_dir() -> Path:
    """torchvision's own weight cache: $TORCH_HOME/hub/checkpoints (default ~/.cache/torch)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def _folders(weights_dir: str | Path | None) -> list[Path]:
    """Where the weights are looked for, in order: `weights_dir`, then torchvision's cache."""
    return ([Path(weights_dir).expanduser()] if weights_dir else []) + [hub_dir()]


def find_weights(name: str, weights_dir: str | Path | None = None) -> Path | None:
    """The local file holding the model's ImageNet weights, looked for in `weights_dir` and then
    in torchvision's cache; None if neither has it."""
    file = weights_file(name)
    for folder in _folders(weights_dir):
        if (folder / file).is_file():
            return folder / file
    return None


def _download(name: str) -> Path:
    """Download the weights into torchvision's cache, checked against the SHA-256 prefix in
    their file name as torchvision's `check_hash` does; a wrong file is not kept."""
    target = hub_dir() / weights_file(name)
    prefix = torch.hub.HASH_REGEX.search(target.name).group(1)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(
            MODELS[name][1].url, str(target), hash_prefix=prefix, progress=False
        )
    except RuntimeError as e:
        if "invalid hash" not in str(e):
            raise
        raise WeightsError(
            f"the download of {MODELS[name][1].url} does not match torchvision's hash (SHA-256 "
            f"starting {prefix}) and was not kept: try again, or copy the file from a machine "
            "where it downloads whole"
        ) from None
    return target


def ensure_weights(name: str, weights_dir: str | Path | None = None, download: bool = True) -> Path:
    """Find the ImageNet weights locally or download them into torchvision's cache, as
    torchvision's `weights=` API does; raise a one-line WeightsError when neither works."""
    found = find_weights(name, weights_dir)
    if found:
        return found
    reason = "not downloaded"
    if download:
        try:
            return _download(name)
        except WeightsError:
            raise
        except Exception as e:
            reason = f"download failed: {type(e).__name__}"
    folders = _folders(weights_dir)
    raise WeightsError(
        f"ImageNet weights for {name} ({weights_file(name)}) are unavailable: not in "
        f"{' or '.join(str(f) for f in folders)}, and {reason}: download {MODELS[name][1].url} "
        f"on a machine with internet and put it in {folders[0]} under that name"
    )


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from a .pth file, with a one-line error if it is not one."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise WeightsError(f"weights file {path} does not exist: check the path") from None
    except Exception as e:
        raise WeightsError(
            f"cannot read weights file {path} ({type(e).__name__}): "
            "pass a state dict saved with torch.save(model.state_dict(), path)"
        ) from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise WeightsError(
            f"{path} holds no state dict: save one with torch.save(model.state_dict())"
        )
    return state


def _use_cifar_stem(model: nn.Module) -> None:
    """3x3 stride-1 first convolution and no max-pool: keeps 32x32 resolution into layer1."""
    model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    model.maxpool = nn.Identity()


def build_model(
    name: str,
    pretrained: bool = False,
    stem: str = "cifar",
    weights_path: str | Path | None = None,
    num_classes: int = 10,
    seed: int | None = None,
) -> nn.Module:
    """A torchvision ResNet/ResNeXt with a `num_classes` head.

    From scratch, `stem` picks the CIFAR stem (default) or torchvision's ImageNet stem.
    Pretrained, the ImageNet stem is kept and the ImageNet weights come from `weights_path`, or
    from torchvision's cache or a download (see `ensure_weights`); the classifier head is
    replaced. Never falls back to other weights. `seed` seeds the random initialisation.
    """
    check_model(name)
    if seed is not None:
        torch.manual_seed(seed)
    if stem not in STEMS:
        raise ConfigError(f"unknown stem {stem!r}: choose one of {', '.join(STEMS)}")
    builder = MODELS[name][0]
    if not pretrained:
        # zero-init of each block's last BN: every residual block starts as the identity,
        # which keeps early training stable at high learning rates (Goyal et al., 2017)
        model = builder(weights=None, num_classes=num_classes, zero_init_residual=True)
        if stem == "cifar":
            _use_cifar_stem(model)
        return model
    path = Path(weights_path) if weights_path else ensure_weights(name)
    model = builder(weights=None)
    state = load_state_dict(path)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        detail = str(e).split("\n\t")[1] if "\n\t" in str(e) else str(e).splitlines()[0]
        raise WeightsError(
            f"weights file {path} does not fit {name} ({detail.strip()[:200]}): "
            f"pass torchvision's ImageNet weights for {name} ({weights_file(name)})"
        ) from None
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model
