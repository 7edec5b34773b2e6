"""tools.image_folder on a tiny drawn image folder (PNG, JPEG), and both tools' one-line exit."""

from __future__ import annotations

import filecmp
import os
import runpy
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from common.data import FOLDER, load_cifar10
from common.errors import DataError
from tools.image_folder import CLASSES, main

TRAIN_NAMES = ("0.png", "1.png", "2.jpg", "10.png")  # 10 after 2: numbers by value
TEST_NAMES = ("0000.png", "0001.jpg")


def pixels(split: str, label: int, position: int) -> np.ndarray:
    """A 32x32 RGB image, HWC uint8, different for every split, class and position."""
    rng = np.random.default_rng([split == "test", label, position])
    return rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """train/<class>/ and test/<class>/ with a few images each, and a file beside them."""
    root = tmp_path / "CIFAR-10-images"
    for split, names in (("train", TRAIN_NAMES), ("test", TEST_NAMES)):
        for label, cls in enumerate(CLASSES):
            (root / split / cls).mkdir(parents=True)
            for i, name in enumerate(names):
                Image.fromarray(pixels(split, label, i)).save(root / split / cls / name)
    (root / "README.md").write_text("an image-folder copy\n")
    return root


def test_the_layout_holds_every_image_in_order_and_loads(folder, tmp_path):
    line = main([str(folder), str(tmp_path / "out")])
    assert line.endswith(f"{len(TRAIN_NAMES) * 10} training and {len(TEST_NAMES) * 10} test images")
    data = load_cifar10(tmp_path / "out", download=False)  # the project's own loader reads it
    # image k of every class in class order, then image k + 1: labels 0..9, 0..9, ...
    assert data.train_y.tolist() == list(range(10)) * len(TRAIN_NAMES)
    assert data.test_y.tolist() == list(range(10)) * len(TEST_NAMES)
    # PNGs keep their pixels, in CIFAR's channel-major order; position 3 is 10.png
    for row, (label, position) in ((0, (0, 0)), (13, (3, 1)), (39, (9, 3))):
        expected = pixels("train", label, position).transpose(2, 0, 1)
        assert np.array_equal(data.train_x[row].numpy(), expected), row


def test_a_tar_gz_gives_the_same_files_as_the_folder(folder, tmp_path):
    main([str(folder), str(tmp_path / "from-folder")])
    archive = tmp_path / "copy.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:  # the folder one level down, as GitHub packs it
        tar.add(folder, arcname="CIFAR-10-images-master")
    main([str(archive), str(tmp_path / "from-tar")])
    a, b = (tmp_path / where / FOLDER for where in ("from-folder", "from-tar"))
    assert filecmp.cmpfiles(a, b, os.listdir(a), shallow=False)[1:] == ([], [])


def refusal(src: Path, out: Path) -> str:
    with pytest.raises(DataError) as e:
        main([str(src), str(out)])
    assert "\n" not in str(e.value) and not (out / FOLDER).exists()
    return str(e.value)


def test_bad_input_is_refused_in_one_line(folder, tmp_path):
    out = tmp_path / "out"
    (folder / "train" / "cat").rename(folder / "train" / "kitty")
    assert "not CIFAR-10's airplane, automobile, bird, cat" in refusal(folder, out)
    (folder / "train" / "kitty").rename(folder / "train" / "cat")
    Image.fromarray(np.zeros((28, 28, 3), np.uint8)).save(folder / "test" / "dog" / "9.png")
    assert "test/dog/9.png is 28x28, not 32x32" in refusal(folder, out)
    (folder / "test" / "dog" / "9.png").write_bytes(b"not an image")
    assert "test/dog/9.png is not a readable image" in refusal(folder, out)
    for file in (folder / "test" / "frog").iterdir():  # a class without images
        file.unlink()
    assert "(check frog)" in refusal(folder, out)
    (folder / "test").rename(folder / "tests")
    assert "no folder holding both train/<class>/ and test/<class>/" in refusal(folder, out)
    (tmp_path / "junk.tar.gz").write_bytes(b"not an archive")
    assert "cannot read" in refusal(tmp_path / "junk.tar.gz", out)
    (out / FOLDER).mkdir(parents=True)  # an existing layout is never overwritten
    with pytest.raises(DataError, match="already exists: remove it first"):
        main([str(folder), str(out)])
    assert not list((out / FOLDER).iterdir())


@pytest.mark.parametrize("tool", ["image_folder", "keras_weights"])
@pytest.mark.filterwarnings("ignore:'tools.*' found in sys.modules")
def test_a_command_exits_with_one_line_on_error(tool, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", [tool, str(tmp_path / "nowhere"), str(tmp_path / "out")])
    with pytest.raises(SystemExit) as e:
        runpy.run_module(f"tools.{tool}", run_name="__main__")
    line = str(e.value.code)
    assert line.startswith(f"{tool}: error: {tmp_path / 'nowhere'} does not exist")
    assert "\n" not in line
