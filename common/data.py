"""CIFAR-10 as uint8 tensors: loading, nested stratified splits, batched on-device augmentation."""

from __future__ import annotations

import os
import pickle
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .errors import DataError
from .files import file_hash

FOLDER = "cifar-10-batches-py"
ARCHIVE = "cifar-10-python.tar.gz"  # the official download, which holds FOLDER
TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_FILE = "test_batch"
NUM_CLASSES = 10
VAL_SEED = 0  # the validation split is the same for every run, whatever its seed
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SIDE = 32  # CIFAR-10's images are SIDE x SIDE px
AUG_PAD = 4  # random crops of 32 px from the image zero-padded by 4 px each side


@dataclass
class Cifar10:
    """The two official splits as uint8 images (N, 3, 32, 32) and int64 labels."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor


@dataclass
class Splits:
    """Index sets into the official training split; the test split is used whole."""

    train: torch.Tensor
    val: torch.Tensor


# What a CIFAR-10 batch's pickle may load beyond dicts, lists, str, bytes and numbers: numpy
# arrays (the function numpy pickles them with, in whichever module this numpy keeps it).
_RECONSTRUCT = np.zeros(1).__reduce__()[0]
BATCH_GLOBALS = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
}


class _NotABatch(Exception):
    """The pickle asks for something a CIFAR-10 batch does not hold."""


class _BatchUnpickler(pickle.Unpickler):
    """An unpickler that loads only what BATCH_GLOBALS admits, so a crafted file runs nothing."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in BATCH_GLOBALS:
            raise _NotABatch(f"{module}.{name}")
        return BATCH_GLOBALS[(module, name)]


def _read_batch(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """One pickled batch's images (N, 3, 32, 32) and labels, read (only the types the format
    holds) and checked for CIFAR's shapes, dtype and labels."""
    try:
        with open(path, "rb") as f:
            batch = _BatchUnpickler(f, encoding="latin1").load()
        data = np.asarray(batch["data"])
        labels = np.asarray(batch["labels"], dtype=np.int64)
    except _NotABatch as e:
        raise DataError(
            f"{path} is not a CIFAR-10 batch: it asks to load {e}; re-create the {FOLDER} folder"
        ) from None
    except Exception as e:  # truncated file, wrong format, missing keys
        raise DataError(
            f"{path} is not a CIFAR-10 batch ({type(e).__name__}: {e}); "
            f"re-create the {FOLDER} folder"
        ) from None
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(
            f"{path}: expected uint8 images of shape (N, 3072), got {data.dtype} "
            f"{data.shape}; re-create the {FOLDER} folder"
        )
    if labels.shape != (data.shape[0],) or labels.min(initial=0) < 0 or labels.max(initial=0) > 9:
        raise DataError(
            f"{path}: expected one label in 0..9 per image; re-create the {FOLDER} folder"
        )
    return torch.from_numpy(data).view(-1, 3, SIDE, SIDE), torch.from_numpy(labels)


def _download(root: Path) -> None:
    """Fetch the official archive with torchvision; one clear line when that is impossible, and
    no folder left behind that this call created."""
    from torchvision.datasets import CIFAR10

    created = not root.exists()
    try:
        CIFAR10(str(root), train=True, download=True)
    except Exception as e:
        if created:
            shutil.rmtree(root, ignore_errors=True)
        raise DataError(
            f"CIFAR-10 is not in {root / FOLDER} and could not be downloaded "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'no detail'}); "
            f"put the standard '{FOLDER}' folder (data_batch_1..5, test_batch) inside {root} "
            f"or point `data_dir` at its parent"
        ) from None


def _unpack(archive: Path) -> None:
    """Unpack the official archive beside itself (no network: an offline machine's copy); one
    clear line when it is not that archive, and no half-unpacked folder left behind."""
    folder = archive.parent / FOLDER
    try:
        with tarfile.open(archive) as tar, tempfile.TemporaryDirectory(dir=archive.parent) as tmp:
            tar.extractall(tmp, filter="data")
            os.replace(Path(tmp) / FOLDER, folder)
    except (OSError, tarfile.TarError) as e:
        raise DataError(
            f"{archive} is not CIFAR-10's python archive ({type(e).__name__}: {e}): download "
            f"{ARCHIVE} again from https://www.cs.toronto.edu/~kriz/cifar.html"
        ) from None


def ensure_cifar10(data_dir: str | Path, download: bool = True) -> Path:
    """Return the folder holding the standard layout: unpacked from the official archive when
    `data_dir` holds that, else downloaded into `data_dir` if absent (and `download`)."""
    root = Path(data_dir).expanduser()
    folder = root / FOLDER
    if not folder.is_dir():
        if root.is_file():
            raise DataError(
                f"data_dir {root} is a file: give the folder that holds {FOLDER}/ or "
                f"{ARCHIVE} instead"
            )
        if (root / ARCHIVE).is_file():
            _unpack(root / ARCHIVE)
        elif not download:
            raise DataError(
                f"CIFAR-10 is not in {root}: put the '{FOLDER}' folder or {ARCHIVE} there"
            )
        else:
            _download(root)
    missing = [n for n in [*TRAIN_FILES, TEST_FILE] if not (folder / n).is_file()]
    if missing:
        raise DataError(f"{folder} is incomplete (missing {', '.join(missing)}): re-create it")
    return folder


def load_cifar10(data_dir: str | Path, download: bool = True) -> Cifar10:
    """Load CIFAR-10 from `data_dir/cifar-10-batches-py` (the standard python layout).

    Reads the pickles directly and validates them, so a re-encoded copy whose checksums differ
    from the originals is accepted. Downloads with torchvision when the folder is absent.
    """
    folder = ensure_cifar10(data_dir, download)
    parts = [_read_batch(folder / n) for n in TRAIN_FILES]
    train_x, train_y = (torch.cat(p) for p in zip(*parts, strict=True))
    return Cifar10(train_x, train_y, *_read_batch(folder / TEST_FILE))


def data_origin(data_dir: str | Path) -> str:
    """Which CIFAR-10 files a run read: "original" when every file's MD5 matches the one
    torchvision publishes for the official release, "re-encoded" when any differs (a copy
    rebuilt from images, e.g. JPEG: its accuracies are not comparable with published ones),
    "unknown" when a file is missing."""
    from torchvision.datasets import CIFAR10

    folder = Path(data_dir) / FOLDER
    try:
        same = [
            file_hash(folder / name, "md5") == md5
            for name, md5 in [*CIFAR10.train_list, *CIFAR10.test_list]
        ]
    except OSError:
        return "unknown"
    return "original" if all(same) else "re-encoded"


def _class_counts(total: int, weights: np.ndarray) -> np.ndarray:
    """Split `total` over classes in proportion to `weights` (largest remainders)."""
    exact = total * weights / weights.sum()
    counts = np.floor(exact).astype(int)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: total - counts.sum()]] += 1
    return counts


def make_splits(labels: torch.Tensor, val_size: int, fraction: float, seed: int) -> Splits:
    """A fixed stratified validation split, and a stratified `fraction` of the rest.

    The validation set depends only on `val_size` (never on `seed`). The training subset is a
    per-class prefix of a permutation drawn from `seed`, so for one seed a smaller fraction is
    always inside a larger one (nested), and every class keeps its share.
    """
    y = labels.numpy()
    classes = np.arange(NUM_CLASSES)
    per_class = [np.flatnonzero(y == c) for c in classes]
    sizes = np.array([len(p) for p in per_class])
    if not 0 <= val_size < len(y):
        raise DataError(f"val_size {val_size} must be in [0, {len(y)}): pick a smaller one")
    val_counts = _class_counts(val_size, sizes)
    val_rng = np.random.default_rng(VAL_SEED)
    rng = np.random.default_rng(seed)
    val, train = [], []
    for idx, n_val in zip(per_class, val_counts, strict=True):
        idx = val_rng.permutation(idx)
        val.append(idx[:n_val])
        rest = rng.permutation(idx[n_val:])
        n_train = round(float(Fraction(fraction).limit_denominator(10_000)) * len(rest))
        train.append(rest[:n_train])
    if min(len(t) for t in train) < 1:
        smallest = 1 / (sizes - val_counts).min()
        raise DataError(
            f"data fraction {fraction:g} leaves a class with no training image: "
            f"use at least {smallest:.2g}"
        )
    return Splits(
        train=torch.from_numpy(np.sort(np.concatenate(train))),
        val=torch.from_numpy(np.sort(np.concatenate(val))),
    )


def stratified_subset(labels: torch.Tensor, n: int) -> torch.Tensor:
    """Positions of a fixed, class-stratified subset of `n` of `labels` (all if n >= len)."""
    if n >= len(labels):
        return torch.arange(len(labels))
    y = labels.numpy()
    per_class = [np.flatnonzero(y == c) for c in range(NUM_CLASSES)]
    counts = _class_counts(n, np.array([len(p) for p in per_class], dtype=float))
    rng = np.random.default_rng(VAL_SEED)
    picked = [rng.permutation(p)[:k] for p, k in zip(per_class, counts, strict=True)]
    return torch.from_numpy(np.sort(np.concatenate(picked)))


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Copy a host tensor to `device`. Every host-to-device copy of the training path goes
    through here (the tests count them). To an accelerator the copy starts from pinned memory
    and does not block, so the host queues it and goes on instead of waiting for the device."""
    if device.type == "cpu":
        return t
    return t.pin_memory().to(device, non_blocking=True)


def augment(
    x: torch.Tensor,
    dy: torch.Tensor,
    dx: torch.Tensor,
    flip: torch.Tensor,
    pad: int = AUG_PAD,
    mode: str = "zeros",
    fill: torch.Tensor | None = None,
    size: int | None = None,
) -> torch.Tensor:
    """Crop each image of the batch `x` (N, C, H, W) to `size` (default: H) at offset (`dy`,
    `dx`) of its copy padded by `pad` px, and mirror it where `flip`; all on `x`'s device, no
    host transfer. The border: `mode` "zeros" fills it with `fill` (one value per channel;
    default 0), "reflect" mirrors the image at its edge."""
    n, c, h, w = x.shape
    size = size or h
    if pad and mode == "reflect":
        padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    elif pad:
        padded = x.new_zeros(n, c, h + 2 * pad, w + 2 * pad)
        if fill is not None:  # a per-channel border, set exactly (no arithmetic on the image)
            padded[:] = fill.view(1, c, 1, 1)
        padded[:, :, pad : pad + h, pad : pad + w] = x
    else:
        padded = x
    rows = (dy[:, None] + torch.arange(size, device=x.device))[:, None, :, None]
    cols = dx[:, None] + torch.arange(size, device=x.device)
    cols = torch.where(flip[:, None], cols.flip(1), cols)[:, None, None, :]
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chans = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, chans, rows, cols]


def square_masks(corner: torch.Tensor, side: int, h: int, w: int) -> torch.Tensor:
    """(N, 1, h, w) masks, True on the `side` x `side` square whose top-left corner is
    `corner[:, i]` = (row, column) of image i."""
    ys = torch.arange(h, device=corner.device)[None, :, None] - corner[0][:, None, None]
    xs = torch.arange(w, device=corner.device)[None, None, :] - corner[1][:, None, None]
    return ((ys >= 0) & (ys < side) & (xs >= 0) & (xs < side))[:, None]


@dataclass(frozen=True)
class Augment:
    """Training augmentation beyond the crop and flip; each part off by default.

    cutout: side (px) of a square zeroed (after normalisation: the mean colour) at a random
    place of each SIDE-px image, before the translate, as airbench does. pad_mode: the translate's
    border. resize: resize to this side, then crop `image_size` at random, no translate.
    mixup: alpha of MixUp (BiT): each batch blended with a permutation of itself, weight
    lambda ~ Beta(alpha, alpha), the targets blended alike."""

    cutout: int = 0
    pad_mode: str = "zeros"
    resize: int | None = None
    mixup: float = 0.0


@dataclass
class Draws:
    """One epoch's random numbers, on the device: the order of the images, and for the `used`
    first of them crop offsets, flips, cutout corners and MixUp partners and weights."""

    order: torch.Tensor
    dy: torch.Tensor
    dx: torch.Tensor
    flip: torch.Tensor
    corner: torch.Tensor | None = None  # (2, used): cutout squares' top-left (row, column)
    keys: torch.Tensor | None = None  # (used,): sorting a batch's keys gives its MixUp partners
    lam: torch.Tensor | None = None  # (steps,): each batch's MixUp weight


def epoch_draws(
    n: int,
    used: int,
    gen: torch.Generator,
    device: torch.device,
    span: int = 2 * AUG_PAD,
    aug: Augment = Augment(),
    steps: int = 0,
) -> Draws:
    """One epoch's random numbers: the order of `n` images; crop offsets in [0, `span`], flips,
    and the cutout and MixUp draws `aug` asks for, for the `used` first of them (`steps`
    batches). Drawn from the CPU generator `gen` (reproducible and resumable on any device; the
    draws of the parts that are off are skipped, so turning one on leaves the others' draws
    alone) and sent to `device` in one copy."""
    order = torch.randperm(n, generator=gen)
    offsets = torch.randint(0, span + 1, (2, used), generator=gen)
    flip = torch.rand(used, generator=gen) < 0.5
    parts = [order, offsets.flatten(), flip.long()]
    if aug.cutout:
        parts.append(torch.randint(0, SIDE - aug.cutout + 1, (2 * used,), generator=gen))
    if aug.mixup:
        parts.append(torch.randint(0, 2**31, (used,), generator=gen))
        seed = int(torch.randint(0, 2**62, (1,), generator=gen))
        lam = np.random.default_rng(seed).beta(aug.mixup, aug.mixup, steps)
        # bit-cast into the integer copy: one transfer for everything
        parts.append(torch.from_numpy(lam.astype(np.float32)).view(torch.int32).long())
    draws = to_device(torch.cat(parts), device).split([p.numel() for p in parts])
    out = Draws(draws[0], *draws[1].view(2, used), draws[2].bool())
    rest = list(draws[3:])
    if aug.cutout:
        out.corner = rest.pop(0).view(2, used)
    if aug.mixup:
        out.keys, out.lam = rest[0], rest[1].int().view(torch.float32)
    return out


class Batches:
    """Mini-batches from uint8 images resident on the training device.

    Training batches are shuffled and augmented (crop + flip, and what `aug` adds) as whole
    tensors on the device, from random numbers sent there once per epoch; all batches are
    normalized, resized to `image_size` when it is not 32, and laid out in `memory_format`.
    With MixUp a training batch's targets are class probabilities (N, 10), else labels.
    `limit` caps the number of batches per pass (the quick profile). Iterating makes no
    host-device copy but that one.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        *,
        train: bool,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        image_size: int = 32,
        gen: torch.Generator | None = None,
        limit: int | None = None,
        memory_format: torch.memory_format = torch.contiguous_format,
        aug: Augment = Augment(),
    ) -> None:
        self.x, self.y, self.batch_size, self.train = x, y, batch_size, train
        self.gen, self.image_size, self.memory_format = gen, image_size, memory_format
        self.aug = aug
        scale = to_device(torch.tensor([mean, std]).view(2, 1, 3, 1, 1) * 255, x.device)
        self.mean, self.std = scale[0], scale[1]
        self.black = (-self.mean / self.std).flatten()  # a zero pixel, normalized
        full = len(x) // batch_size if train and len(x) >= batch_size else -(-len(x) // batch_size)
        self.steps = min(full, limit) if limit else full

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        bs = self.batch_size
        if self.train:
            used = min(len(self.x), self.steps * bs)
            span = self.aug.resize - self.image_size if self.aug.resize else 2 * AUG_PAD
            draws = epoch_draws(
                len(self.x), used, self.gen, self.x.device, span, self.aug, self.steps
            )
        for i in range(self.steps):
            part = slice(i * bs, (i + 1) * bs)
            if self.train:
                xb, yb = self.train_batch(draws, i, part)
            else:
                xb, yb = self.normalize(self.x[part]), self.y[part]
                if self.image_size != xb.shape[-1]:
                    xb = self.resize(xb, self.image_size)
            yield xb.contiguous(memory_format=self.memory_format), yb

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() - self.mean) / self.std

    @staticmethod
    def resize(x: torch.Tensor, side: int) -> torch.Tensor:
        return F.interpolate(x, size=side, mode="bilinear", align_corners=False)

    def train_batch(self, d: Draws, i: int, part: slice) -> tuple[torch.Tensor, torch.Tensor]:
        """Training batch `i` (positions `part` of the epoch's order), augmented."""
        idx, aug = d.order[part], self.aug
        xb, yb = self.normalize(self.x[idx]), self.y[idx]
        if aug.cutout:  # on the 32-px image, before the translate (airbench)
            xb = xb.masked_fill(square_masks(d.corner[:, part], aug.cutout, *xb.shape[-2:]), 0)
        if aug.resize:  # BiT: resize, then a random crop of image_size, no padding
            xb = self.resize(xb, aug.resize)
            xb = augment(xb, d.dy[part], d.dx[part], d.flip[part], 0, size=self.image_size)
        else:
            xb = augment(
                xb, d.dy[part], d.dx[part], d.flip[part], AUG_PAD, aug.pad_mode, self.black
            )
            if self.image_size != xb.shape[-1]:
                xb = self.resize(xb, self.image_size)
        if aug.mixup:  # BiT's mixup_data: the batch against a permutation of itself
            lam, partner = d.lam[i], d.keys[part].argsort()
            xb = lam * xb + (1 - lam) * xb[partner]
            onehot = F.one_hot(yb, NUM_CLASSES).float()
            yb = lam * onehot + (1 - lam) * onehot[partner]
        return xb, yb


def fraction_label(fraction: float) -> str:
    """The file-name label of a data fraction: 1/16 -> '1-16', 0.5 -> '50', 1.0 -> '100'."""
    percent = fraction * 100
    if abs(percent - round(percent)) < 1e-9:
        return str(round(percent))
    inverse = 1 / fraction
    if abs(inverse - round(inverse)) < 1e-9:
        return f"1-{round(inverse)}"
    return f"{percent:.4g}".replace(".", "p")


def fraction_title(fraction: float) -> str:
    """How a data fraction reads in titles and tables: '1/16', '50%', '100%'."""
    label = fraction_label(fraction)
    return label.replace("-", "/") if label.startswith("1-") else f"{label.replace('p', '.')}%"


def parse_fraction(text: str) -> float:
    """Parse '1/16', '0.5', '50%' or a file label like '1-16' into a fraction in (0, 1]."""
    s = text.strip()
    try:
        if s.endswith("%"):
            value = float(s[:-1]) / 100
        elif "/" in s or (s.startswith("1-") and s[2:].isdigit()):
            num, den = s.replace("-", "/", 1).split("/")
            value = float(num) / float(den)
        else:
            value = float(s)
    except (ValueError, ZeroDivisionError):
        raise DataError(
            f"cannot read data fraction {text!r}: write it as 1/16, 0.5 or 50%"
        ) from None
    if not 0 < value <= 1:
        raise DataError(f"data fraction {text!r} is outside (0, 1]: pick e.g. 1/16, 0.5 or 1")
    return value
