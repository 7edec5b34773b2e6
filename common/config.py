"""Run configuration: the recipe table and the validated parameters of one run."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from .data import fraction_label, parse_fraction
from .errors import ConfigError
from .models import MIN_IMAGE_SIZE, STEMS, check_model
from .precision import check_precision, cuda_usable

REPO = Path(__file__).resolve().parent.parent
PROFILES = ("full", "quick")
OPTIMIZERS = ("sgd", "adamw")
SETTINGS = ("scratch", "pretrained")
LIFT = "none"  # an override of "none" sets a field to None, e.g. eval_images: no cap

# Recipe defaults, one entry per (profile, setting); any of them can be overridden per run.
# `epochs` is the budget at 100% of the data; a fraction f trains round(epochs / sqrt(f)) epochs,
# so 1/16 of the data gets 4x the epochs (1/4 of the steps) and still converges.
# full: for a GPU. Not yet measured on one (see README): the values follow published recipes,
#   kuangliu/pytorch-cifar (SGD 0.9, wd 5e-4, cosine; ResNet-18 93-95%) and the fine-tuning
#   practice of upsampling CIFAR for ImageNet-pretrained ResNets (~97% at 224 px).
# quick: for a 2-core CPU, the whole 13-run grid in about ten minutes. ResNet-18 at batch 64
#   trains at 29 images/s there with the CIFAR stem against 165 with the ImageNet stem
#   (benchmarks/results/pipeline-cpu*.md), so quick uses the ImageNet stem at 32 px, caps the
#   steps per epoch and evaluates fixed subsets of validation and test.
#   Measured on the CIFAR-10 copy in ../shared/data, 2-core AMD EPYC CPU, torch 2.14.1.
# How every run computes and keeps its state, whatever the recipe (each can be overridden per run).
# Evidence: benchmarks/results/{precision,grid-time}-cpu-amd-epyc.md, 2-core AMD EPYC, one run.
SHARED: dict[str, Any] = dict(
    # bf16 | fp16 | fp32 | auto. auto: bf16 on GPUs that compute it natively (compute capability
    # 8+), fp16 with a gradient scaler on 7.x, fp32 below; on a CPU, whichever of fp32 and
    # bf16 + channels-last trains the run's model faster there, measured once and cached
    # (common/precision.py). CPUs disagree: on the AMD EPYC here (bf16 emulated) fp32 trains
    # 5-15x faster; on an Intel Xeon with AMX-BF16, bf16 was reported 2.4x faster (CIFAR stem).
    precision="auto",
    channels_last=None,  # None: on with bf16/fp16, off with fp32
    # Seconds between resumable checkpoints (and one at the end): a kill loses at most this much
    # training. A ResNet-50 checkpoint (model, momentum, best weights) is 283 MB; written every
    # epoch, the full 1/16 cell wrote 45 GB. One write took 0.7-1.0 s here: every 5 minutes is
    # under 0.4% of a run.
    checkpoint_every=300.0,
    # Validation every k epochs and after the last, k the smallest that keeps both bounds: at most
    # `max_evals` passes per run, and at most `eval_share` validation images per training image.
    # The best-validation epoch is chosen among these passes. Evaluating all 5,000 validation
    # images after every epoch cost the 1/16 cells 1.95 evaluation images per training image;
    # max_evals alone left the fine-tuning ones (40 epochs) at that, a predicted 33-39% of their
    # time here, evaluation running 3-5x faster than training per image. With both bounds: at
    # most 0.49, and at most 13% of any full-profile run's predicted time.
    max_evals=50,
    eval_share=0.5,
)
RECIPES: dict[tuple[str, str], dict[str, Any]] = {
    ("full", "scratch"): dict(
        stem="cifar",  # 3x3 stride-1 first conv, no max-pool
        image_size=32,  # native resolution
        epochs=40,  # at 100%; 1/16 gets 160
        batch_size=512,
        lr=0.8,  # peak lr for batch 512 (0.1 per 64 images, linear scaling)
        optimizer="sgd",  # with Nesterov momentum
        momentum=0.9,
        weight_decay=5e-4,
        label_smoothing=0.1,
        warmup_epochs=2,  # linear warm-up, then cosine decay to zero
        steps_per_epoch=None,  # a full pass
        eval_images=None,  # the whole validation and test sets
    ),
    ("full", "pretrained"): dict(
        stem="imagenet",  # the stem the ImageNet weights were trained with
        image_size=160,  # CIFAR upsampled on the GPU; 224 costs ~2x per image
        epochs=10,
        batch_size=256,
        lr=0.1,  # fine-tuning: a tenth of the from-scratch rate per image
        optimizer="sgd",
        momentum=0.9,
        weight_decay=5e-5,
        label_smoothing=0.1,
        warmup_epochs=1,
        steps_per_epoch=None,
        eval_images=None,
    ),
    ("quick", "scratch"): dict(
        stem="imagenet",  # 5.6x faster than the CIFAR stem on a CPU (measured, see above)
        image_size=32,
        epochs=4,
        batch_size=64,
        # In 64 steps AdamW learns faster than SGD. ResNet-18 on 1/16, seed 0, test acc on all
        # 10,000 images: AdamW 8e-3 32.1%, 4e-3 30.3%, 2e-3 27.8% (with label smoothing 0.1:
        # 25.2%); SGD+Nesterov 0.2 24.9%, 0.05 with smoothing 0.1 19.1%. ResNet-50: AdamW 4e-3
        # 27.9%, 2e-3 26.9%; SGD 0.1 and 0.2 diverged in the first epochs.
        lr=4e-3,
        optimizer="adamw",
        momentum=0.9,  # AdamW's beta1
        weight_decay=0.05,  # decoupled
        label_smoothing=0.0,
        warmup_epochs=1,
        steps_per_epoch=16,  # 1,024 images per epoch
        eval_images=2000,  # validation on 1,000, test on 2,000 fixed stratified images
    ),
    ("quick", "pretrained"): dict(
        stem="imagenet",
        image_size=32,  # no upsampling on a CPU: 64 px would cost 4x
        epochs=4,
        batch_size=64,
        lr=1e-3,  # a quarter of the from-scratch rate; unmeasured (no ImageNet weights here)
        optimizer="adamw",
        momentum=0.9,
        weight_decay=0.05,
        label_smoothing=0.0,
        warmup_epochs=1,
        steps_per_epoch=16,
        eval_images=2000,
    ),
}


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines one run; built by `make_config`."""

    model: str
    data_fraction: float
    pretrained: bool
    seed: int
    profile: str
    epochs: int
    batch_size: int
    lr: float
    optimizer: str
    momentum: float
    weight_decay: float
    label_smoothing: float
    warmup_epochs: float
    image_size: int
    stem: str
    steps_per_epoch: int | None
    eval_images: int | None
    val_size: int = 5000
    patience: int | None = None  # early stopping: epochs without a better val acc
    data_dir: str = str(REPO / "data")
    output_dir: str = ""
    device: str = "auto"
    weights_path: str | None = None
    precision: str = SHARED["precision"]
    channels_last: bool | None = SHARED["channels_last"]
    checkpoint_every: float = SHARED["checkpoint_every"]
    max_evals: int = SHARED["max_evals"]
    eval_share: float = SHARED["eval_share"]

    @property
    def setting(self) -> str:
        return "pretrained" if self.pretrained else "scratch"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def training_key(self) -> dict[str, Any]:
        """The fields that change the training itself (not where its files go)."""
        skip = {"data_dir", "output_dir", "device", "weights_path", "checkpoint_every"}
        return {k: v for k, v in asdict(self).items() if k not in skip}


def run_name(model: str, fraction: float, seed: int) -> str:
    """The folder name of a run: resnet18_data-1-16_seed0."""
    return f"{model}_data-{fraction_label(fraction)}_seed{seed}"


def default_profile() -> str:
    """'full' with a GPU torch can use, 'quick' without one."""
    return "full" if cuda_usable() else "quick"


def _positive(name: str, value: Any, kind: type = int) -> Any:
    try:
        ok = float(value) > 0 and (kind is not int or float(value) == int(value))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        what = "a positive whole number" if kind is int else "a positive number"
        raise ConfigError(f"{name} must be {what}, got {value!r}")
    return kind(value)


def _non_negative(name: str, value: Any) -> float:
    try:
        ok = float(value) >= 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ConfigError(f"{name} must be a number of seconds, 0 or more, got {value!r}")
    return float(value)


def _check_shared(values: dict[str, Any]) -> None:
    """Validate (in place) the overridden SHARED settings: arithmetic, checkpoints, cadence."""
    check_precision(values.get("precision", SHARED["precision"]))
    if values.get("channels_last") not in (None, True, False):
        raise ConfigError(
            f"channels_last must be True, False or None (follow the precision), "
            f"got {values['channels_last']!r}"
        )
    if "checkpoint_every" in values:
        values["checkpoint_every"] = _non_negative("checkpoint_every", values["checkpoint_every"])
    if values.get("max_evals") is not None:
        values["max_evals"] = _positive("max_evals", values["max_evals"])
    if "eval_share" in values:
        values["eval_share"] = _positive("eval_share", values["eval_share"], float)


def make_config(
    model: str = "resnet18",
    data_fraction: float | str = 1.0,
    pretrained: bool = False,
    seed: int = 0,
    profile: str | None = None,
    **overrides: Any,
) -> RunConfig:
    """Fill every parameter left as None from the recipe for (profile, setting), then validate.

    `profile` None picks 'full' on a GPU and 'quick' on a CPU; `output_dir` None is
    runs/<setting>/<run name> in the repository. An override of None keeps the recipe's value,
    one of LIFT sets None. Relative data_dir, output_dir and weights_path are relative to the
    repository's root, wherever the process runs.

    Raises ConfigError with one line for anything out of range.
    """
    check_model(model)
    profile = profile or default_profile()
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}: choose one of {', '.join(PROFILES)}")
    fraction = (
        parse_fraction(str(data_fraction))
        if isinstance(data_fraction, str)
        else parse_fraction(repr(float(data_fraction)))
    )
    setting = "pretrained" if pretrained else "scratch"
    known = {f.name for f in fields(RunConfig)}
    unknown = set(overrides) - known
    if unknown:
        raise ConfigError(f"unknown parameter(s) {', '.join(sorted(unknown))}: see RunConfig")
    values = dict(RECIPES[(profile, setting)])
    if values["steps_per_epoch"] is None:  # a capped epoch has the same steps at any fraction
        values["epochs"] = max(1, round(values["epochs"] / math.sqrt(fraction)))
    # None keeps the recipe's value (a notebook's unset parameter); LIFT sets None (no cap)
    values.update({k: None if v == LIFT else v for k, v in overrides.items() if v is not None})
    for name in ("data_dir", "output_dir", "weights_path"):  # one place for relative paths
        if values.get(name):
            values[name] = str(REPO / Path(values[name]).expanduser())
    for name in ("epochs", "batch_size", "image_size"):
        values[name] = _positive(name, values[name])
    for name in ("steps_per_epoch", "eval_images", "patience"):
        if values.get(name) is not None:
            values[name] = _positive(name, values[name])
    values["lr"] = _positive("lr", values["lr"], float)
    if values["image_size"] < MIN_IMAGE_SIZE:
        raise ConfigError(
            f"image_size {values['image_size']} is below the {MIN_IMAGE_SIZE} px "
            "these models accept: use 32 or more"
        )
    if values["optimizer"] not in OPTIMIZERS:
        raise ConfigError(
            f"unknown optimizer {values['optimizer']!r}: choose one of {', '.join(OPTIMIZERS)}"
        )
    if values["stem"] not in STEMS:
        raise ConfigError(f"unknown stem {values['stem']!r}: choose one of {', '.join(STEMS)}")
    if pretrained and values["stem"] != "imagenet":
        raise ConfigError("pretrained models keep the ImageNet stem: drop stem='cifar'")
    _check_shared(values)
    if "val_size" in values:
        values["val_size"] = _positive("val_size", values["val_size"])
    try:
        seed = int(seed)
    except (TypeError, ValueError):
        raise ConfigError(f"seed must be a whole number, got {seed!r}") from None
    if not values.get("output_dir"):
        values["output_dir"] = str(REPO / "runs" / setting / run_name(model, fraction, seed))
    return RunConfig(
        model=model,
        data_fraction=fraction,
        pretrained=bool(pretrained),
        seed=seed,
        profile=profile,
        **values,
    )
