"""CIFAR-10 as uint8 tensors: safe loading, nested stratified splits, batches augmented on the
device, and how a data fraction is written."""

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
from typing import Any, NamedTuple

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
AUG_PAD = 4  # random crops of SIDE px from the image zero-padded by AUG_PAD px each side


class Cifar10(NamedTuple):
    """The two official splits as uint8 images (N, 3, 32, 32) and int64 labels."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor


_RECONSTRUCT = np.zeros(1).__reduce__()[0]  # numpy's array reconstructor, wherever it lives
BATCH_GLOBALS = {"ndarray": np.ndarray, "dtype": np.dtype, "_reconstruct": _RECONSTRUCT}


class _BatchUnpickler(pickle.Unpickler):
    """Loads plain values and numpy arrays only (BATCH_GLOBALS), so a crafted file runs nothing."""

    def find_class(self, module: str, name: str) -> Any:
        if module.split(".")[0] != "numpy" or name not in BATCH_GLOBALS:
            raise pickle.UnpicklingError(f"it asks to load {module}.{name}")
        return BATCH_GLOBALS[name]


def _read_batch(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """One pickled batch's images (N, 3, 32, 32) and labels, checked for CIFAR's shapes."""
    fix = f"re-create {FOLDER}"
    try:
        with open(path, "rb") as f:
            batch = _BatchUnpickler(f, encoding="latin1").load()
        data, labels = np.asarray(batch["data"]), np.asarray(batch["labels"], dtype=np.int64)
    except Exception as e:  # a crafted or truncated file, another format, missing keys
        raise DataError(
            f"{path} is not a CIFAR-10 batch ({type(e).__name__}: {e}); {fix}"
        ) from None
    labels_ok = labels.shape == (len(data),) and ((labels >= 0) & (labels <= 9)).all()
    if data.dtype != np.uint8 or data.shape[1:] != (3072,) or not labels_ok:
        raise DataError(
            f"{path}: expected uint8 images of shape (N, 3072) and one label in 0..9 each, got "
            f"{data.dtype} {data.shape} and labels {labels.shape}; {fix}"
        )
    return torch.from_numpy(data).view(-1, 3, SIDE, SIDE), torch.from_numpy(labels)


def ensure_cifar10(data_dir: str | Path, download: bool = True) -> Path:
    """The standard folder under `data_dir`: found, unpacked from its archive, or downloaded."""
    root = Path(data_dir).expanduser()
    folder, created, why = root / FOLDER, not root.exists(), ""
    if root.is_file():
        raise DataError(f"data_dir {root} is a file: give the folder of {FOLDER}/ or {ARCHIVE}")
    try:
        if not folder.is_dir() and (root / ARCHIVE).is_file():  # unpacked whole or not at all
            why = f"could not be unpacked from {ARCHIVE}"
            with tarfile.open(root / ARCHIVE) as tar, tempfile.TemporaryDirectory(dir=root) as tmp:
                tar.extractall(tmp, filter="data")
                os.replace(Path(tmp) / FOLDER, folder)
        elif not folder.is_dir() and download:
            why = "could not be downloaded"
            from torchvision.datasets import CIFAR10

            CIFAR10(str(root), train=True, download=True)
    except Exception as e:
        if created:  # leave no folder behind that this call made
            shutil.rmtree(root, ignore_errors=True)
        why += f" ({type(e).__name__}: {(str(e) or 'no detail').splitlines()[0]})"
    else:
        missing = [n for n in [*TRAIN_FILES, TEST_FILE] if not (folder / n).is_file()]
        state = "is incomplete" if folder.is_dir() else "is not there"
        why = missing and f"{state} (missing {', '.join(missing)})"
    if why:
        raise DataError(
            f"{folder} {why}: put the standard '{FOLDER}' folder (data_batch_1..5, test_batch) or "
            f"{ARCHIVE} (https://www.cs.toronto.edu/~kriz/cifar.html) in {root}, or point "
            "`data_dir` at its parent"
        )
    return folder


def load_cifar10(data_dir: str | Path, download: bool = True) -> Cifar10:
    """CIFAR-10 from `data_dir`, its pickles read and validated (so a re-encoded copy loads)."""
    folder = ensure_cifar10(data_dir, download)
    parts = [_read_batch(folder / n) for n in TRAIN_FILES]
    train_x, train_y = (torch.cat(p) for p in zip(*parts, strict=True))
    return Cifar10(train_x, train_y, *_read_batch(folder / TEST_FILE))


def data_origin(data_dir: str | Path) -> str:
    """'original' when every file has torchvision's MD5 of the official release, 're-encoded'
    when any differs (not comparable with published accuracies), 'unknown' when one is absent."""
    from torchvision.datasets import CIFAR10

    folder, files = Path(data_dir) / FOLDER, [*CIFAR10.train_list, *CIFAR10.test_list]
    try:
        same = [file_hash(folder / name, "md5") == md5 for name, md5 in files]
    except OSError:
        return "unknown"
    return "original" if all(same) else "re-encoded"


def _per_class(labels: torch.Tensor, total: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Each class's positions in `labels`, and `total` shared out by largest remainders."""
    y = labels.numpy()
    per_class = [np.flatnonzero(y == c) for c in range(NUM_CLASSES)]
    sizes = np.array([len(p) for p in per_class], dtype=float)
    exact = total * sizes / sizes.sum()
    counts = np.floor(exact).astype(int)
    counts[np.argsort(-(exact - counts), kind="stable")[: total - counts.sum()]] += 1
    return per_class, counts


def _positions(parts: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.sort(np.concatenate(parts)))


def make_splits(
    labels: torch.Tensor, val_size: int, fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions of (training, validation) images: a stratified validation split fixed by `val_size`
    alone, a stratified `fraction` of the rest as a per-class prefix of a `seed`'s permutation."""
    if not 0 <= val_size < len(labels):
        raise DataError(f"val_size {val_size} must be in [0, {len(labels)}): pick a smaller one")
    per_class, val_counts = _per_class(labels, val_size)
    val_rng, rng = np.random.default_rng(VAL_SEED), np.random.default_rng(seed)
    share = float(Fraction(fraction).limit_denominator(10_000))
    val, train = [], []
    for idx, n_val in zip(per_class, val_counts, strict=True):
        idx = val_rng.permutation(idx)
        val.append(idx[:n_val])
        rest = rng.permutation(idx[n_val:])
        train.append(rest[: round(share * len(rest))])
    if min(len(t) for t in train) < 1:
        smallest = 1 / min(len(p) - n for p, n in zip(per_class, val_counts, strict=True))
        raise DataError(
            f"data fraction {fraction:g} leaves a class with no training image: "
            f"use at least {smallest:.2g}"
        )
    return _positions(train), _positions(val)


def stratified_subset(labels: torch.Tensor, n: int) -> torch.Tensor:
    """Positions of a fixed, class-stratified subset of `n` of `labels` (all if n >= len)."""
    per_class, counts = _per_class(labels, n)
    rng = np.random.default_rng(VAL_SEED)
    picked = [rng.permutation(p)[:k] for p, k in zip(per_class, counts, strict=True)]
    return _positions(picked)


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Copy to `device` from pinned memory, so the host need not wait (the tests count copies)."""
    return t if device.type == "cpu" else t.pin_memory().to(device, non_blocking=True)


def crop_flip(
    padded: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor, size: int
) -> torch.Tensor:
    """The `size`-px window at (`dy`, `dx`) of each image of `padded`, mirrored where `flip`."""
    span = torch.arange(size, device=padded.device)
    rows = (dy[:, None] + span)[:, :, None]
    cols = torch.where(flip[:, None], dx[:, None] + span.flip(0), dx[:, None] + span)[:, None, :]
    batch = torch.arange(len(padded), device=padded.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)


@dataclass(eq=False)
class Batches:
    """Mini-batches of uint8 images resident on their device, normalized and resized there to
    `image_size`; training batches shuffled and augmented too. `limit` caps a pass's batches."""

    x: torch.Tensor
    y: torch.Tensor
    batch_size: int
    train: bool
    mean: tuple[float, ...]
    std: tuple[float, ...]
    image_size: int = SIDE
    gen: torch.Generator | None = None
    limit: int | None = None
    memory_format: torch.memory_format = torch.contiguous_format
    cutout: int = 0  # side (px) of a square set to the mean colour
    pad_mode: str = "zeros"  # the translate's border: zeros or reflect
    resize: int | None = None  # resize to this side, then crop image_size (no translate)
    mixup: float = 0.0  # alpha of MixUp: targets become class probabilities

    def __post_init__(self) -> None:
        norm = torch.tensor([self.mean, self.std]).view(2, 1, 3, 1, 1) * 255
        self.norm = to_device(norm, self.x.device)
        n, bs = len(self.x), self.batch_size
        full = n // bs if self.train and n >= bs else -(-n // bs)
        self.steps = min(full, self.limit) if self.limit else full

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        draws = self.draws() if self.train else {}
        for i in range(self.steps):
            part = slice(i * self.batch_size, (i + 1) * self.batch_size)
            idx = draws["order"][part] if self.train else part
            xb, yb = self.x[idx].float(), self.y[idx]
            if self.train:
                xb = self.augment(xb, draws, part)
            if self.image_size != xb.shape[-1]:
                xb = F.interpolate(xb, size=self.image_size, mode="bilinear")
            xb = (xb - self.norm[0]) / self.norm[1]
            if self.train and self.mixup:  # BiT's mixup_data: the batch against a permutation
                # the ranks of the batch's random indices: a random permutation of its images
                lam, partner = draws["lam"][i], idx.argsort()
                xb = lam * xb + (1 - lam) * xb[partner]
                onehot = F.one_hot(yb, NUM_CLASSES).float()
                yb = lam * onehot + (1 - lam) * onehot[partner]
            yield xb.contiguous(memory_format=self.memory_format), yb

    def draws(self) -> dict[str, Any]:
        """One epoch's random numbers, drawn from the CPU generator (reproducible on any device)
        and sent to the images' device in one copy; a part that is off draws nothing."""
        gen, used = self.gen, min(len(self.x), self.steps * self.batch_size)
        span = self.resize - self.image_size if self.resize else 2 * AUG_PAD
        parts = {"order": torch.randperm(len(self.x), generator=gen)}
        parts["dy"], parts["dx"] = torch.randint(0, span + 1, (2, used), generator=gen)
        parts["flip"] = (torch.rand(used, generator=gen) < 0.5).long()
        if self.cutout:
            high = SIDE - self.cutout + 1
            parts["cy"], parts["cx"] = torch.randint(0, high, (2, used), generator=gen)
        sent = to_device(torch.cat(list(parts.values())), self.x.device)
        draws = dict(zip(parts, sent.split([p.numel() for p in parts.values()]), strict=True))
        draws["flip"] = draws["flip"].bool()
        if self.mixup:  # a weight per batch, kept on the host; numpy's beta, seeded from `gen`
            seed = int(torch.randint(0, 2**62, (1,), generator=gen))
            lam = np.random.default_rng(seed).beta(self.mixup, self.mixup, self.steps)
            draws["lam"] = lam.tolist()
        return draws

    def augment(self, xb: torch.Tensor, d: dict[str, torch.Tensor], part: slice) -> torch.Tensor:
        """Cutout, then the translate (or BiT's resize and crop) and flip of a training batch."""
        side = xb.shape[-1]
        if self.cutout:  # on the 32-px image, before the translate, as airbench does
            ys = torch.arange(side, device=xb.device)[None, :, None] - d["cy"][part, None, None]
            xs = torch.arange(side, device=xb.device)[None, None, :] - d["cx"][part, None, None]
            square = (ys >= 0) & (ys < self.cutout) & (xs >= 0) & (xs < self.cutout)
            xb = torch.where(square[:, None], self.norm[0], xb)
        if self.resize:
            padded, side = F.interpolate(xb, size=self.resize, mode="bilinear"), self.image_size
        else:  # "zeros": a black border
            mode = "constant" if self.pad_mode == "zeros" else self.pad_mode
            padded = F.pad(xb, (AUG_PAD,) * 4, mode=mode)
        return crop_flip(padded, d["dy"][part], d["dx"][part], d["flip"][part], side)


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
    s = "1/" + s[2:] if s.startswith("1-") else s  # a file label
    try:
        value = float(s[:-1]) / 100 if s.endswith("%") else float(Fraction(s))
    except (ValueError, ZeroDivisionError):
        raise DataError(
            f"cannot read data fraction {text!r}: write it as 1/16, 0.5 or 50%"
        ) from None
    if not 0 < value <= 1:
        raise DataError(f"data fraction {text!r} is outside (0, 1]: pick e.g. 1/16, 0.5 or 1")
    return value
