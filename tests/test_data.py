"""Loading, splits and augmentation on a synthetic CIFAR-10 in the standard layout."""

import pickle
import tarfile

import numpy as np
import pytest
import torch

from common.data import (
    augment,
    ensure_cifar10,
    epoch_draws,
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


def test_missing_folder_without_network_says_where_to_put_it(tmp_path, no_network):
    with pytest.raises(DataError, match="put the standard 'cifar-10-batches-py' folder"):
        load_cifar10(tmp_path / "nowhere")


def test_malformed_batch_is_reported(tmp_path):
    root = write_fake_cifar(tmp_path)
    with open(root / "cifar-10-batches-py" / "data_batch_2", "wb") as f:
        pickle.dump({"data": np.zeros((5, 100), np.uint8), "labels": [0] * 5}, f)
    with pytest.raises(
        DataError, match=r"data_batch_2: expected uint8 images of shape \(N, 3072\)"
    ):
        load_cifar10(root, download=False)


def test_bad_labels_and_truncated_files_are_reported(tmp_path):
    root = write_fake_cifar(tmp_path)
    folder = root / "cifar-10-batches-py"
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 12]}, f)
    with pytest.raises(DataError, match="one label in 0..9"):
        load_cifar10(root, download=False)
    (folder / "test_batch").write_bytes(b"\x80\x04trunc")
    with pytest.raises(DataError, match="is not a CIFAR-10 batch"):
        load_cifar10(root, download=False)
    (folder / "test_batch").unlink()
    with pytest.raises(DataError, match="incomplete .missing test_batch"):
        load_cifar10(root, download=False)


def _labels(per_class=100):
    return torch.arange(10).repeat(per_class)


def test_splits_are_stratified_nested_disjoint_and_reproducible():
    y = _labels()
    full = make_splits(y, val_size=200, fraction=1.0, seed=3)
    half = make_splits(y, val_size=200, fraction=0.5, seed=3)
    small = make_splits(y, val_size=200, fraction=1 / 16, seed=3)
    assert torch.bincount(y[full.val]).tolist() == [20] * 10  # stratified validation
    assert torch.bincount(y[half.train]).tolist() == [40] * 10  # half of 80 per class
    assert torch.bincount(y[small.train]).tolist() == [5] * 10  # 80 / 16
    assert set(small.train.tolist()) <= set(half.train.tolist()) <= set(full.train.tolist())
    assert not set(full.train.tolist()) & set(full.val.tolist())
    assert len(full.train) + len(full.val) == len(y)
    again = make_splits(y, val_size=200, fraction=0.5, seed=3)
    assert torch.equal(again.train, half.train)


def test_validation_split_ignores_seed_but_training_subset_follows_it():
    y = _labels()
    a, b = make_splits(y, 200, 0.5, seed=0), make_splits(y, 200, 0.5, seed=1)
    assert torch.equal(a.val, b.val)
    assert not torch.equal(a.train, b.train)


def test_fraction_too_small_for_one_image_per_class():
    with pytest.raises(DataError, match="leaves a class with no training image"):
        make_splits(_labels(10), val_size=20, fraction=1 / 64, seed=0)


def test_stratified_subset_is_balanced_and_fixed():
    y = _labels(50)
    idx = stratified_subset(y, 100)
    assert torch.bincount(y[idx]).tolist() == [10] * 10
    assert torch.equal(idx, stratified_subset(y, 100))


def test_augment_crops_and_flips_reproducibly():
    x = torch.arange(2 * 3 * 32 * 32, dtype=torch.float32).view(2, 3, 32, 32)
    a = augment(x, *epoch_draws(2, 2, torch.Generator().manual_seed(0), x.device)[1:])
    b = augment(x, *epoch_draws(2, 2, torch.Generator().manual_seed(0), x.device)[1:])
    assert a.shape == x.shape and torch.equal(a, b)
    # every output row is a (possibly flipped) shifted window of the zero-padded input
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    windows = [padded[0, :, i : i + 32, j : j + 32] for i in range(9) for j in range(9)]
    assert any(torch.equal(a[0], w) or torch.equal(a[0], w.flip(-1)) for w in windows)


@pytest.mark.parametrize(
    ("text", "value", "label", "title"),
    [
        ("1/16", 1 / 16, "1-16", "1/16"),
        ("0.5", 0.5, "50", "50%"),
        ("100%", 1.0, "100", "100%"),
        ("1-32", 1 / 32, "1-32", "1/32"),
        ("0.25", 0.25, "25", "25%"),
        ("1/8", 0.125, "1-8", "1/8"),
    ],
)
def test_fraction_parsing_and_names(text, value, label, title):
    assert parse_fraction(text) == pytest.approx(value)
    assert fraction_label(value) == label and fraction_title(value) == title


@pytest.mark.parametrize("text", ["0", "1.5", "-0.1", "abc", "1/0"])
def test_bad_fractions_are_rejected(text):
    with pytest.raises(DataError):
        parse_fraction(text)


def test_a_failed_download_names_data_dir_and_leaves_no_folder(tmp_path, no_network):
    root = tmp_path / "absent"
    with pytest.raises(DataError, match="could not be downloaded") as e:
        ensure_cifar10(root)
    assert "data_dir" in str(e.value) and "\n" not in str(e.value)
    assert not root.exists()


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
    with pytest.raises(DataError, match="is not CIFAR-10's python archive"):
        ensure_cifar10(broken, download=False)
    assert not (broken / "cifar-10-batches-py").exists()
