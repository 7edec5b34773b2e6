"""The torchvision models (ResNet-18 to ResNet-152, ResNeXt50_32x4d) with a 10-class head, from
scratch or from ImageNet weights: torchvision's V1 or V2 (found, or downloaded and checked) or a
state dict of one's own (with or without the ImageNet head, float32 or float16), labelled by file
name and content hash; which file each model of a grid uses; and the models' size as trained:
parameters and FLOPs per image."""

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
# torchvision's ImageNet weights per model and version: the IMAGENET1K_<version> members of its
# enums (resnet.py). The default is V1 for every model: it is the only version ResNet-18 has, so
# a grid that compares model sizes compares like with like. V2 is a stronger ImageNet recipe, not
# a bigger model (ImageNet top-1 from torchvision's model docs: ResNet-50 76.1% V1 / 80.9% V2,
# ResNeXt50_32x4d 77.6% / 81.2%, ResNet-18 69.8% V1 only). ResNet-34 has V1 only; ResNet-101 and
# ResNet-152 have both.
VERSIONS = ("V1", "V2")
# prefix of the label of one's own weights file: "custom: <file name> (sha256 <8 hex digits>)"
CUSTOM = "custom: "
HASH_CHARS = 8  # of the file's SHA-256 in its label: enough to tell one's own files apart
STEMS = ("cifar", "imagenet")
MIN_IMAGE_SIZE = 32  # five stride-2 stages: smaller inputs vanish before the pooling layer


def check_model(name: str) -> None:
    """Raise a one-line error for a model name we do not build."""
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}: choose one of {', '.join(MODELS)}")


def weights_version(name: str, asked: str = "V1") -> str:
    """The torchvision version a run of `name` uses when `asked` is wanted: `asked` where the
    model has it, else V1 (ResNet-18 and ResNet-34 have no V2)."""
    check_model(name)
    if asked not in VERSIONS:
        raise ConfigError(f"unknown weights version {asked!r}: choose one of {', '.join(VERSIONS)}")
    return asked if f"IMAGENET1K_{asked}" in tvm.get_model_weights(name).__members__ else "V1"


def custom_label(path: str | Path) -> str:
    """How one's own weights file is named in every output: 'custom: <file name> (sha256
    <first digits of its content's hash>)', so two different files of one name never pool.
    A file that does not exist is labelled so, and its run fails when it loads the weights. The
    hash is computed once per process: a configuration is built once per run and per preflight."""
    try:
        digest = f"sha256 {file_hash(path, 'sha256')[:HASH_CHARS]}"
    except OSError:
        digest = "file not found"
    return f"{CUSTOM}{Path(path).name} ({digest})"


def weights_file(name: str, version: str = "V1") -> str:
    """torchvision's file name for the model's ImageNet weights, e.g. 'resnet50-0676ba61.pth'."""
    return Path(urlparse(_url(name, version)).path).name


def _url(name: str, version: str) -> str:
    return tvm.get_model_weights(name)[f"IMAGENET1K_{weights_version(name, version)}"].url


def hub_dir() -> Path:
    """torchvision's own weight cache: $TORCH_HOME/hub/checkpoints (default ~/.cache/torch)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def _folders(weights_dir: str | Path | None) -> list[Path]:
    """Where the weights are looked for, in order: `weights_dir`, then torchvision's cache."""
    return ([Path(weights_dir).expanduser()] if weights_dir else []) + [hub_dir()]


def find_weights(
    name: str, weights_dir: str | Path | None = None, version: str = "V1"
) -> Path | None:
    """The local file holding the model's ImageNet weights of `version`, looked for in
    `weights_dir` and then in torchvision's cache; None if neither has it."""
    file = weights_file(name, version)
    for folder in _folders(weights_dir):
        if (folder / file).is_file():
            return folder / file
    return None


def _download(name: str, version: str) -> Path:
    """Download the weights into torchvision's cache, checked against the SHA-256 prefix in
    their file name as torchvision's `check_hash` does; a wrong file is not kept, nor are the
    folders made for it when the download fails."""
    target = hub_dir() / weights_file(name, version)
    prefix = torch.hub.HASH_REGEX.search(target.name).group(1)
    made = [p for p in (target.parent, *target.parent.parents) if not p.exists()]
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(
            _url(name, version), str(target), hash_prefix=prefix, progress=False
        )
    except BaseException as e:
        for folder in made:  # deepest first; each only if empty
            with contextlib.suppress(OSError):
                folder.rmdir()
        if isinstance(e, RuntimeError) and "invalid hash" in str(e):
            raise WeightsError(
                f"the download of {_url(name, version)} does not match torchvision's hash "
                f"(SHA-256 starting {prefix}) and was not kept: try again, or copy the file from "
                "a machine where it downloads whole"
            ) from None
        raise
    return target


def locate_weights(
    name: str, weights_dir: str | Path | None, download: bool, version: str
) -> tuple[Path | None, str]:
    """(the local file of the model's ImageNet weights of `version`, found in `weights_dir` or
    torchvision's cache, or downloaded there; or None and why there is none, e.g. "the
    download failed (URLError: ...)")."""
    found = find_weights(name, weights_dir, version)
    if found:
        return found, ""
    if not download:
        return None, "it was not downloaded"
    try:
        return _download(name, version), ""
    except WeightsError:
        raise
    except Exception as e:
        return None, f"the download failed ({_why(e)})"


def ensure_weights(
    name: str,
    weights_dir: str | Path | None = None,
    download: bool = True,
    version: str = "V1",
) -> Path:
    """Find the ImageNet weights of `version` locally or download them into torchvision's
    cache, as torchvision's `weights=` API does; raise a one-line WeightsError when neither
    works, naming the file, the folders searched and the remedy."""
    found, reason = locate_weights(name, weights_dir, download, version)
    if found:
        return found
    folders = _folders(weights_dir)
    raise WeightsError(
        f"ImageNet {weights_version(name, version)} weights for {name} "
        f"({weights_file(name, version)}) are unavailable: not in "
        f"{' or '.join(str(f) for f in folders)}, and {reason}; download "
        f"{_url(name, version)} on a machine with internet and put it in {folders[0]} under "
        "that name"
    )


def _why(error: Exception) -> str:
    """An exception's class and reason on one line: a URLError's `reason` (e.g. the name
    resolution that failed), else its message."""
    reason = getattr(error, "reason", None) or error
    text = " ".join(str(reason).split()) or "no detail"
    return f"{type(error).__name__}: {text}"


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
    seed: int | None = None,
    weights: str | None = "V1",
) -> nn.Module:
    """A torchvision ResNet/ResNeXt with a 10-class head.

    From scratch, `stem` picks the CIFAR stem (default) or torchvision's ImageNet stem.
    Pretrained, the ImageNet stem is kept and the weights come from `weights_path`, or else
    torchvision's file of version `weights` from its cache or a download (see `ensure_weights`);
    the classifier head is replaced. Never falls back to other weights. `seed` seeds the random
    initialisation.
    """
    check_model(name)
    if seed is not None:
        torch.manual_seed(seed)
    if stem not in STEMS:
        raise ConfigError(f"unknown stem {stem!r}: choose one of {', '.join(STEMS)}")
    builder = MODELS[name]
    if not pretrained:
        # zero-init of each block's last BN: every residual block starts as the identity,
        # which keeps early training stable at high learning rates (Goyal et al., 2017)
        model = builder(weights=None, num_classes=10, zero_init_residual=True)
        if stem == "cifar":
            _use_cifar_stem(model)
        return model
    weights = weights or "V1"
    if not weights_path and weights.startswith(CUSTOM):
        raise WeightsError(f"weights {weights!r} need their file: pass weights_path")
    path = Path(weights_path) if weights_path else ensure_weights(name, version=weights)
    model = builder(weights=None)
    _load_backbone(model, load_state_dict(path), name, path)
    model.fc = nn.Linear(model.fc.in_features, 10)
    return model


def _load_backbone(model: nn.Module, state: dict[str, torch.Tensor], name: str, path: Path) -> None:
    """Load `state` into `model`, every key but the ImageNet head (`fc.*`) required: the head
    is replaced anyway, so a state dict without it is whole. float16 tensors become float32
    (`load_state_dict` copies into the model's own tensors). One line when it does not fit."""
    try:
        result = model.load_state_dict(state, strict=False)  # still refuses a size mismatch
        missing = [k for k in result.missing_keys if not k.startswith("fc.")]
        problems = [
            f"{what} key(s): {', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''}"
            for what, keys in (("missing", missing), ("unexpected", result.unexpected_keys))
            if keys
        ]
        detail = "; ".join(problems)
    except RuntimeError as e:
        detail = str(e).split("\n\t")[1] if "\n\t" in str(e) else str(e).splitlines()[0]
    if detail:
        raise WeightsError(
            f"weights file {path} does not fit {name} ({detail.strip()[:200]}): "
            f"pass ImageNet weights saved from torchvision's {name}, e.g. {weights_file(name)}"
        )


def grid_weights(
    models: Iterable[str],
    custom: dict[str, str],
    version: str,
    weights_dir: str | Path | None,
    download: bool,
    check: bool,
) -> tuple[dict[str, str], dict[str, str]]:
    """For each model with pretrained runs: (its weights file: one's own from `custom`, or
    torchvision's of `version`, found or downloaded; or why there is none, as `locate_weights`
    says it). With `check`, each file is loaded into its model once, so a wrong file stops the
    grid before any run starts."""
    files, not_possible = {}, {}
    for model in sorted(set(models)):
        if model in custom:
            files[model] = custom[model]
        else:
            try:
                found, why = locate_weights(model, weights_dir, download, version)
            except WeightsError as e:  # a download that does not match its hash
                found, why = None, str(e)
            if found is None:
                not_possible[model] = why
                continue
            files[model] = str(found)
        if check:
            build_model(model, pretrained=True, weights_path=files[model])
    return files, not_possible


def missing_weights(
    not_possible: dict[str, str], version: str, weights_dir: str | Path | None
) -> str:
    """One line for every model whose ImageNet weights are missing: where they were looked
    for, why they are not there, and the remedy."""
    folders = " or ".join(str(f) for f in _folders(weights_dir))
    reasons = "; ".join(sorted(set(not_possible.values())))
    return (
        f"the ImageNet weights of {', '.join(sorted(not_possible))} are not in {folders}, and "
        f"{reasons}. {weights_remedy(not_possible, version)}"
    )


def weights_remedy(models: Iterable[str], version: str) -> str:
    """One remedy for every model whose ImageNet weights are missing (no absolute paths: the
    README quotes it)."""
    files = ", ".join(sorted({weights_file(m, version) for m in models}))
    cache = hub_dir()
    if cache.is_relative_to(Path.home()):
        cache = Path("~") / cache.relative_to(Path.home())
    return (
        f"Remedy: download torchvision's {files} from https://download.pytorch.org/models/ on a "
        f"machine with internet, and put them in torchvision's cache ({cache}) or in a folder "
        "passed with --weights-dir (docs/offline.md)."
    )


def _skeleton(name: str, stem: str) -> nn.Module:
    """The model as trained (10-class head, `stem`) on the meta device: shapes, no memory."""
    with torch.device("meta"):
        model = MODELS[name](weights=None, num_classes=10)
        if stem == "cifar":
            _use_cifar_stem(model)
    return model


@functools.cache
def parameter_count(name: str, stem: str = "cifar") -> int:
    """The parameters of `name` as trained here: 10-class head and the given stem (the CIFAR
    stem's 3x3 first convolution has fewer than the ImageNet stem's 7x7)."""
    check_model(name)
    return sum(p.numel() for p in _skeleton(name, stem).parameters())


@functools.cache
def flops_per_image(name: str, stem: str = "cifar", image_size: int = 32) -> int:
    """The forward FLOPs of one image through `name`, counted by torch's FlopCounterMode on
    the meta device (convolutions and matrix products; no memory or time is spent)."""
    check_model(name)
    model = _skeleton(name, stem)
    image = torch.empty(1, 3, image_size, image_size, device="meta")
    with FlopCounterMode(display=False) as counter:
        model(image)
    return int(counter.get_total_flops())
