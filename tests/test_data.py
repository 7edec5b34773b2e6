"""Loading, splits, batches and augmentation on a synthetic CIFAR-10 in the standard layout."""

import pickle
import tarfile

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from common.data import (
    CIFAR_MEAN,
    CIFAR_STD,
    NUM_CLASSES,
    Batches,
    crop_flip,
    ensure_cifar10,
    fraction_label,
    fraction_title,
    load_cifar10,
    make_splits,
    parse_fraction,
    stratified_subset,
)
from common.errors import DataError
from tests.conftest import write_fake_cifar


def test_loader_reads_standard_layout(fake_data):
    data = load_cifar10(fake_data, download=False)
    assert data.train_x.shape == (200, 3, 32, 32) and data.train_x.dtype == torch.uint8
    assert data.test_x.shape == (60, 3, 32, 32)
    assert sorted(data.train_y.unique().tolist()) == list(range(10))


def test_bad_batches_are_reported_in_one_line(tmp_path):
    folder = write_fake_cifar(tmp_path) / "cifar-10-batches-py"
    for content, message in [
        ({"data": np.zeros((5, 100), np.uint8), "labels": [0] * 5}, r"shape \(N, 3072\)"),
        ({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 12]}, "one label in 0..9"),
        (b"\x80\x04trunc", "is not a CIFAR-10 batch"),
        (None, "incomplete .missing test_batch"),
    ]:
        if content is None:
            (folder / "test_batch").unlink()
        elif isinstance(content, bytes):
            (folder / "test_batch").write_bytes(content)
        else:
            (folder / "test_batch").write_bytes(pickle.dumps(content))
        with pytest.raises(DataError, match=message) as e:
            load_cifar10(tmp_path, download=False)
        assert "\n" not in str(e.value)


def test_a_crafted_batch_is_refused_in_one_line_and_runs_nothing(tmp_path):
    root, marker = write_fake_cifar(tmp_path), tmp_path / "ran"
    payload = f"cos\nsystem\n(S'touch {marker}'\ntR.".encode()  # os.system("touch ...")
    (root / "cifar-10-batches-py" / "data_batch_1").write_bytes(payload)
    with pytest.raises(DataError, match="data_batch_1 is not a CIFAR-10 batch .*os.system") as e:
        load_cifar10(root, download=False)
    assert "\n" not in str(e.value) and not marker.exists()
    pickle.loads(payload)  # the same file, unrestricted: it runs
    assert marker.exists()


def test_a_failed_download_names_data_dir_and_leaves_no_folder(tmp_path, no_network):
    root = tmp_path / "absent"
    with pytest.raises(DataError, match="put the standard 'cifar-10-batches-py' folder") as e:
        ensure_cifar10(root)
    assert "could not be downloaded" in str(e.value) and "data_dir" in str(e.value)
    assert "\n" not in str(e.value) and not root.exists()


def test_the_official_archive_in_the_data_folder_is_unpacked_without_network(tmp_path):
    source = write_fake_cifar(tmp_path / "src")
    offline = tmp_path / "offline"
    offline.mkdir()
    with tarfile.open(offline / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(source / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    assert load_cifar10(offline, download=False).train_x.shape == (200, 3, 32, 32)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "cifar-10-python.tar.gz").write_bytes(b"not an archive")
    with pytest.raises(DataError, match="could not be unpacked from cifar-10-python.tar.gz"):
        ensure_cifar10(broken, download=False)
    assert not (broken / "cifar-10-batches-py").exists()


def test_splits_are_stratified_nested_disjoint_and_follow_the_seed():
    y = torch.arange(10).repeat(100)
    (full, val), (half, half_val), (small, _) = (
        make_splits(y, 200, f, 3) for f in (1, 0.5, 1 / 16)
    )
    assert torch.bincount(y[val]).tolist() == [20] * 10  # stratified validation
    assert torch.bincount(y[half]).tolist() == [40] * 10  # half of 80 per class
    assert torch.bincount(y[small]).tolist() == [5] * 10  # 80 / 16
    assert set(small.tolist()) <= set(half.tolist()) <= set(full.tolist())
    assert not set(full.tolist()) & set(val.tolist()) and len(full) + len(val) == len(y)
    assert torch.equal(make_splits(y, 200, 0.5, seed=3)[0], half)
    other, other_val = make_splits(y, 200, 0.5, seed=4)
    assert torch.equal(other_val, half_val) and torch.equal(val, half_val)
    assert not torch.equal(other, half)
    with pytest.raises(DataError, match="leaves a class with no training image"):
        make_splits(torch.arange(10).repeat(10), val_size=20, fraction=1 / 64, seed=0)
    subset = stratified_subset(y[:500], 100)
    assert torch.bincount(y[subset]).tolist() == [10] * 10
    assert torch.equal(subset, stratified_subset(y[:500], 100))


def _constant_images(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n images, image i filled with the value 20 * (i % 10) + 10 and labelled i % 10."""
    y = torch.arange(n) % NUM_CLASSES
    return (20 * y + 10).to(torch.uint8).view(n, 1, 1, 1).expand(n, 3, 32, 32).clone(), y


def _batches(x, y, bs=10, image_size=32, train=True, seed=0, **aug):
    gen = torch.Generator().manual_seed(seed)
    return Batches(x, y, bs, train, CIFAR_MEAN, CIFAR_STD, image_size, gen, **aug)


def _normalized(x: torch.Tensor) -> torch.Tensor:
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) * 255 for v in (CIFAR_MEAN, CIFAR_STD))
    return (x.float() - mean) / std


def test_crop_and_flip_take_windows_of_the_image_padded_as_pad_mode_says():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    out = crop_flip(x, torch.tensor([0, 2]), torch.tensor([1, 0]), torch.tensor([False, True]), 6)
    assert torch.equal(out[0], x[0, :, 0:6, 1:7])
    assert torch.equal(out[1], x[1, :, 2:8, 0:6].flip(-1))
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8, generator=gen)
    padded = {  # zeros: a black border (a zero pixel, normalized)
        "zeros": _normalized(F.pad(images.float(), (4, 4, 4, 4))),
        "reflect": F.pad(_normalized(images), (4, 4, 4, 4), mode="reflect"),
    }
    for mode, border in padded.items():
        d = _batches(images, torch.arange(40) % 10, bs=40, pad_mode=mode).draws()
        xb, _ = next(iter(_batches(images, torch.arange(40) % 10, bs=40, pad_mode=mode)))
        expected = crop_flip(border[d["order"]], d["dy"], d["dx"], d["flip"], 32)
        assert torch.allclose(xb, expected, atol=1e-5)
        assert d["dy"].max() <= 8 and d["flip"].any() and not d["flip"].all()


def test_cutout_zeroes_one_square_and_leaves_the_other_draws_alone():
    x, y = _constant_images(40)
    # reflect: no black border, so the only zeros (the mean colour) are the square's
    (xb, _), *_ = list(_batches(x, y, bs=40, cutout=12, pad_mode="reflect"))
    assert (next(iter(_batches(x, y, bs=40, pad_mode="reflect")))[0] != 0).all()
    for mask in (xb == 0).all(1):  # zero in every channel: one filled rectangle, the square
        rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        assert mask.sum() == len(rows) * len(cols) and mask[rows][:, cols].all()
        assert 0 < len(rows) <= 12 + 4 and 0 < len(cols) <= 12 + 4  # moved by the translate
    assert torch.equal((xb == 0).any(1), (xb == 0).all(1))
    plain, cut = _batches(x, y, seed=3).draws(), _batches(x, y, seed=3, cutout=8).draws()
    assert all(torch.equal(plain[k], cut[k]) for k in ("order", "dy", "dx", "flip"))
    assert cut["cy"].min() >= 0 and cut["cx"].max() <= 32 - 8


def test_resize_then_crop_trains_on_windows_and_evaluates_resized():
    x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator())
    y, big = torch.arange(4), F.interpolate(_normalized(x), size=48, mode="bilinear")
    d = _batches(x, y, bs=4, image_size=40, resize=48).draws()
    xb, _ = next(iter(_batches(x, y, bs=4, image_size=40, resize=48)))
    expected = crop_flip(big[d["order"]], d["dy"], d["dx"], d["flip"], 40)
    assert torch.allclose(xb, expected, atol=1e-5)
    assert d["dy"].max() <= 48 - 40
    eb, _ = next(iter(_batches(x, y, bs=4, image_size=40, train=False, resize=48)))
    assert torch.allclose(eb, F.interpolate(_normalized(x), size=40, mode="bilinear"), atol=1e-5)


def test_mixup_blends_images_and_targets_alike():
    x, y = _constant_images(40)
    batches = list(_batches(x, y, mixup=0.4, pad_mode="reflect"))
    mean, std = torch.tensor(CIFAR_MEAN) * 255, torch.tensor(CIFAR_STD) * 255
    level = (20 * torch.arange(10) + 10).float()  # class k's pixel value
    blended = 0
    for xb, target in batches:
        assert target.shape == (10, NUM_CLASSES) and torch.allclose(target.sum(1), torch.ones(10))
        assert ((target > 0).sum(1) <= 2).all()  # the image and its partner
        # reflect padding keeps each image constant: its value is the targets' blend of levels
        expected = ((target @ level)[:, None] - mean) / std
        assert torch.allclose(xb.mean((2, 3)), expected, atol=1e-4)
        blended += int((target.max(1).values < 0.99).sum())
    assert blended > 0
    again = list(_batches(x, y, mixup=0.4, pad_mode="reflect"))
    assert all(torch.equal(a[1], b[1]) for a, b in zip(batches, again, strict=True))


def test_fractions_parse_and_read_as_file_labels_and_titles():
    for text, value, label, title in [
        ("1/16", 1 / 16, "1-16", "1/16"),
        ("0.5", 0.5, "50", "50%"),
        ("100%", 1.0, "100", "100%"),
        ("1-32", 1 / 32, "1-32", "1/32"),  # a file label
    ]:
        assert parse_fraction(text) == pytest.approx(value)
        assert fraction_label(value) == label and fraction_title(value) == title
    for text in ["0", "1.5", "-0.1", "abc", "1/0"]:
        with pytest.raises(DataError, match="data fraction"):
            parse_fraction(text)
