"""Loading, splits and augmentation on a synthetic CIFAR-10 in the standard layout."""

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
    Augment,
    Batches,
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

    def draws():
        d = epoch_draws(2, 2, torch.Generator().manual_seed(0), x.device)
        return d.dy, d.dx, d.flip

    a, b = augment(x, *draws()), augment(x, *draws())
    assert a.shape == x.shape and torch.equal(a, b)
    # every output row is a (possibly flipped) shifted window of the zero-padded input
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    windows = [padded[0, :, i : i + 32, j : j + 32] for i in range(9) for j in range(9)]
    assert any(torch.equal(a[0], w) or torch.equal(a[0], w.flip(-1)) for w in windows)


def test_reflect_padding_copies_the_border_and_zeros_fill_it():
    x = torch.rand(1, 3, 32, 32)
    corner = torch.zeros(1, dtype=torch.long)  # the window at the padded copy's top-left
    no_flip = torch.zeros(1, dtype=torch.bool)
    out = augment(x, corner, corner, no_flip, 4, "reflect")
    # padded row 4 - k is the image's row k mirrored at row 0; the image starts at (4, 4)
    for k in range(1, 5):
        assert torch.equal(out[0, :, 4 - k, 4:], x[0, :, k, :28])
        assert torch.equal(out[0, :, 4:, 4 - k], x[0, :, :28, k])
    assert torch.equal(out[0, :, 4:, 4:], x[0, :, :28, :28])
    fill = torch.tensor([-1.0, -2.0, -3.0])
    zeros = augment(x, corner, corner, no_flip, 4, "zeros", fill)
    assert torch.equal(zeros[0, :, :4, :], fill.view(3, 1, 1).expand(3, 4, 32))
    assert torch.equal(zeros[0, :, 4:, 4:], x[0, :, :28, :28])


def _constant_images(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n images, image i filled with the value 20 * (i % 10) + 10 and labelled i % 10."""
    y = torch.arange(n) % NUM_CLASSES
    return (20 * y + 10).to(torch.uint8).view(n, 1, 1, 1).expand(n, 3, 32, 32).clone(), y


def _batches(x, y, aug, bs=10, image_size=32, train=True, seed=0):
    return Batches(
        x,
        y,
        bs,
        train=train,
        mean=CIFAR_MEAN,
        std=CIFAR_STD,
        image_size=image_size,
        gen=torch.Generator().manual_seed(seed),
        aug=aug,
    )


def test_cutout_zeroes_exactly_one_square_of_its_side():
    x, y = _constant_images(40)
    side = 12
    # reflect: no black border, so the only zeros (the mean colour) are the square's
    (xb, _), *_ = list(_batches(x, y, Augment(cutout=side, pad_mode="reflect"), bs=40))
    off = next(iter(_batches(x, y, Augment(pad_mode="reflect"), bs=40)))[0]
    assert (off != 0).all()
    zero = (xb == 0).all(1)  # (N, 32, 32): zero in every channel
    assert torch.equal((xb == 0).any(1), zero)
    for mask in zero:
        rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        # one filled rectangle, a side-px square moved by the translate (reflected at the edge)
        assert mask.sum() == len(rows) * len(cols) and mask[rows][:, cols].all()
        assert 0 < len(rows) <= side + 4 and 0 < len(cols) <= side + 4
    # away from the border the translate keeps the whole square
    assert any(mask.sum() == side * side for mask in zero)


def test_cutout_leaves_the_other_draws_alone_and_is_reproducible():
    gen = torch.Generator().manual_seed(3)
    plain = epoch_draws(50, 40, gen, torch.device("cpu"))
    gen = torch.Generator().manual_seed(3)
    cut = epoch_draws(50, 40, gen, torch.device("cpu"), aug=Augment(cutout=8))
    assert all(torch.equal(getattr(plain, k), getattr(cut, k)) for k in ("order", "dy", "dx"))
    assert plain.corner is None and cut.corner.shape == (2, 40)
    assert cut.corner.min() >= 0 and cut.corner.max() <= 32 - 8
    x, y = _constant_images(20)
    a = [b[0] for b in _batches(x, y, Augment(cutout=8), seed=5)]
    b = [b[0] for b in _batches(x, y, Augment(cutout=8), seed=5)]
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))


def test_resize_then_crop_trains_on_windows_and_evaluates_resized():
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8, generator=gen)
    y = torch.arange(4)
    aug = Augment(resize=48)
    xb, _ = next(iter(_batches(x, y, aug, bs=4, image_size=40)))
    norm = (x.float() - torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1) * 255) / (
        torch.tensor(CIFAR_STD).view(1, 3, 1, 1) * 255
    )
    big = F.interpolate(norm, size=48, mode="bilinear", align_corners=False)
    windows = lambda i: [big[i, :, r : r + 40, c : c + 40] for r in range(9) for c in range(9)]  # noqa: E731
    assert xb.shape == (4, 3, 40, 40)
    # each training image is one of the 40-px windows of some image's 48-px copy, maybe mirrored
    for img in xb:
        assert any(
            torch.allclose(img, w) or torch.allclose(img, w.flip(-1))
            for i in range(4)
            for w in windows(i)
        )
    eb, _ = next(iter(_batches(x, y, aug, bs=4, image_size=40, train=False)))
    assert torch.allclose(eb, F.interpolate(norm, size=40, mode="bilinear", align_corners=False))


def test_mixup_blends_images_and_targets_alike():
    x, y = _constant_images(40)
    batches = list(_batches(x, y, Augment(mixup=0.4, pad_mode="reflect"), bs=10))
    mean = torch.tensor(CIFAR_MEAN) * 255
    std = torch.tensor(CIFAR_STD) * 255
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
    again = list(_batches(x, y, Augment(mixup=0.4, pad_mode="reflect"), bs=10))
    assert all(torch.equal(a[1], b[1]) for a, b in zip(batches, again, strict=True))


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


class _RunsCode:
    """A pickle payload that would create `marker` when loaded by pickle.load."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_a_crafted_batch_is_refused_in_one_line_and_runs_nothing(tmp_path):
    root = write_fake_cifar(tmp_path)
    marker = tmp_path / "ran"
    with open(root / "cifar-10-batches-py" / "data_batch_1", "wb") as f:
        pickle.dump({"data": _RunsCode(marker), "labels": [0]}, f)
    with pytest.raises(DataError) as e:
        load_cifar10(root, download=False)
    assert "data_batch_1 is not a CIFAR-10 batch: it asks to load posix.system" in str(e.value)
    assert "\n" not in str(e.value) and not marker.exists()
    pickle.loads(pickle.dumps(_RunsCode(marker)))  # the same payload, unrestricted: it runs
    assert marker.exists()
