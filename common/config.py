"""Run configuration: the recipe table and the validated parameters of one run."""

from __future__ import annotations

import ast
import copy
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from .data import SIDE, fraction_label, parse_fraction
from .errors import ConfigError, UserError
from .models import (
    CUSTOM,
    MIN_IMAGE_SIZE,
    STEMS,
    VERSIONS,
    check_model,
    custom_label,
    weights_file,
    weights_version,
)
from .training import PRECISIONS, cuda_usable

REPO = Path(__file__).resolve().parent.parent
PROFILES = ("full", "quick")
# The values each choice may take
CHOICES: dict[str, tuple[str, ...]] = dict(
    optimizer=("sgd", "adamw"),
    # after the warm-up: cosine or linear decay to 0; "triangle": up from `lr_start_factor` x
    # the peak, then linearly down to 0; "steps": constant, x0.1 after each of `lr_drops`
    schedule=("cosine", "linear", "triangle", "steps"),
    stem=STEMS,
    pad_mode=("zeros", "reflect"),  # how the 4-px translate fills the border
    tta=("none", "flip"),  # test-time augmentation of every evaluation
    head_init=("default", "zero"),  # the new classifier head: PyTorch's init or all zeros
    # How a run's budget follows its data size. "sqrt": `epochs` at 100% of the data, epochs /
    # sqrt(f) at a fraction f. "bit": BiT-HyperRule's steps (bit_hyperrule.py get_schedule: 500
    # steps under 20,000 training images, 10,000 from 20,000 to 500,000), as whole epochs.
    budget=("sqrt", "bit"),
    precision=PRECISIONS,  # SHARED's: checked where a run sets it
)
LR_DROP = 0.1  # the "steps" schedule's factor at each drop (BiT's bit_hyperrule.get_lr: /10)
SETTINGS = ("scratch", "pretrained")
VAL_SIZE = 5000  # validation images held out of CIFAR-10's 50,000 training images
TRAIN_SPLIT = 50_000
LIFT = "none"  # an override of "none" sets a field to None, e.g. eval_images: no cap

# The recipe table: one column per (profile, setting, data regime), one row per value, read top
# to bottom; `--set` and notebook parameters override it per run, and nothing else does.
# `python -m common.config --show MODEL SETTING FRACTION` prints a run's values and their sources.
# `epochs` is the budget at 100% of the data; under budget "sqrt" a fraction f trains
# round(epochs / sqrt(f)) epochs, so 1/16 of the data gets 4x the epochs (1/4 of the steps).
#
# full scratch: airbench's ResNet-18 baseline, done faithfully: github.com/KellerJordan/
#   cifar10-zoo, airbench/baselines/train_resnet18_94.py (K. Jordan; read at commit d5a9ca5).
#   Its hyp: epochs 26, batch_size 500, lr 0.2, momentum 0.9 (Nesterov), wd 5e-4; aug flip,
#   translate 4 (reflect padding), cutout 12; lr np.interp over [0, int(0.2 * steps), steps] of
#   [0.2, 1, 0]. Its header: 26 epochs, 51 s on an A100, test accuracy 93.43, 93.36, 93.53%
#   without test-time augmentation, 93.84, 93.85, 93.93% with flips (tta_level 1; "Random flip
#   => 94.004 in n=200"). train_resnet18_96.py, the same recipe for 80 epochs: 95.875% at
#   tta_level 1 over 100 runs. Where ours differs: 45,000 training images (5,000 held out for
#   validation) against 50,000; no weight decay on BN and biases (the source decays every
#   parameter); torchvision's ResNet-18 with the CIFAR stem against Kuang Liu's CIFAR ResNet-18
#   (the same layers). The committed results (results/runs-full-nvidia-h200, the README's
#   headline) were made by the former recipe (no cutout, zero padding, triangle from ~0 peaking
#   at 23%, no test-time augmentation) on the JPEG copy of CIFAR-10, which costs accuracy
#   against the original files (airbench94 on both: docs/rebuild.md).
# full pretrained: BiT-HyperRule (Kolesnikov et al. 2020, "Big Transfer"), read in
#   github.com/google-research/big_transfer: bit_hyperrule.py get_resolution (images under
#   96x96 px: resize 160, crop 128), get_mixup (alpha 0.1 from 20,000 images up), get_schedule
#   (20k-500k images: [500, 3000, 6000, 9000, 10000], i.e. 500 warm-up steps, lr /10 after
#   steps 3k, 6k and 9k, 10k in all; under 20k: [100, 200, 300, 400, 500]) and get_lr (warm-up
#   base_lr * step / 500); bit_pytorch/train.py (SGD lr 0.003, momentum 0.9, "no
#   weight-decay!"; zero_head=True; random crop + flip; tested resized to 128, no test-time
#   augmentation); bit_common.py (batch 512). Where ours differs: Nesterov momentum (ours for
#   every SGD run); ImageNet normalisation (the weights'; BiT uses 0.5, 0.5); BatchNorm where
#   BiT's ResNets use GroupNorm with weight standardisation (torchvision's ResNet-50 and its
#   ImageNet weights have BatchNorm).
#   The budget from 20,000 images up is not BiT's: BiT's schedule shape (5% warm-up, lr /10
#   after 30, 60 and 90% of the steps, MixUp 0.1) over 17 epochs at 100% (87 steps of 512 an
#   epoch: 1,479 steps, BiT's 10,000 would be 115 epochs), epochs / sqrt(f) below (24 at 50%:
#   1,032 steps), as from scratch. Why: BiT's 10,000 steps are about 7x as many, and
#   fine-tuning converged early in the one measurement behind this budget, whose runs were not
#   committed: docs/running.md (Profiles and recipes) gives it with its provenance.
#   Not yet checked on validation: twice this budget (`benchmarks/recipe_sweep.py --profile
#   full --model resnet50 --fraction 1 --eval-images none --run "pretrained" --run "pretrained
#   epochs=34"`, with the weights; in `benchmarks/plan.py`) tells whether it binds. BiT's
#   cited 10,000 steps, slower, are one setting away: budget=bit. Under 20,000 images, BiT's
#   own 500 steps (its own column). Unmeasured too: the resolution (--run "pretrained
#   image_size=160 resize=192", or 224 px).
# quick: for a 2-core CPU, the whole 13-run grid in about ten minutes. ResNet-18 trains several
#   times faster there with the ImageNet stem than with the CIFAR stem
#   (benchmarks/results/pipeline-cpu*.md), so quick uses the ImageNet stem at 32 px, caps the
#   steps per epoch and evaluates fixed subsets of validation and test. Every quick run sees the
#   same 4,096 images whatever its fraction: a budget that grew with the subset cannot fit in
#   ten minutes here, so quick is a check that the pipeline works, and its report claims no
#   data, model-size or pretraining effect (common/observations.py, quick_note). Its values
#   were chosen on validation accuracy, measured on the JPEG copy of CIFAR-10 on a 2-core AMD
#   EPYC CPU: in 64 steps AdamW learns faster than SGD. From scratch, 1/16, seed 0: AdamW 4e-3
#   for ResNet-18 and ResNet-50 against 2e-3, 8e-3 and SGD + Nesterov; label smoothing 0.1
#   within one seed's spread, not adopted (quick-scratch-resnet{18,50}-1-16-cpu-amd-epyc.md).
#   Fine-tuned, with real ImageNet features (Keras' ResNet-50 weights, not torchvision's),
#   ResNet-50 on 1/16: AdamW 1e-3 against 3e-4, 3e-3 and SGD + Nesterov, and against from
#   scratch in the same budget; 64 px scores higher there but costs about 4x per image
#   (finetune-keras-1-16-cpu-amd-epyc.md). All in benchmarks/results/.
COLUMNS = (
    ("full", "scratch", "all"),
    ("full", "pretrained", "from 20,000 images"),
    ("full", "pretrained", "under 20,000 images"),
    ("quick", "scratch", "all"),
    ("quick", "pretrained", "all"),
)
BIT_STEPS = dict(below=20_000, few=500, many=10_000)  # BiT's regimes (bit_hyperrule.py)
# fmt: off
RECIPES: dict[str, tuple[Any, ...]] = dict(
    #                full scratch   full pretr.   <20k images   quick scr.   quick pretr.
    # the CIFAR stem: 3x3 stride-1 first conv, no max-pool; pretrained: the weights' own stem;
    # quick: the ImageNet stem, faster on a CPU (benchmarks/results/pipeline-cpu*.md)
    stem=           ("cifar",     "imagenet",   "imagenet",   "imagenet",  "imagenet"),
    image_size=     (32,          128,          128,          32,          32),  # BiT's crop
    resize=         (None,        160,          160,          None,        None),  # BiT's resize
    # how the epochs follow the data size (CHOICES); "bit": 500 steps under 20,000 images
    budget=         ("sqrt",      "sqrt",       "bit",        "sqrt",      "sqrt"),
    # at 100%: airbench's 26 (104 at 1/16); 17 = 1,479 steps of 512, within 1,500 (see above)
    epochs=         (26,          17,           17,           4,           4),
    batch_size=     (500,         512,          512,          64,          64),
    # airbench's, BiT's; quick: AdamW 4e-3 (scratch) and 1e-3 (fine-tuned), measured above
    lr=             (0.2,         0.003,        0.003,        4e-3,        1e-3),
    optimizer=      ("sgd",       "sgd",        "sgd",        "adamw",     "adamw"),  # Nesterov
    momentum=       (0.9,         0.9,          0.9,          0.9,         0.9),  # AdamW: beta1
    # BiT: "no weight-decay!"; AdamW's is decoupled
    weight_decay=   (5e-4,        0.0,          0.0,          0.05,        0.05),
    label_smoothing=(0.0,         0.0,          0.0,          0.0,         0.0),  # none cited
    head_init=      ("default",   "zero",       "zero",       "default",   "default"),  # BiT's
    # triangle: airbench's np.interp; steps: BiT's lr /10 at each drop; quick: cosine
    schedule=       ("triangle",  "steps",      "steps",      "cosine",    "cosine"),
    warmup_epochs=  (None,        None,         None,         1,           1),
    # airbench's peak at int(0.2 * steps); BiT's 500 of 10,000 and 100 of 500 steps
    warmup_share=   (0.2,         0.05,         0.2,          None,        None),
    lr_start_factor=(0.2,         0.0,          0.0,          0.0,         0.0),  # airbench's
    # BiT's 3k, 6k, 9k of 10k steps; 200, 300, 400 of 500
    lr_drops=       ([],          [0.3, 0.6, 0.9], [0.4, 0.6, 0.8], [],    []),
    mixup=          (0.0,         0.1,          0.0,          0.0,         0.0),  # BiT's get_mixup
    cutout=         (12,          0,            0,            0,           0),  # airbench's
    pad_mode=       ("reflect",   "zeros",      "zeros",      "zeros",     "zeros"),  # airbench's
    # airbench's tta_level 1: every evaluation averages the image's and its mirror's logits
    tta=            ("flip",      "none",       "none",       "none",      "none"),
    # quick: 16 steps an epoch (1,024 images); validation on 1,000, test on 2,000 fixed images
    steps_per_epoch=(None,        None,         None,         16,          16),
    eval_images=    (None,        None,         None,         2000,        2000),
)
# fmt: on
# Values of the table not measured for a model that trains with them, one line each.
UNMEASURED: dict[tuple[str, str, str], tuple[tuple[str, ...], str]] = {
    ("full", "scratch", "resnet50"): (
        ("lr", "weight_decay", "epochs"),
        "airbench's ResNet-18 values; airbench has no ResNet-50 recipe (benchmarks/plan.py "
        "checks lr 0.1 and 0.4)",
    ),
}
# Models that train with another model's recipe, one line each (the model, why); every value
# is unmeasured for them. One recipe for every depth is common practice: kuangliu/pytorch-cifar
# trains each of its models with the same SGD (lr 0.1, momentum 0.9, weight decay 5e-4, cosine
# over 200 epochs), and its README reports ResNet18 93.02%, ResNet50 93.62%, ResNet101 93.75%.
SAME_RECIPE: dict[str, tuple[str, str]] = {
    "resnet34": ("resnet18", "the same basic (two 3x3 convolution) blocks, more of them"),
    "resnet101": ("resnet50", "the same bottleneck blocks, more of them in the third stage"),
    "resnet152": ("resnet50", "the same bottleneck blocks, more of them in stages two and three"),
    "resnext50_32x4d": ("resnet50", "the same depth and stages, grouped 3x3 convolutions"),
}
# How every run computes and keeps its state, whatever the recipe (each can be set per run).
# Evidence: benchmarks/results/{precision,grid-time}-cpu-amd-epyc.md, 2-core AMD EPYC, one run.
SHARED: dict[str, Any] = dict(
    # bf16 | fp16 | fp32 | auto. auto: bf16 on GPUs that compute it natively (compute capability
    # 8+), fp16 with a gradient scaler on 7.x, fp32 below; on a CPU, whichever of fp32 and
    # bf16 + channels-last trains the run's model faster there, measured once and cached
    # (common/precision.py). CPUs disagree: on the AMD EPYC here (bf16 emulated) fp32 trains
    # faster (benchmarks/results/precision-cpu-amd-epyc.md); on an Intel Xeon with AMX-BF16,
    # bf16 was reported 2.4x faster (CIFAR stem).
    precision="auto",
    channels_last=None,  # None: on with bf16/fp16, off with fp32
    # Seconds between resumable checkpoints (and one at the end): a kill loses at most this much
    # training. Written every epoch, a ResNet-50 checkpoint (model, momentum, best weights) filled
    # disks; every 5 minutes costs a small share of a run (sizes and write times:
    # benchmarks/results/grid-time-cpu-amd-epyc.md).
    checkpoint_every=300.0,
    # Validation every k epochs and after the last, k the smallest that keeps both bounds: at most
    # `max_evals` passes per run, and at most `eval_share` validation images per training image.
    # The best-validation epoch is chosen among these passes. Evaluating all 5,000 validation
    # images after every epoch cost the 1/16 cells more evaluation images than training images,
    # and max_evals alone left the fine-tuning ones there; with both bounds, evaluation is a
    # small share of any full-profile run's predicted time (evaluation and training speeds:
    # benchmarks/results/grid-time-cpu-amd-epyc.md).
    max_evals=50,
    eval_share=0.5,
)


# Where the recipes above depart from their sources, written once here and shown in the
# README's results section by common/report.py.
DEVIATIONS = (
    "`zero_init_residual=True` from scratch: each residual block's last BatchNorm starts at "
    "zero (Goyal et al. 2017); Kuang Liu's CIFAR ResNet-18, which airbench's baseline trains, "
    "keeps PyTorch's default init.",
    "BatchNorm in the fine-tuned networks, as torchvision's ImageNet weights have it; BiT, "
    "whose fine-tuning rule the full recipe follows, uses GroupNorm with weight "
    "standardisation.",
    "Test-time augmentation at airbench's level 1 (the image and its mirror); the source's "
    "final figure is at level 2 (mirrors and translations).",
    "No weight decay on BatchNorm weights and biases; the source decays every parameter.",
    "5,000 of CIFAR-10's 50,000 training images are held out for validation: 100% of the "
    "data is 45,000 training images.",
)


def recipe_model(model: str) -> str:
    """The model whose recipe `model` trains with: its own, or the one SAME_RECIPE names."""
    return SAME_RECIPE[model][0] if model in SAME_RECIPE else model


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines one run; built by `make_config`."""

    model: str
    data_fraction: float
    pretrained: bool
    seed: int
    profile: str
    epochs: int  # at this run's data size (see CHOICES, budget)
    batch_size: int
    lr: float
    optimizer: str
    momentum: float
    weight_decay: float
    label_smoothing: float
    warmup_epochs: float | None  # None when `warmup_share` sets the warm-up
    schedule: str
    image_size: int
    stem: str
    steps_per_epoch: int | None
    eval_images: int | None
    budget: str  # how `epochs` follows the data size
    cutout: int  # side (px) of a square zeroed at a random place of each training image; 0 off
    pad_mode: str  # the border of the 4-px translate
    tta: str  # "flip" averages the logits of each image and its mirror
    mixup: float  # MixUp's alpha (a Beta(alpha, alpha) mixing weight per batch); 0 off
    head_init: str  # the new head of a pretrained model
    # train: resize to `resize` px, then a random `image_size` crop (no translate); evaluation:
    # resize to `image_size`. None: translate at 32 px, then resize to `image_size`
    resize: int | None
    warmup_share: float | None  # warm-up as a share of the run's steps; None: warmup_epochs
    lr_start_factor: float  # the triangle's first lr, as a multiple of the peak
    lr_drops: list[float]  # the "steps" schedule: shares of the run after which lr x LR_DROP
    val_size: int = VAL_SIZE
    patience: int | None = None  # early stopping: epochs without a better val acc
    data_dir: str = str(REPO / "data")
    output_dir: str = ""
    device: str = "auto"
    # "V1" | "V2" (torchvision's) or "custom: <file name> (sha256 <8 hex digits>)"; None: scratch
    weights: str | None = None
    weights_path: str | None = None  # the weights' file; None: torchvision's cache or download
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


def parse_sets(items: list[str]) -> dict[str, Any]:
    """KEY=VALUE overrides as the command lines take them (`--set lr=0.4`): a value is read as
    a Python literal where it parses as one (0.4, 12, True, "x"), else kept as text (linear);
    None lifts the recipe's value (eval_images=None: no cap)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set takes KEY=VALUE, e.g. lr=0.4; got {item!r}")
        try:
            parsed = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            parsed = value.strip()
        out[key.strip()] = LIFT if parsed is None else parsed
    return out


def run_name(model: str, fraction: float, seed: int) -> str:
    """The folder name of a run: resnet18_data-1-16_seed0."""
    return f"{model}_data-{fraction_label(fraction)}_seed{seed}"


def default_profile() -> str:
    """'full' with a GPU torch can use, 'quick' without one."""
    return "full" if cuda_usable() else "quick"


def _drops(value: Any) -> list[float]:
    """lr_drops as floats: a list of shares, or one share."""
    return [float(d) for d in ([value] if isinstance(value, int | float) else value)]


_WHOLE = ("a positive whole number", lambda v: float(v) > 0 and float(v) == int(v), int)
_POSITIVE = ("a positive number", lambda v: float(v) > 0, float)
# How each value is checked: (what it must be, the test of the value given, the type it is
# kept as); those in NULLABLE may be None, and SHARED's are checked only where a run sets them.
RULES: dict[str, tuple[str, Callable[[Any], bool], Callable[[Any], Any]]] = dict(
    batch_size=_WHOLE,
    image_size=_WHOLE,
    epochs=_WHOLE,
    steps_per_epoch=_WHOLE,
    eval_images=_WHOLE,
    patience=_WHOLE,
    lr=_POSITIVE,
    cutout=(f"a side in px from 0 (off) to {SIDE}", lambda v: v == int(v) and 0 <= v <= SIDE, int),
    mixup=("0 (off) or a positive alpha such as 0.1", lambda v: v >= 0, float),
    resize=_WHOLE,
    warmup_share=("a number from 0 up to (not including) 1", lambda v: 0 <= float(v) < 1, float),
    warmup_epochs=("a number 0 or more", lambda v: 0 <= float(v) < math.inf, float),
    lr_start_factor=("a multiple of the peak in [0, 1]", lambda v: 0 <= v <= 1, float),
    lr_drops=(
        "increasing shares of the run in (0, 1), e.g. [0.3, 0.6, 0.9]",
        lambda v: all(0 < d < 1 for d in _drops(v)) and _drops(v) == sorted(set(_drops(v))),
        _drops,
    ),
    checkpoint_every=("a number of seconds, 0 or more", lambda v: float(v) >= 0, float),
    max_evals=_WHOLE,
    eval_share=_POSITIVE,
    val_size=_WHOLE,
)
NULLABLE = {"epochs", "steps_per_epoch", "eval_images", "patience", "resize", "max_evals"}
NULLABLE |= {"warmup_share", "warmup_epochs"}  # exactly one of them is None


def _check(values: dict[str, Any], pretrained: bool) -> None:
    """Validate (in place) a run's values: numbers, choices, warm-up, sizes, stem, schedule."""
    if values["epochs"] is None and values["budget"] != "bit":  # "bit" computes them
        raise ConfigError(f"budget {values['budget']!r} needs epochs (at 100% of the data)")
    if (values["warmup_epochs"] is None) == (values["warmup_share"] is None):
        raise ConfigError(
            "set exactly one of warmup_epochs and warmup_share (lift the other with 'none')"
        )
    for name, (what, ok, kind) in RULES.items():
        if name not in values or (values[name] is None and name in NULLABLE):
            continue
        try:
            good = ok(values[name])
        except (TypeError, ValueError):
            good = False
        if not good:
            raise ConfigError(f"{name} must be {what}, got {values[name]!r}")
        values[name] = kind(values[name])
    for name, allowed in CHOICES.items():
        if name in values and values[name] not in allowed:
            raise ConfigError(
                f"unknown {name} {values[name]!r}: choose one of {', '.join(allowed)}"
            )
    if values.get("channels_last") not in (None, True, False):
        raise ConfigError(
            f"channels_last must be True, False or None (follow the precision), "
            f"got {values['channels_last']!r}"
        )
    if values["image_size"] < MIN_IMAGE_SIZE:
        raise ConfigError(
            f"image_size {values['image_size']} is below the {MIN_IMAGE_SIZE} px "
            "these models accept: use 32 or more"
        )
    if values["resize"] is not None and values["resize"] < values["image_size"]:
        raise ConfigError(
            f"resize {values['resize']} is below image_size {values['image_size']}: "
            "the random crop is taken from the resized image, so resize >= image_size"
        )
    if pretrained and values["stem"] != "imagenet":
        raise ConfigError("pretrained models keep the ImageNet stem: drop stem='cifar'")
    if values["schedule"] == "steps" and not values["lr_drops"]:
        raise ConfigError("schedule 'steps' needs lr_drops, e.g. lr_drops=[0.3, 0.6, 0.9]")


def resolve_weights(
    model: str, pretrained: bool, weights: str | None, path: str | None
) -> tuple[str | None, str | None]:
    """(label, file) of a run's ImageNet weights. `weights` is "V1" (the default), "V2" (V1
    for a model without it), or one's own file, labelled "custom: <file name> (sha256 <hash
    prefix>)"; so is a `path` that is not torchvision's file for the version. From scratch:
    (None, None)."""
    if not pretrained:
        return None, None
    weights = str(weights or "V1")
    if weights.startswith(CUSTOM):  # a saved configuration's label: the file is in `path`
        if not path:
            raise ConfigError(f"weights {weights!r} need their file: set weights_path")
        return custom_label(path), path
    if weights not in VERSIONS:  # the path of one's own state dict
        path = str(REPO / Path(weights).expanduser())
        if not Path(path).is_file():
            raise ConfigError(
                f"weights {weights!r} is neither {' nor '.join(VERSIONS)} nor a file: give a "
                "version or the path of an ImageNet state dict"
            )
        return custom_label(path), path
    version = weights_version(model, weights)
    if path and Path(path).name != weights_file(model, version):
        return custom_label(path), path
    return version, path


def recipe_column(profile: str, setting: str, fraction: float, val_size: Any = None) -> int:
    """The index in COLUMNS of the recipe a run trains with."""
    few = train_images(fraction, val_size) < BIT_STEPS["below"]
    regime = "under 20,000 images" if few else "from 20,000 images"
    return next(
        i
        for i, (p, s, r) in enumerate(COLUMNS)
        if (p, s) == (profile, setting) and r in ("all", regime)
    )


def budget_epochs(values: dict[str, Any], fraction: float, capped: bool) -> int:
    """The run's epochs under its `budget` rule (CHOICES). "sqrt" scales the recipe's epochs at
    100% by 1 / sqrt(fraction), unless the recipe caps its epochs' steps (`capped`: every
    fraction then trains the same steps); "bit" gives BiT's steps at the run's batch size and
    cap on steps per epoch."""
    if values["budget"] == "bit":
        images = train_images(fraction, values.get("val_size"))
        steps = BIT_STEPS["few"] if images < BIT_STEPS["below"] else BIT_STEPS["many"]
        per_epoch = max(1, images // values["batch_size"])
        return math.ceil(steps / min(per_epoch, values["steps_per_epoch"] or per_epoch))
    return values["epochs"] if capped else max(1, round(values["epochs"] / math.sqrt(fraction)))


def train_images(fraction: float, val_size: Any = None) -> int:
    """About how many training images a fraction leaves (CIFAR-10's 50,000 less validation)."""
    try:
        held = int(val_size) if val_size not in (None, LIFT) else VAL_SIZE
    except (TypeError, ValueError):
        held = VAL_SIZE  # make_config's own check reports a bad val_size
    return round(fraction * (TRAIN_SPLIT - held))


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
    repository's root, wherever the process runs; so is a `weights` file (see
    `resolve_weights`).

    Raises ConfigError with one line for anything out of range.
    """
    check_model(model)
    profile = profile or default_profile()
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}: choose one of {', '.join(PROFILES)}")
    text = data_fraction if isinstance(data_fraction, str) else repr(float(data_fraction))
    fraction = parse_fraction(text)
    setting = "pretrained" if pretrained else "scratch"
    unknown = set(overrides) - {f.name for f in fields(RunConfig)}
    if unknown:
        raise ConfigError(f"unknown parameter(s) {', '.join(sorted(unknown))}: see RunConfig")
    column = recipe_column(profile, setting, fraction, overrides.get("val_size"))
    values = {k: copy.copy(v[column]) for k, v in RECIPES.items()}  # a list of its own
    capped = values["steps_per_epoch"] is not None  # the recipe's epochs are capped
    # None keeps the recipe's value (a notebook's unset parameter); LIFT sets None (no cap)
    given = {k: None if v == LIFT else v for k, v in overrides.items() if v is not None}
    for one, other in (("warmup_epochs", "warmup_share"), ("warmup_share", "warmup_epochs")):
        if given.get(one) is not None and other not in given:  # one warm-up replaces the other
            values[other] = None
    values.update(given)
    for name in ("data_dir", "output_dir", "weights_path"):  # one place for relative paths
        if values.get(name):
            values[name] = str(REPO / Path(values[name]).expanduser())
    _check(values, pretrained)
    if "epochs" not in given:  # given epochs are this run's
        values["epochs"] = budget_epochs(values, fraction, capped)
    values["weights"], values["weights_path"] = resolve_weights(
        model, pretrained, values.get("weights"), values.get("weights_path")
    )
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


def unmeasured(model: str, setting: str, profile: str) -> tuple[tuple[str, ...], str]:
    """The recipe values not measured for `model` in (profile, setting), and why it has them."""
    if model in SAME_RECIPE:
        return tuple(RECIPES), f"{recipe_model(model)}'s recipe: {SAME_RECIPE[model][1]}"
    return UNMEASURED.get((profile, setting, model), ((), ""))


def sources(
    model: str, setting: str, fraction: str, profile: str, sets: dict[str, Any]
) -> list[tuple[str, Any, str]]:
    """(name, value, where it came from) for every value of one run's configuration."""
    cfg = make_config(model, fraction, setting == "pretrained", profile=profile, **sets)
    column = recipe_column(profile, setting, cfg.data_fraction, cfg.val_size)
    recipe = "recipe " + " ".join(c for c in COLUMNS[column] if c != "all")
    names, _ = unmeasured(model, setting, profile)
    rows = []
    for name, value in cfg.to_dict().items():
        if name in sets:
            where = "--set"
        elif name in ("model", "data_fraction", "pretrained", "seed", "profile"):
            where = "asked"
        elif name == "epochs" and cfg.budget == "bit":
            where = f"{recipe}, budget bit: BiT's steps as whole epochs"
        elif name == "epochs":
            where = f"{recipe}: {RECIPES['epochs'][column]} at 100%, / sqrt(fraction)"
        elif name in RECIPES:
            where = recipe
        else:
            where = "SHARED (every run)" if name in SHARED else "RunConfig"
        rows.append((name, value, where + (", unmeasured for it" if name in names else "")))
    return rows


def main(argv: list[str] | None = None) -> None:
    """`python -m common.config --show MODEL SETTING FRACTION`: a run's values and sources."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m common.config", description=main.__doc__)
    parser.add_argument("--show", nargs=3, metavar=("MODEL", "SETTING", "FRACTION"), required=True)
    parser.add_argument("--profile", default="full", choices=PROFILES)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    model, setting, fraction = args.show
    if setting not in SETTINGS:
        raise ConfigError(f"unknown setting {setting!r}: choose one of {', '.join(SETTINGS)}")
    rows = sources(model, setting, fraction, args.profile, parse_sets(args.set))
    print(f"{model} {setting} {fraction}, profile {args.profile}:")
    for name, value, where in rows:
        print(f"  {name:<16} {value!s:<36} {where}")
    names, why = unmeasured(model, setting, args.profile)
    if names:
        print(f"unmeasured for {model}: {', '.join(names)}: {why}")


if __name__ == "__main__":
    try:
        main()
    except UserError as error:
        raise SystemExit(f"error: {error}") from None
