"""The recipe table, RunConfig and make_config; sources and measurements: docs/recipes.md.

`python -m common.config --show MODEL SETTING FRACTION` prints a run's values and their sources.
"""

from __future__ import annotations

import ast
import copy
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from . import models
from .data import SIDE, fraction_label, parse_fraction
from .errors import ConfigError, UserError
from .training import PRECISIONS, cuda_usable

REPO = Path(__file__).resolve().parent.parent
PROFILES = ("full", "quick")
SETTINGS = ("scratch", "pretrained")
VAL_SIZE = 5000  # validation images held out of CIFAR-10's training split
TRAIN_SPLIT = 50_000
LIFT = "none"  # an override of "none" sets a field to None, e.g. eval_images: no cap
CHOICES: dict[str, tuple[str, ...]] = dict(
    optimizer=("sgd", "adamw"),  # SGD is always Nesterov
    schedule=("cosine", "linear", "triangle", "steps"),  # after the warm-up (docs/running.md)
    stem=models.STEMS,
    pad_mode=("zeros", "reflect"),  # how the 4-px translate fills the border
    tta=("none", "flip"),  # test-time augmentation of every evaluation
    head_init=("default", "zero"),  # the new classifier head: PyTorch's init or all zeros
    budget=("sqrt", "bit"),  # epochs / sqrt(fraction), or BiT's steps as whole epochs
    precision=PRECISIONS,
)

# One column per (profile, setting, data regime), one row per value; `--set` and notebook
# parameters override it per run. Each column's sources and measurements: docs/recipes.md.
COLUMNS = (
    ("full", "scratch", "all"),
    ("full", "pretrained", "from 20,000 images"),
    ("full", "pretrained", "under 20,000 images"),
    ("quick", "scratch", "all"),
    ("quick", "pretrained", "all"),
)
BIT_STEPS = dict(below=20_000, few=500, many=10_000)  # BiT's get_schedule regimes
# fmt: off
RECIPES: dict[str, tuple[Any, ...]] = dict(
    #                full scratch   full pretr.   <20k images   quick scr.   quick pretr.
    # quick: the ImageNet stem trains faster on a CPU; evidence: docs/recipes.md#quick-scratch
    stem=           ("cifar",     "imagenet",   "imagenet",   "imagenet",  "imagenet"),
    image_size=     (32,          128,          128,          32,          32),  # BiT's crop
    resize=         (None,        160,          160,          None,        None),  # BiT's resize
    budget=         ("sqrt",      "sqrt",       "bit",        "sqrt",      "sqrt"),
    # at 100%; 17 is not BiT's: docs/recipes.md#full-pretrained-from-20000-images
    epochs=         (26,          17,           17,           4,           4),
    batch_size=     (500,         512,          512,          64,          64),
    # quick: chosen on validation; evidence: docs/recipes.md#quick-scratch, #quick-pretrained
    lr=             (0.2,         0.003,        0.003,        4e-3,        1e-3),
    optimizer=      ("sgd",       "sgd",        "sgd",        "adamw",     "adamw"),
    momentum=       (0.9,         0.9,          0.9,          0.9,         0.9),  # AdamW: beta1
    weight_decay=   (5e-4,        0.0,          0.0,          0.05,        0.05),  # BiT: none
    label_smoothing=(0.0,         0.0,          0.0,          0.0,         0.0),
    head_init=      ("default",   "zero",       "zero",       "default",   "default"),  # BiT's
    schedule=       ("triangle",  "steps",      "steps",      "cosine",    "cosine"),
    warmup_epochs=  (None,        None,         None,         1,           1),
    warmup_share=   (0.2,         0.05,         0.2,          None,        None),
    lr_start_factor=(0.2,         0.0,          0.0,          0.0,         0.0),
    lr_drops=       ([],          [0.3, 0.6, 0.9], [0.4, 0.6, 0.8], [],    []),
    mixup=          (0.0,         0.1,          0.0,          0.0,         0.0),  # BiT's get_mixup
    cutout=         (12,          0,            0,            0,           0),  # airbench's
    pad_mode=       ("reflect",   "zeros",      "zeros",      "zeros",     "zeros"),  # airbench's
    tta=            ("flip",      "none",       "none",       "none",      "none"),  # airbench's
    steps_per_epoch=(None,        None,         None,         16,          16),  # quick: fixed work
    eval_images=    (None,        None,         None,         2000,        2000),
)
# fmt: on
# Values of the table not measured for a model that trains with them: (values, why).
UNMEASURED: dict[tuple[str, str, str], tuple[tuple[str, ...], str]] = {
    ("full", "scratch", "resnet50"): (
        ("lr", "weight_decay", "epochs"),
        "airbench's ResNet-18 values; airbench has no ResNet-50 recipe (benchmarks/plan.py "
        "checks lr 0.1 and 0.4)",
    ),
}
# Models that train with another model's recipe: (that model, why); docs/recipes.md explains
SAME_RECIPE: dict[str, tuple[str, str]] = {
    "resnet34": ("resnet18", "the same basic (two 3x3 convolution) blocks, more of them"),
    "resnet101": ("resnet50", "the same bottleneck blocks, more of them in the third stage"),
    "resnet152": ("resnet50", "the same bottleneck blocks, more of them in stages two and three"),
    "resnext50_32x4d": ("resnet50", "the same depth and stages, grouped 3x3 convolutions"),
}
# How every run computes and keeps its state; evidence: docs/recipes.md#every-run
SHARED: dict[str, Any] = dict(
    precision="auto",  # by GPU capability, or measured once per CPU (common/training.py)
    channels_last=None,  # None: on with bf16/fp16, off with fp32
    checkpoint_every=300.0,  # seconds a kill may lose; a checkpoint each epoch filled disks
    max_evals=50,  # validation passes per run, at most
    eval_share=0.5,  # validation images per training image, at most
)
# Where the recipes depart from their sources, shown in the README by common/report.py.
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
    epochs: int  # at this run's data size
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
    budget: str
    cutout: int  # side (px) of a square zeroed at a random place of each training image; 0 off
    pad_mode: str
    tta: str
    mixup: float  # MixUp's alpha; 0 off
    head_init: str
    resize: int | None  # train: resize, then a random `image_size` crop; None: translate
    warmup_share: float | None  # warm-up as a share of the run's steps; None: warmup_epochs
    lr_start_factor: float  # the triangle's first lr, as a multiple of the peak
    lr_drops: list[float]  # the "steps" schedule: shares of the run after which lr x LR_DROP
    val_size: int = VAL_SIZE
    patience: int | None = None  # early stopping: epochs without a better val acc
    data_dir: str = str(REPO / "data")
    output_dir: str = ""
    device: str = "auto"
    weights: str | None = None  # "V1", "V2" or "custom: <file> (sha256 <hash>)"; None: scratch
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
    """KEY=VALUE overrides (`--set lr=0.4`): a Python literal where one parses, else text;
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


Rule = tuple[str, Callable[[Any], bool], Callable[[Any], Any]]
_WHOLE: Rule = ("a positive whole number", lambda v: float(v) > 0 and float(v) == int(v), int)
_POSITIVE: Rule = ("a positive number", lambda v: float(v) > 0, float)
_SIZE = f"a whole number of px, not below the {models.MIN_IMAGE_SIZE} px these models accept"
# (what a value must be, its test, the type it is kept as); those in NULLABLE may be None
RULES: dict[str, Rule] = dict.fromkeys(
    ("batch_size", "epochs", "steps_per_epoch", "eval_images", "patience", "resize", "val_size"),
    _WHOLE,
) | dict(
    image_size=(_SIZE, lambda v: float(v) >= models.MIN_IMAGE_SIZE and float(v) == int(v), int),
    max_evals=_WHOLE,
    lr=_POSITIVE,
    eval_share=_POSITIVE,
    cutout=(f"a side in px from 0 (off) to {SIDE}", lambda v: v == int(v) and 0 <= v <= SIDE, int),
    mixup=("0 (off) or a positive alpha such as 0.1", lambda v: v >= 0, float),
    warmup_share=("a number from 0 up to (not including) 1", lambda v: 0 <= float(v) < 1, float),
    warmup_epochs=("a number 0 or more", lambda v: 0 <= float(v) < math.inf, float),
    lr_start_factor=("a multiple of the peak in [0, 1]", lambda v: 0 <= v <= 1, float),
    lr_drops=(
        "increasing shares of the run in (0, 1), e.g. [0.3, 0.6, 0.9]",
        lambda v: all(0 < d < 1 for d in _drops(v)) and _drops(v) == sorted(set(_drops(v))),
        _drops,
    ),
    checkpoint_every=("a number of seconds, 0 or more", lambda v: float(v) >= 0, float),
    channels_last=("True, False or None (follow the precision)", lambda v: v in (0, 1), bool),
)
NULLABLE = {"epochs", "steps_per_epoch", "eval_images", "patience", "resize", "max_evals"}
NULLABLE |= {"warmup_share", "warmup_epochs", "channels_last"}


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
    """(label, file) of a run's ImageNet weights: a version ("V1", "V2") or one's own file,
    labelled "custom: <file name> (sha256 <hash prefix>)". From scratch: (None, None)."""
    if not pretrained:
        return None, None
    weights = str(weights or "V1")
    if weights.startswith(models.CUSTOM) and not path:  # a saved configuration's label
        raise ConfigError(f"weights {weights!r} need their file: set weights_path")
    if weights in models.VERSIONS:
        version = models.weights_version(model, weights)
        if not path or Path(path).name == models.weights_file(model, version):
            return version, path
    elif not weights.startswith(models.CUSTOM):  # the path of one's own state dict
        path = str(REPO / Path(weights).expanduser())
        if not Path(path).is_file():
            raise ConfigError(
                f"weights {weights!r} is neither {' nor '.join(models.VERSIONS)} nor a file: "
                "give a version or the path of an ImageNet state dict"
            )
    return models.custom_label(path), path


def train_images(fraction: float, val_size: Any = None) -> int:
    """About how many training images a fraction leaves (CIFAR-10's 50,000 less validation)."""
    try:
        held = int(val_size) if val_size not in (None, LIFT) else VAL_SIZE
    except (TypeError, ValueError):
        held = VAL_SIZE  # make_config's own check reports a bad val_size
    return round(fraction * (TRAIN_SPLIT - held))


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
    """The run's epochs under its `budget`: 'sqrt' scales the epochs at 100% by 1 / sqrt(f)
    unless the recipe caps steps per epoch (`capped`); 'bit' gives BiT's steps as epochs."""
    if values["budget"] == "bit":
        images = train_images(fraction, values.get("val_size"))
        steps = BIT_STEPS["few"] if images < BIT_STEPS["below"] else BIT_STEPS["many"]
        per_epoch = max(1, images // values["batch_size"])
        return math.ceil(steps / min(per_epoch, values["steps_per_epoch"] or per_epoch))
    return values["epochs"] if capped else max(1, round(values["epochs"] / math.sqrt(fraction)))


def make_config(
    model: str = "resnet18",
    data_fraction: float | str = 1.0,
    pretrained: bool = False,
    seed: int = 0,
    profile: str | None = None,
    **overrides: Any,
) -> RunConfig:
    """The run's recipe column with `overrides` (None keeps a value, LIFT sets None), validated.
    Profile None: full on a GPU, else quick. Relative paths are relative to the repository."""
    models.check_model(model)
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
    given = {k: None if v == LIFT else v for k, v in overrides.items() if v is not None}
    for one, other in (("warmup_epochs", "warmup_share"), ("warmup_share", "warmup_epochs")):
        if given.get(one) is not None and other not in given:  # one warm-up replaces the other
            values[other] = None
    values.update(given)
    for name in ("data_dir", "output_dir", "weights_path"):
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
    return RunConfig(model, fraction, bool(pretrained), seed, profile, **values)


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
    where = dict.fromkeys(["model", "data_fraction", "pretrained", "seed", "profile"], "asked")
    where |= dict.fromkeys(RECIPES, recipe) | dict.fromkeys(SHARED, "SHARED (every run)")
    if cfg.budget == "bit":
        where["epochs"] = f"{recipe}, budget bit: BiT's steps as whole epochs"
    else:
        where["epochs"] = f"{recipe}: {RECIPES['epochs'][column]} at 100%, / sqrt(fraction)"
    where |= dict.fromkeys(sets, "--set")
    names = unmeasured(model, setting, profile)[0]
    return [
        (name, value, where.get(name, "RunConfig") + ", unmeasured for it" * (name in names))
        for name, value in cfg.to_dict().items()
    ]


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
    print("each recipe's sources and measurements: docs/recipes.md, a section per recipe")


if __name__ == "__main__":
    try:
        main()
    except UserError as error:
        raise SystemExit(f"error: {error}") from None
