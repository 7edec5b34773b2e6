"""Run configuration: the recipe table and the validated parameters of one run."""

from __future__ import annotations

import ast
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from .data import SIDE, fraction_label, parse_fraction
from .errors import ConfigError
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
from .precision import check_precision, cuda_usable

REPO = Path(__file__).resolve().parent.parent
PROFILES = ("full", "quick")
OPTIMIZERS = ("sgd", "adamw")
# after the warm-up: cosine or linear decay to 0; "triangle": up from `lr_start_factor` x the
# peak, then linearly down to 0; "steps": constant, x0.1 after each of `lr_drops`
SCHEDULES = ("cosine", "linear", "triangle", "steps")
PAD_MODES = ("zeros", "reflect")  # how the 4-px translate fills the border
TTA_MODES = ("none", "flip")  # test-time augmentation of every evaluation
HEAD_INITS = ("default", "zero")  # the new classifier head: PyTorch's init or all zeros
LR_DROP = 0.1  # the "steps" schedule's factor at each drop (BiT's bit_hyperrule.get_lr: /10)
# How a run's budget follows its data size. "sqrt": `epochs` at 100% of the data, epochs /
# sqrt(f) at a fraction f. "bit": BiT-HyperRule's steps (bit_hyperrule.py get_schedule: 500
# steps under 20,000 training images, 10,000 from 20,000 to 500,000), as whole epochs.
BUDGETS = ("sqrt", "bit")
BIT_STEPS = dict(below=20_000, few=500, many=10_000)
SETTINGS = ("scratch", "pretrained")
VAL_SIZE = 5000  # validation images held out of CIFAR-10's 50,000 training images
TRAIN_SPLIT = 50_000
LIFT = "none"  # an override of "none" sets a field to None, e.g. eval_images: no cap

# Recipe defaults: RECIPES per (profile, setting), over OFF; MODEL_VALUES adds a model's own
# values, SMALL_DATA those of runs on few images (`recipe_values`). Any value can be overridden
# per run. `epochs` is the budget at 100% of the data; a fraction f trains round(epochs /
# sqrt(f)) epochs, so 1/16 of the data gets 4x the epochs (1/4 of the steps) and still converges.
# full: for a GPU, the published recipes it cites, done as their sources do (below). Measured
#   on the JPEG copy of CIFAR-10 that the committed results use (results/runs-full-nvidia-h200):
#   that copy costs about 3.5 points against the original files (airbench94: 90.55 ± 0.17%
#   over 5 runs on an H200, 94.01% in its README).
# quick: for a 2-core CPU, the whole 13-run grid in about ten minutes. ResNet-18 at batch 64
#   trains at 29 images/s there with the CIFAR stem against 165 with the ImageNet stem
#   (benchmarks/results/pipeline-cpu*.md), so quick uses the ImageNet stem at 32 px, caps the
#   steps per epoch and evaluates fixed subsets of validation and test.
#   Every quick run sees the same 4,096 images whatever its fraction: a budget that grew with
#   the subset cannot fit in ten minutes here (one pass over 100% takes ResNet-50 about 20 min),
#   so quick is a check that the pipeline works, and its report claims no data, model-size or
#   pretraining effect (common/observations.py, quick_note).
#   Measured on the JPEG copy of CIFAR-10, 2-core AMD EPYC CPU, torch 2.14.1, on validation
#   images: benchmarks/results/{quick-scratch,finetune-keras}-*.md.
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
# The settings added for the cited recipes, off: every recipe starts from these and lists only
# what it turns on. Off is the pipeline the quick profile's values were measured with.
OFF: dict[str, Any] = dict(
    budget="sqrt",  # epochs / sqrt(f)
    cutout=0,
    pad_mode="zeros",
    tta="none",
    mixup=0.0,
    head_init="default",
    resize=None,
    warmup_share=None,  # the warm-up is `warmup_epochs`
    lr_start_factor=0.0,  # used by the triangle only
    lr_drops=[],  # used by the "steps" schedule only
)
RECIPES: dict[tuple[str, str], dict[str, Any]] = {
    ("full", "scratch"): dict(
        # airbench's ResNet-18 baseline, done faithfully: github.com/KellerJordan/cifar10-zoo,
        # airbench/baselines/train_resnet18_94.py (K. Jordan; read at commit d5a9ca5). Its hyp:
        # epochs 26, batch_size 500, lr 0.2, momentum 0.9 (Nesterov), wd 5e-4; aug flip,
        # translate 4 (reflect padding), cutout 12; lr np.interp over [0, int(0.2 * steps),
        # steps] of [0.2, 1, 0]. Its header: 26 epochs, 51 s on an A100, test accuracy 93.43,
        # 93.36, 93.53% without test-time augmentation, 93.84, 93.85, 93.93% with flips
        # (tta_level 1; "Random flip => 94.004 in n=200"). train_resnet18_96.py, the same recipe
        # for 80 epochs: 95.875% at tta_level 1 over 100 runs. Where ours differs from the
        # source: 45,000 training images (5,000 held out for validation) against 50,000; no
        # weight decay on BN and biases (the source decays every parameter); torchvision's
        # ResNet-18 with the CIFAR stem against Kuang Liu's CIFAR ResNet-18 (the same layers).
        # On the JPEG copy of CIFAR-10 the committed results use, the former recipe (no cutout,
        # zero padding, triangle from ~0 peaking at 23%, no test-time augmentation) scored
        # 87.48 ± 0.07% test at 100% on an NVIDIA H200 (results/runs-full-nvidia-h200).
        stem="cifar",  # 3x3 stride-1 first conv, no max-pool: a CIFAR ResNet-18
        image_size=32,  # native resolution
        epochs=26,  # at 100%; 1/16 gets 104 (epochs / sqrt(f))
        batch_size=500,
        lr=0.2,
        optimizer="sgd",  # with Nesterov momentum
        momentum=0.9,
        weight_decay=5e-4,
        label_smoothing=0.0,  # none in the source
        schedule="triangle",
        warmup_epochs=None,
        warmup_share=0.2,  # the peak at int(0.2 * steps), at any data fraction
        lr_start_factor=0.2,  # the first step at 0.2x the peak
        cutout=12,
        pad_mode="reflect",
        tta="flip",  # tta_level 1: every evaluation averages the image's and its mirror's logits
        steps_per_epoch=None,  # a full pass
        eval_images=None,  # the whole validation and test sets
    ),
    ("full", "pretrained"): dict(
        # BiT-HyperRule (Kolesnikov et al. 2020, "Big Transfer"), read in
        # github.com/google-research/big_transfer: bit_hyperrule.py get_resolution (images under
        # 96x96 px: resize 160, crop 128), get_mixup (alpha 0.1 from 20,000 images up),
        # get_schedule (20k-500k images: [500, 3000, 6000, 9000, 10000], i.e. 500 warm-up
        # steps, lr /10 after steps 3k, 6k and 9k, 10k in all; under 20k: [100, ..., 500])
        # and get_lr (warm-up base_lr * step / 500); bit_pytorch/train.py (SGD lr 0.003,
        # momentum 0.9, "no weight-decay!"; zero_head=True; random crop + flip; tested resized
        # to 128, no test-time augmentation); bit_common.py (batch 512). Where ours differs:
        # Nesterov momentum (ours for every SGD run); ImageNet normalisation (the weights'; BiT
        # uses 0.5, 0.5); BatchNorm where BiT's ResNets use GroupNorm with weight
        # standardisation (torchvision's ResNet-50 and its ImageNet weights have BatchNorm).
        # The budget, not BiT's from 20,000 images up: BiT's schedule shape (5% warm-up, lr /10
        # after 30, 60 and 90% of the steps, MixUp 0.1) over 17 epochs at 100% (87 steps of 512
        # an epoch: 1,479 steps, BiT's 10,000 would be 115 epochs), epochs / sqrt(f) below
        # (24 at 50%: 1,032 steps), as from scratch. Why: BiT's 10,000 steps take about 470 s
        # a run on an H200 and hours on a T4 (15-20x slower), and fine-tuning converged early
        # there: on one H200 (2026-12-01, one seed, the former recipe: cosine, 30 epochs, 128
        # px; runs not committed) ResNet-50 from Keras' ImageNet weights reached 81.58, 90.17,
        # 91.78% test at 1/16, 50%, 100%, its validation accuracy at 100% no longer rising
        # after about 12 of the 30 epochs. Not yet checked on validation: twice this budget
        # (`benchmarks/recipe_sweep.py --profile full --model resnet50 --fraction 1
        # --eval-images none --run "pretrained" --run "pretrained epochs=34"`, with the
        # weights) tells whether it binds. BiT's cited 10,000 steps, slower, are one setting
        # away: budget=bit. Under 20,000 images BiT's own 500 steps (SMALL_DATA). Unmeasured
        # too: the resolution (--run "pretrained image_size=160 resize=192", or 224 px).
        stem="imagenet",  # the stem the ImageNet weights were trained with
        image_size=128,  # BiT's crop, and its test resolution
        resize=160,  # BiT's pre-crop resize for images under 96 px
        budget="sqrt",
        epochs=17,  # at 100%: 1,479 steps of 512, within 1,500 (see above)
        batch_size=512,
        lr=0.003,
        optimizer="sgd",
        momentum=0.9,
        weight_decay=0.0,
        label_smoothing=0.0,
        head_init="zero",
        schedule="steps",
        warmup_epochs=None,
        warmup_share=0.05,  # 500 of 10,000 steps
        lr_drops=[0.3, 0.6, 0.9],  # after 3k, 6k, 9k of 10k steps
        mixup=0.1,  # 20,000 images and up; SMALL_DATA below
        steps_per_epoch=None,
        eval_images=None,
    ),
    ("quick", "scratch"): dict(
        stem="imagenet",  # 5.6x faster than the CIFAR stem on a CPU (measured, see above)
        image_size=32,
        epochs=4,
        batch_size=64,
        # In 64 steps AdamW learns faster than SGD. On 1/16, seed 0, validation accuracy on 2,000
        # images (benchmarks/results/quick-scratch-resnet{18,50}-1-16-cpu-amd-epyc.md):
        # ResNet-18 AdamW 4e-3 27.6%, 8e-3 27.1%, 2e-3 24.9%, 4e-3 with label smoothing 0.1
        # 28.3% (within one seed's spread, sd 1.5: not adopted); SGD+Nesterov 0.2 21.5%,
        # 0.05 18.2%. ResNet-50 AdamW 4e-3 25.7%, 8e-3 22.9%, 2e-3 24.1% (and 24.6 ± 1.5%
        # over 3 seeds in benchmarks/results/finetune-keras-1-16-cpu-amd-epyc.md).
        lr=4e-3,
        optimizer="adamw",
        momentum=0.9,  # AdamW's beta1
        weight_decay=0.05,  # decoupled
        label_smoothing=0.0,
        warmup_epochs=1,
        schedule="cosine",
        steps_per_epoch=16,  # 1,024 images per epoch
        eval_images=2000,  # validation on 1,000, test on 2,000 fixed stratified images
    ),
    ("quick", "pretrained"): dict(
        # Measured with real ImageNet features (Keras ResNet-50 weights, not torchvision's),
        # ResNet-50 on 1/16, this budget, validation accuracy on 2,000 images
        # (benchmarks/results/finetune-keras-1-16-cpu-amd-epyc.md; 2-core AMD EPYC):
        # AdamW 1e-3 45.4 ± 4.3% (3 seeds), 3e-4 41.3%, 3e-3 35.4%; SGD + Nesterov 0.01 42.8%,
        # 0.003 41.4%, 0.03 27.2%; from scratch in the same budget 24.6 ± 1.5% (3 seeds).
        # At 64 px fine-tuning reaches 62.0% (scratch 33.7%), but each image costs about 4x:
        # the 13-run grid would take about 40 min here instead of 10.
        stem="imagenet",
        image_size=32,
        epochs=4,
        batch_size=64,
        lr=1e-3,
        optimizer="adamw",
        momentum=0.9,
        weight_decay=0.05,
        label_smoothing=0.0,
        warmup_epochs=1,
        schedule="cosine",
        steps_per_epoch=16,
        eval_images=2000,
    ),
}

# The models without a recipe of their own train with the recipe of the nearest tuned model
# (resnet18, resnet50), the reason beside each; none of them has been tuned on validation yet
# (the sweep of benchmarks/ that chose the tuned ones would, per model). One recipe for every
# depth is common practice: kuangliu/pytorch-cifar's main.py trains each of its models with
# the same SGD (lr 0.1, momentum 0.9, weight decay 5e-4, cosine over 200 epochs), the model
# picked by one line, and its README reports ResNet18 93.02%, ResNet50 93.62% and ResNet101
# 93.75% with it.
RECIPE_FROM: dict[str, tuple[str, str]] = {
    "resnet34": ("resnet18", "the same basic (two 3x3 convolution) blocks, more of them"),
    "resnet101": ("resnet50", "the same bottleneck blocks, more of them in the third stage"),
    "resnet152": ("resnet50", "the same bottleneck blocks, more of them in stages two and three"),
    "resnext50_32x4d": ("resnet50", "the same depth and stages, grouped 3x3 convolutions"),
}


def recipe_model(model: str) -> str:
    """The model whose recipe `model` trains with: its own, or the one RECIPE_FROM names."""
    return RECIPE_FROM[model][0] if model in RECIPE_FROM else model


# Per-model values over the (profile, setting) recipe, each with its evidence.
MODEL_VALUES: dict[tuple[str, str, str], dict[str, Any]] = {
    ("full", "scratch", "resnet50"): dict(
        # airbench has no ResNet-50 recipe: ResNet-18's cited values, unmeasured for ResNet-50
        # on validation. `benchmarks/recipe_sweep.py --profile full --model resnet50
        # --eval-images none --seeds 0,1,2` with --run "scratch lr=..." / "scratch
        # weight_decay=..." / "scratch epochs=..." at 1/16 and 100% decides them.
        lr=0.2,
        weight_decay=5e-4,
        epochs=26,
    ),
}
# Values for runs on fewer training images than "below", over the (profile, setting) recipe.
SMALL_DATA: dict[tuple[str, str], dict[str, Any]] = {
    ("full", "pretrained"): dict(
        # BiT-HyperRule under 20,000 images (bit_hyperrule.py get_mixup, get_schedule): no
        # MixUp; 500 steps, 100 of them warm-up, lr /10 after steps 200, 300 and 400
        below=BIT_STEPS["below"],
        budget="bit",  # 500 steps: 100 epochs at 1/16
        mixup=0.0,
        warmup_share=0.2,
        lr_drops=[0.4, 0.6, 0.8],
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
    epochs: int  # at this run's data size (see BUDGETS)
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
    # Newer settings (defaults in OFF; see docs/running.md)
    budget: str  # BUDGETS: how `epochs` follows the data size
    cutout: int  # side (px) of a square zeroed at a random place of each training image; 0 off
    pad_mode: str  # PAD_MODES: the border of the 4-px translate
    tta: str  # TTA_MODES: "flip" averages the logits of each image and its mirror
    mixup: float  # MixUp's alpha (a Beta(alpha, alpha) mixing weight per batch); 0 off
    head_init: str  # HEAD_INITS: the new head of a pretrained model
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
    # pretrained: "V1" | "V2" (torchvision's) or "custom: <file name> (sha256 <8 hex digits>)";
    # None from scratch
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


def _check_recipe(values: dict[str, Any], pretrained: bool) -> None:
    """Validate (in place) the recipe values: counts, sizes, rate, optimizer, schedule, stem."""
    for name in ("batch_size", "image_size"):
        values[name] = _positive(name, values[name])
    if values["epochs"] is None and values["budget"] != "bit":  # "bit" computes them
        raise ConfigError(f"budget {values['budget']!r} needs epochs (at 100% of the data)")
    if values["epochs"] is not None:
        values["epochs"] = _positive("epochs", values["epochs"])
    for name in ("steps_per_epoch", "eval_images", "patience"):
        if values.get(name) is not None:
            values[name] = _positive(name, values[name])
    values["lr"] = _positive("lr", values["lr"], float)
    if values["image_size"] < MIN_IMAGE_SIZE:
        raise ConfigError(
            f"image_size {values['image_size']} is below the {MIN_IMAGE_SIZE} px "
            "these models accept: use 32 or more"
        )
    choices = dict(
        optimizer=OPTIMIZERS,
        schedule=SCHEDULES,
        stem=STEMS,
        pad_mode=PAD_MODES,
        tta=TTA_MODES,
        head_init=HEAD_INITS,
        budget=BUDGETS,
    )
    for name, allowed in choices.items():
        if values[name] not in allowed:
            raise ConfigError(
                f"unknown {name} {values[name]!r}: choose one of {', '.join(allowed)}"
            )
    if pretrained and values["stem"] != "imagenet":
        raise ConfigError("pretrained models keep the ImageNet stem: drop stem='cifar'")
    _check_augmentation(values)
    _check_schedule(values)


def _share(name: str, value: Any, top: float = 1.0) -> float:
    """A number in [0, `top`), or a one-line error."""
    try:
        ok = 0 <= float(value) < top
    except (TypeError, ValueError):
        ok = False
    if not ok:
        bound = "0 or more" if top == math.inf else f"from 0 up to (not including) {top:g}"
        raise ConfigError(f"{name} must be a number {bound}, got {value!r}")
    return float(value)


def _check_augmentation(values: dict[str, Any]) -> None:
    """Validate (in place) cutout, mixup and resize."""
    cutout = values["cutout"]
    if not (isinstance(cutout, int | float) and cutout == int(cutout) and 0 <= cutout <= SIDE):
        raise ConfigError(f"cutout must be a side in px from 0 (off) to {SIDE}, got {cutout!r}")
    values["cutout"] = int(cutout)
    mixup = values["mixup"]
    if not (isinstance(mixup, int | float) and mixup >= 0):
        raise ConfigError(f"mixup must be 0 (off) or a positive alpha such as 0.1, got {mixup!r}")
    values["mixup"] = float(mixup)
    if values["resize"] is not None:
        values["resize"] = _positive("resize", values["resize"])
        if values["resize"] < values["image_size"]:
            raise ConfigError(
                f"resize {values['resize']} is below image_size {values['image_size']}: "
                "the random crop is taken from the resized image, so resize >= image_size"
            )


def _check_schedule(values: dict[str, Any]) -> None:
    """Validate (in place) the warm-up (exactly one of warmup_epochs, warmup_share), the
    triangle's start and the step schedule's drops."""
    if (values["warmup_epochs"] is None) == (values["warmup_share"] is None):
        raise ConfigError(
            "set exactly one of warmup_epochs and warmup_share (lift the other with 'none')"
        )
    if values["warmup_share"] is not None:
        values["warmup_share"] = _share("warmup_share", values["warmup_share"])
    else:
        values["warmup_epochs"] = _share("warmup_epochs", values["warmup_epochs"], math.inf)
    start = values["lr_start_factor"]
    if not (isinstance(start, int | float) and 0 <= start <= 1):
        raise ConfigError(
            f"lr_start_factor must be a multiple of the peak in [0, 1], got {start!r}"
        )
    values["lr_start_factor"] = float(start)
    drops = values["lr_drops"]
    try:
        drops = [float(d) for d in ([drops] if isinstance(drops, int | float) else drops)]
    except (TypeError, ValueError):
        drops = [-1.0]
    if any(not 0 < d < 1 for d in drops) or drops != sorted(set(drops)):
        raise ConfigError(
            f"lr_drops must be increasing shares of the run in (0, 1), e.g. [0.3, 0.6, 0.9], "
            f"got {values['lr_drops']!r}"
        )
    if values["schedule"] == "steps" and not drops:
        raise ConfigError("schedule 'steps' needs lr_drops, e.g. lr_drops=[0.3, 0.6, 0.9]")
    values["lr_drops"] = drops


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


def recipe_values(
    model: str, fraction: float, setting: str, profile: str, val_size: Any = None
) -> dict[str, Any]:
    """The recipe's values for one run before the data-size rule and overrides: OFF, then
    RECIPES[(profile, setting)], its SMALL_DATA values when the run trains on fewer images than
    their threshold, and the MODEL_VALUES of the model whose recipe it trains with
    (`recipe_model`: its own, or RECIPE_FROM's)."""
    values = {**OFF, **RECIPES[(profile, setting)]}
    small = SMALL_DATA.get((profile, setting))
    if small and train_images(fraction, val_size) < small["below"]:
        values.update({k: v for k, v in small.items() if k != "below"})
    values.update(MODEL_VALUES.get((profile, setting, recipe_model(model)), {}))
    return {k: list(v) if isinstance(v, list) else v for k, v in values.items()}


def budget_epochs(values: dict[str, Any], fraction: float, capped: bool) -> int:
    """The run's epochs under its `budget` rule (BUDGETS). "sqrt" scales the recipe's epochs at
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
    values = recipe_values(model, fraction, setting, profile, overrides.get("val_size"))
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
    _check_recipe(values, pretrained)
    if "epochs" not in given:  # given epochs are this run's
        values["epochs"] = budget_epochs(values, fraction, capped)
    _check_shared(values)
    values["weights"], values["weights_path"] = resolve_weights(
        model, pretrained, values.get("weights"), values.get("weights_path")
    )
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
