"""common.image_folder on a tiny image folder that the tests draw (PNG and JPEG, every class):
the layout, its order and pixels, the .tar.gz form, and one-line refusals."""

from __future__ import annotations

import pickle
import runpy
import shutil
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from common.data import FOLDER, load_cifar10
from common.errors import DataError
from common.image_folder import CLASSES, main

TRAIN_NAMES = ("0.png", "1.png", "2.jpg", "10.png")  # 10 after 2: numbers by value
TEST_NAMES = ("0000.png", "0001.jpg")


def pixels(seed: int) -> np.ndarray:
    """A 32x32 RGB image, HWC uint8, different for every seed."""
    return np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype=np.uint8)


def draw_folder(root: Path) -> Path:
    """train/<class>/ and test/<class>/ with a few images each; the seed of an image is its
    split, class and position, so its pixels can be drawn again."""
    for split, names in (("train", TRAIN_NAMES), ("test", TEST_NAMES)):
        for c, cls in enumerate(CLASSES):
            (root / split / cls).mkdir(parents=True)
            for i, name in enumerate(names):
                Image.fromarray(pixels(seed(split, c, i))).save(root / split / cls / name)
    (root / "README.md").write_text("an image-folder copy\n")
    return root


def seed(split: str, label: int, position: int) -> int:
    return 1000 * (split == "test") + 10 * label + position


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return draw_folder(tmp_path / "CIFAR-10-images")


def batch(out: Path, name: str) -> dict:
    with open(out / FOLDER / name, "rb") as f:
        return pickle.load(f)


def test_the_layout_holds_every_image_in_order_and_loads(folder, tmp_path):
    line = main([str(folder), str(tmp_path / "out")])
    assert line.endswith(f"{len(TRAIN_NAMES) * 10} training and {len(TEST_NAMES) * 10} test images")
    data = load_cifar10(tmp_path / "out", download=False)  # the project's own loader reads it
    assert data.train_x.shape == (40, 3, 32, 32) and data.test_x.shape == (20, 3, 32, 32)
    # image k of every class in class order, then image k + 1: labels 0..9, 0..9, ...
    assert data.train_y.tolist() == list(range(10)) * len(TRAIN_NAMES)
    assert data.test_y.tolist() == list(range(10)) * len(TEST_NAMES)
    # PNGs keep their pixels, in CIFAR's channel-major order; position 3 is 10.png
    for row, (label, position) in ((0, (0, 0)), (13, (3, 1)), (39, (9, 3))):
        expected = pixels(seed("train", label, position)).transpose(2, 0, 1)
        assert np.array_equal(data.train_x[row].numpy(), expected), row
    # JPEGs hold their decoded pixels: 2.jpg of class 4 is at position 2
    decoded = np.asarray(Image.open(folder / "train" / "deer" / "2.jpg").convert("RGB"))
    assert np.array_equal(data.train_x[2 * 10 + 4].numpy(), decoded.transpose(2, 0, 1))
    sizes = [len(batch(tmp_path / "out", f"data_batch_{i}")["labels"]) for i in range(1, 6)]
    assert sizes == [8] * 5
    assert batch(tmp_path / "out", "batches.meta")["label_names"] == list(CLASSES)
    names = batch(tmp_path / "out", "data_batch_1")["filenames"]
    assert names[:2] == ["airplane/0.png", "automobile/0.png"]


def test_a_tar_gz_gives_the_same_files_as_the_folder(folder, tmp_path):
    main([str(folder), str(tmp_path / "from-folder")])
    archive = tmp_path / "copy.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:  # the folder one level down, as GitHub packs it
        tar.add(folder, arcname="CIFAR-10-images-master")
    main([str(archive), str(tmp_path / "from-tar")])
    for name in (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"):
        a = (tmp_path / "from-folder" / FOLDER / name).read_bytes()
        assert a == (tmp_path / "from-tar" / FOLDER / name).read_bytes(), name


def refusal(src: Path, out: Path) -> str:
    with pytest.raises(DataError) as e:
        main([str(src), str(out)])
    assert "\n" not in str(e.value)
    assert not out.exists() or not list(out.glob(f".{FOLDER}.*"))  # no temporary folder left
    return str(e.value)


def test_bad_input_is_refused_in_one_line(folder, tmp_path):
    out = tmp_path / "out"
    (folder / "train" / "cat").rename(folder / "train" / "kitty")
    assert "not CIFAR-10's airplane, automobile" in refusal(folder, out)
    assert "(check kitty)" in refusal(folder, out)
    (folder / "train" / "kitty").rename(folder / "train" / "cat")

    Image.fromarray(np.zeros((28, 28, 3), np.uint8)).save(folder / "test" / "dog" / "9.png")
    assert "test/dog/9.png is 28x28, not 32x32" in refusal(folder, out)
    (folder / "test" / "dog" / "9.png").write_bytes(b"not an image")
    assert "test/dog/9.png is not a readable image" in refusal(folder, out)
    (folder / "test" / "dog" / "9.png").unlink()

    for name in TEST_NAMES:  # a class without images
        (folder / "test" / "frog" / name).unlink()
    assert "(check frog)" in refusal(folder, out)
    shutil.rmtree(folder / "test")  # no test split at all
    assert "no folder holding both train/<class>/ and test/<class>/" in refusal(folder, out)

    (tmp_path / "junk.tar.gz").write_bytes(b"not an archive")
    assert "cannot read" in refusal(tmp_path / "junk.tar.gz", out)
    assert "does not exist" in refusal(tmp_path / "nowhere", out)
    assert not (out / FOLDER).exists()


def test_an_existing_layout_is_never_overwritten(folder, tmp_path):
    (tmp_path / "out" / FOLDER).mkdir(parents=True)
    (tmp_path / "out" / "kept").touch()
    assert "already exists: remove it first" in refusal(folder, tmp_path / "out")
    assert not list((tmp_path / "out" / FOLDER).iterdir())


@pytest.mark.filterwarnings("ignore:'common.image_folder' found in sys.modules")
def test_the_command_exits_with_one_line_on_error(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["image_folder", str(tmp_path / "no"), str(tmp_path)])
    with pytest.raises(SystemExit) as e:
        runpy.run_module("common.image_folder", run_name="__main__")
    assert str(e.value.code).startswith("image_folder: error: ") and "\n" not in str(e.value)
