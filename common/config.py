"""The recipe table, RunConfig, make_config, and `python -m common.config --show MODEL SETTING
FRACTION`, which prints a run's values and their sources. Evidence: docs/recipes.md."""

from __future__ import annotations

import argparse
import ast
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from . import models
from .data import SIDE, fraction_label, parse_fraction
from .errors import ConfigError, one_line_exit
from .files import file_hash
from .training import PRECISIONS, cuda_usable

REPO = Path(__file__).resolve().parent.parent
PROFILES = ("full", "quick")
SETTINGS = ("scratch", "pretrained")
VAL_SIZE = 5000  # validation images held out of CIFAR-10's 50,000 training images
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

# One column per (profile, setting, data regime); `--set` and notebooks override it per run
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
    # at 100% of the data; the pretrained budget is ours, not BiT's: docs/recipes.md
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
# Models that train with another model's recipe: (that model, why); docs/recipes.md explains
SAME_RECIPE: dict[str, tuple[str, str]] = {
    "resnet34": ("resnet18", "the same basic (two 3x3 convolution) blocks, more of them"),
    "resnet101": ("resnet50", "the same bottleneck blocks, more of them in the third stage"),
    "resnet152": ("resnet50", "the same bottleneck blocks, more of them in stages two and three"),
    "resnext50_32x4d": ("resnet50", "the same depth and stages, grouped 3x3 convolutions"),
}


def recipe_model(model: str) -> str:
    """The model whose recipe `model` trains with: its own, or the one SAME_RECIPE names."""
    return SAME_RECIPE[model][0] if model in SAME_RECIPE else model


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines one run; the fields with a default are every recipe's."""

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
    precision: str = "auto"  # by the device's capability (common/training.py)
    channels_last: bool | None = None  # None: on with bf16/fp16, off with fp32
    checkpoint_every: float = 300.0  # seconds a kill may lose; a checkpoint each epoch filled disks
    max_evals: int = 50  # validation passes per run, at most
    eval_share: float = 0.5  # validation images per training image, at most

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
    """KEY=VALUE overrides (`--set lr=0.4`): Python literals, else text; None lifts a value."""
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


# (what a value must be, its test, the type it is kept as); None passes where RunConfig allows it
Rule = tuple[str, Callable[[Any], bool], Callable[[Any], Any]]
_WHOLE: Rule = ("a positive whole number", lambda v: v > 0 and v == int(v), int)
_DROPS = "increasing shares of the run in (0, 1), e.g. [0.3, 0.6, 0.9]"
_SIZE = f"a whole number of px, not below the {models.MIN_IMAGE_SIZE} px these models accept"
_WHOLES = "batch_size epochs steps_per_epoch eval_images patience resize val_size max_evals"
RULES: dict[str, Rule] = dict.fromkeys(_WHOLES.split(), _WHOLE) | dict(
    image_size=(_SIZE, lambda v: v >= models.MIN_IMAGE_SIZE and v == int(v), int),
    seed=("a whole number, 0 or more", lambda v: float(v) == int(v) >= 0, int),
    lr=("a positive number", lambda v: v > 0, float),
    eval_share=("a positive number", lambda v: v > 0, float),
    cutout=(f"a side in px from 0 (off) to {SIDE}", lambda v: v == int(v) and 0 <= v <= SIDE, int),
    mixup=("0 (off) or a positive alpha such as 0.1", lambda v: v >= 0, float),
    warmup_share=("a number from 0 up to (not including) 1", lambda v: 0 <= v < 1, float),
    warmup_epochs=("a number 0 or more", lambda v: 0 <= v < math.inf, float),
    lr_start_factor=("a multiple of the peak in [0, 1]", lambda v: 0 <= v <= 1, float),
    lr_drops=(_DROPS, lambda v: all(0 < d < 1 for d in v) and list(v) == sorted(set(v)), list),
    checkpoint_every=("a number of seconds, 0 or more", lambda v: v >= 0, float),
    channels_last=("True, False or None (follow the precision)", lambda v: v in (0, 1), bool),
)
# "bit" budgets compute their epochs; _check refuses None epochs under any other budget
NULLABLE = {f.name for f in fields(RunConfig) if "None" in str(f.type)} | {"epochs"}


def _check(values: dict[str, Any], pretrained: bool) -> None:
    """Validate (in place) a run's values: numbers, choices, warm-up, sizes, stem, schedule."""
    if values["epochs"] is None and values["budget"] != "bit":
        raise ConfigError(f"budget {values['budget']!r} needs epochs (at 100% of the data)")
    if (values["warmup_epochs"] is None) == (values["warmup_share"] is None):
        raise ConfigError("set exactly one of warmup_epochs and warmup_share (lift one: 'none')")
    for name, (what, ok, kind) in RULES.items():
        if name not in values or (values[name] is None and name in NULLABLE):
            continue
        try:
            good = ok(values[name])
        except (TypeError, ValueError, OverflowError):
            good = False
        if not good:
            raise ConfigError(f"{name} must be {what}, got {values[name]!r}")
        values[name] = kind(values[name])
    for name, allowed in CHOICES.items():
        if (value := values.get(name, allowed[0])) not in allowed:
            raise ConfigError(f"unknown {name} {value!r}: choose one of {', '.join(allowed)}")
    if (resize := values["resize"]) is not None and resize < (size := values["image_size"]):
        raise ConfigError(f"resize {resize} is below image_size {size}: set it to {size} or more")
    if pretrained and values["stem"] != "imagenet":
        raise ConfigError("pretrained models keep the ImageNet stem: drop stem='cifar'")
    if values["schedule"] == "steps" and not values["lr_drops"]:
        raise ConfigError("schedule 'steps' needs lr_drops, e.g. lr_drops=[0.3, 0.6, 0.9]")


def resolve_weights(
    model: str, pretrained: bool, weights: str | None, path: str | None
) -> tuple[str | None, str | None]:
    """(label, file) of a run's ImageNet weights: a version, or one's own file as models.CUSTOM."""
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
            raise ConfigError(f"weights {weights!r} is not {'/'.join(models.VERSIONS)} nor a file")
    try:  # by name and content hash, so that two files of one name never pool
        digest = f"sha256 {file_hash(path, 'sha256')[:8]}"  # enough to tell files apart
    except OSError:
        digest = "file not found"
    return f"{models.CUSTOM}{Path(path).name} ({digest})", path


def train_images(fraction: float, val_size: Any = VAL_SIZE) -> int:
    """About how many training images a fraction leaves (CIFAR-10's 50,000 less validation)."""
    held = val_size if isinstance(val_size, int | float) else VAL_SIZE  # _check refuses others
    return round(fraction * (50_000 - held))


def recipe_column(profile: str, setting: str, fraction: float, val_size: Any = VAL_SIZE) -> int:
    """The index in COLUMNS of the recipe a run trains with."""
    few = train_images(fraction, val_size) < BIT_STEPS["below"]
    regime = "under 20,000 images" if few else "from 20,000 images"
    return [c[:2] == (profile, setting) and c[2] in ("all", regime) for c in COLUMNS].index(True)


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
    if (profile := profile or default_profile()) not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}: choose one of {', '.join(PROFILES)}")
    fraction = parse_fraction(str(data_fraction))
    setting = "pretrained" if pretrained else "scratch"
    if unknown := set(overrides) - {f.name for f in fields(RunConfig)}:
        raise ConfigError(f"unknown parameter(s) {', '.join(sorted(unknown))}: see RunConfig")
    column = recipe_column(profile, setting, fraction, overrides.get("val_size"))
    values = {k: v[column] for k, v in RECIPES.items()}  # _check copies lr_drops
    given = {k: None if v == LIFT else v for k, v in overrides.items() if v is not None}
    for one, other in (("warmup_epochs", "warmup_share"), ("warmup_share", "warmup_epochs")):
        if given.get(one) is not None and other not in given:  # one warm-up replaces the other
            values[other] = None
    values.update(given, seed=seed)
    for name in ("data_dir", "output_dir", "weights_path"):
        if values.get(name):
            values[name] = str(REPO / Path(values[name]).expanduser())
    _check(values, pretrained)
    if values["budget"] == "bit" and "epochs" not in given:  # BiT's steps, as whole epochs
        images = train_images(fraction, values.get("val_size"))
        steps = BIT_STEPS["few"] if images < BIT_STEPS["below"] else BIT_STEPS["many"]
        per_epoch = max(1, images // values["batch_size"])
        values["epochs"] = math.ceil(steps / min(per_epoch, values["steps_per_epoch"] or per_epoch))
    elif RECIPES["steps_per_epoch"][column] is None and "epochs" not in given:  # not capped
        values["epochs"] = max(1, round(values["epochs"] / math.sqrt(fraction)))
    values["weights"], values["weights_path"] = resolve_weights(
        model, pretrained, values.get("weights"), values.get("weights_path")
    )
    if not values.get("output_dir"):
        name = run_name(model, fraction, values["seed"])
        values["output_dir"] = str(REPO / "runs" / setting / name)
    return RunConfig(model, fraction, bool(pretrained), profile=profile, **values)


def unmeasured(model: str, setting: str, profile: str) -> tuple[tuple[str, ...], str]:
    """The recipe values not measured for `model` in (profile, setting), and why it has them."""
    if model in SAME_RECIPE:
        return tuple(RECIPES), f"{recipe_model(model)}'s recipe: {SAME_RECIPE[model][1]}"
    if (profile, setting, model) == ("full", "scratch", "resnet50"):
        why = "airbench's ResNet-18 values: airbench has no ResNet-50 recipe"
        return ("lr", "weight_decay", "epochs"), why
    return (), ""


def main(argv: list[str] | None = None) -> None:
    """`python -m common.config --show MODEL SETTING FRACTION`: a run's values and sources."""
    parser = argparse.ArgumentParser(prog="python -m common.config", description=main.__doc__)
    parser.add_argument("--show", nargs=3, metavar=("MODEL", "SETTING", "FRACTION"), required=True)
    parser.add_argument("--profile", default="full", choices=PROFILES)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    model, setting, fraction = args.show
    profile, sets = args.profile, parse_sets(args.set)
    if setting not in SETTINGS:
        raise ConfigError(f"unknown setting {setting!r}: choose one of {', '.join(SETTINGS)}")
    cfg = make_config(model, fraction, setting == "pretrained", profile=profile, **sets)
    column = recipe_column(profile, setting, cfg.data_fraction, cfg.val_size)
    recipe = "recipe " + " ".join(c for c in COLUMNS[column] if c != "all")
    where = dict.fromkeys(["model", "data_fraction", "pretrained", "seed", "profile"], "asked")
    where |= dict.fromkeys(RECIPES, recipe)
    where["epochs"] = f"{recipe}: {RECIPES['epochs'][column]} at 100%, / sqrt(fraction)"
    if cfg.budget == "bit":
        where["epochs"] = f"{recipe}, budget bit: BiT's steps as whole epochs"
    where |= dict.fromkeys(sets, "--set")
    names, why = unmeasured(model, setting, profile)
    print(f"{model} {setting} {fraction}, profile {profile}:")
    for name, value in cfg.to_dict().items():
        source = where.get(name, "RunConfig") + ", unmeasured for it" * (name in names)
        print(f"  {name:<16} {value!s:<36} {source}")
    if why:
        print(f"unmeasured for {model}: {why}")
    print("each recipe's sources and measurements: docs/recipes.md, a section per recipe")


if __name__ == "__main__":
    with one_line_exit("python -m common.config"):
        main()
