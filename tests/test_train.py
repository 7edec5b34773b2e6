"""The training loop: learning, resume with identical results, checkpoints, schedules, early
stopping, divergence and out-of-memory errors, and the full profile's two settings."""

import contextlib
from collections import OrderedDict
from collections.abc import Iterator

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import common.training as train_module
from common.config import make_config
from common.data import CIFAR_MEAN, CIFAR_STD, Batches, load_cifar10
from common.errors import TrainingError
from common.models import build_model
from common.training import (
    BEST,
    LATEST,
    PREVIOUS,
    Arithmetic,
    evaluate,
    lr_factor,
    make_optimizer,
    resume,
    train,
)
from tests.conftest import TINY, write_test_weights

# every setting that draws random numbers or changes the batches, on at once
ALL_ON = dict(cutout=8, pad_mode="reflect", mixup=0.4, tta="flip", head_init="zero")
ALL_ON |= dict(schedule="triangle", warmup_share=0.2, lr_start_factor=0.2)  # airbench's


@pytest.fixture(scope="module")
def data(fake_data):
    return load_cifar10(fake_data, download=False)


def config(tmp_path, **kw):
    values = dict(TINY, output_dir=str(tmp_path / "run"), device="cpu") | kw
    return make_config(model="resnet18", data_fraction=1.0, profile="quick", **values)


def tiny_model(seed: int = 0) -> nn.Module:
    """A convolution, batch norm and a 10-class head `fc`: what the loop does to a ResNet, for
    a fraction of its time."""
    torch.manual_seed(seed)
    layers = dict(conv=nn.Conv2d(3, 8, 3, stride=2), bn=nn.BatchNorm2d(8), relu=nn.ReLU())
    layers |= dict(pool=nn.AdaptiveAvgPool2d(1), flat=nn.Flatten(), fc=nn.Linear(8, 10))
    return nn.Sequential(OrderedDict(layers))


def fit(data, cfg, run_dir=None):
    return train(tiny_model(cfg.seed), data, cfg, run_dir, progress=False)


@contextlib.contextmanager
def die_at_evaluation(monkeypatch: pytest.MonkeyPatch, n: int) -> Iterator[None]:
    """A kill (Ctrl-C) at the `n`th validation pass of the run inside."""
    real, calls = train_module.evaluate, []

    def evaluate_then_die(*args: object) -> tuple[float, float]:
        calls.append(1)
        if len(calls) == n:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(train_module, "evaluate", evaluate_then_die)
    with pytest.raises(KeyboardInterrupt):
        yield
    monkeypatch.setattr(train_module, "evaluate", real)


def test_a_few_steps_lower_the_loss(data, tmp_path):
    result = fit(data, config(tmp_path, epochs=4, steps_per_epoch=4, lr=2e-2))
    losses = [h["train_loss"] for h in result["history"]]
    assert losses[-1] < losses[0]
    assert result["train_images"] == 160 and result["val_images"] == 20
    assert 0 <= result["test_acc"] <= 1 and result["test_images"] == 40


# two runs with identical results are reproducible too; the plain settings: test_overheads.py
@pytest.mark.parametrize("settings", [ALL_ON, {"resize": 40, "image_size": 36}])
def test_resume_after_interruption_gives_identical_results(data, tmp_path, monkeypatch, settings):
    cfg = config(tmp_path, epochs=3, **settings)
    reference = fit(data, cfg)
    run_dir = tmp_path / "interrupted"
    with die_at_evaluation(monkeypatch, 2):  # epoch 2's: epoch 1's checkpoint is on disk
        fit(data, cfg, run_dir)
    assert len(resume(run_dir, cfg, {})["history"]) == 1
    resumed = fit(data, cfg, run_dir)
    assert resumed["history"] == reference["history"]
    assert resumed["test_acc"] == reference["test_acc"]
    assert (run_dir / BEST).exists()


def test_a_corrupt_checkpoint_falls_back_and_other_settings_start_over(data, tmp_path):
    cfg = config(tmp_path, epochs=2)
    run_dir = tmp_path / "run"
    fit(data, cfg, run_dir)
    assert resume(run_dir, config(tmp_path, epochs=3), {})["history"] == []
    (run_dir / LATEST).write_bytes((run_dir / LATEST).read_bytes()[:100])  # truncated
    assert len(resume(run_dir, cfg, {})["history"]) == 1  # the previous one
    (run_dir / PREVIOUS).write_bytes(b"")
    assert resume(run_dir, cfg, {})["history"] == []  # start over


def test_divergence_ends_the_run_with_a_clear_message(data, tmp_path):
    with pytest.raises(TrainingError, match="diverged, lower lr"):
        fit(data, config(tmp_path, optimizer="sgd", lr=1e38, label_smoothing=0.0))


def test_out_of_memory_is_one_line(data, tmp_path, monkeypatch):
    def no_memory(*args):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(train_module, "evaluate", no_memory)
    with pytest.raises(TrainingError, match="out of GPU memory with batch_size 16 at image_size"):
        fit(data, config(tmp_path))


def test_early_stopping_waits_for_patience(data, tmp_path, monkeypatch):
    accs = iter([0.5, 0.4, 0.3, 0.2, 0.1, 0.9])
    monkeypatch.setattr(train_module, "evaluate", lambda *args: (1.0, next(accs)))
    result = fit(data, config(tmp_path, epochs=6, patience=2))
    assert len(result["history"]) == 3 and result["best_epoch"] == 1


def test_schedule_warms_up_then_decays_to_zero():
    factors = [lr_factor(s, 4, 20, "cosine", 0.0, ()) for s in range(21)]
    assert factors[0] == 0.25 and factors[3] == 1.0
    assert all(a >= b for a, b in zip(factors[3:], factors[4:], strict=False))
    assert factors[20] == pytest.approx(0.0)
    # the linear schedule: the same warm-up, then a straight line down to 0
    linear = [lr_factor(s, 4, 20, "linear", 0.0, ()) for s in range(21)]
    assert linear[:4] == factors[:4] and linear[12] == pytest.approx(0.5)
    assert linear[20] == 0.0 and linear[8] - linear[9] == pytest.approx(1 / 16)


def lrs_over_the_run(tmp_path, steps_per_epoch: int, **settings) -> list[float]:
    """The lr of every step of a run built by make_optimizer, and the one after the last."""
    cfg = config(tmp_path, **settings)
    opt, sched = make_optimizer(torch.nn.Linear(2, 2), cfg, steps_per_epoch)
    lrs = []
    for _ in range(cfg.epochs * steps_per_epoch + 1):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    return lrs


def test_triangle_starts_at_its_factor_peaks_at_its_share_and_ends_at_zero(tmp_path):
    lrs = lrs_over_the_run(
        tmp_path, 10, epochs=5, lr=0.4, schedule="triangle", warmup_share=0.2, lr_start_factor=0.2
    )
    # airbench's train_resnet18_94.py: np.interp(steps, [0, int(0.2 * total), total], [0.2, 1, 0])
    airbench = 0.4 * np.interp(np.arange(51), [0, int(0.2 * 50), 50], [0.2, 1, 0])
    assert lrs == pytest.approx(airbench.tolist())
    assert lrs[0] == pytest.approx(0.08) and max(lrs) == lrs[10] == pytest.approx(0.4)
    assert lrs[-1] == pytest.approx(0.0)


def bit_get_lr(step: int, supports: list[int], base_lr: float) -> float | None:
    """BiT's bit_hyperrule.get_lr, as published, for comparison."""
    if step < supports[0]:
        return base_lr * step / supports[0]
    if step >= supports[-1]:
        return None
    for s in supports[1:]:
        if s < step:
            base_lr /= 10
    return base_lr


def test_step_schedule_drops_as_bit_hyperrule(tmp_path):
    total, supports = 10_000, [500, 3000, 6000, 9000, 10_000]
    lrs = lrs_over_the_run(
        tmp_path, 1000, epochs=10, lr=0.003, schedule="steps", warmup_share=0.05,
        lr_drops=[0.3, 0.6, 0.9],
    )  # fmt: skip
    assert lrs[:total] == pytest.approx([bit_get_lr(s, supports, 0.003) for s in range(total)])
    assert bit_get_lr(total, supports, 0.003) is None  # BiT stops where the run ends


def test_flip_tta_averages_the_logits_of_each_image_and_its_mirror(data):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
    x, y = data.test_x[:40], data.test_y[:40]
    batches = Batches(x, y, 16, train=False, mean=CIFAR_MEAN, std=CIFAR_STD)
    inputs = torch.cat([xb for xb, _ in batches])
    with torch.no_grad():
        logits = 0.5 * model(inputs) + 0.5 * model(inputs.flip(-1))
    expected = (F.cross_entropy(logits, y).item(), (logits.argmax(1) == y).float().mean().item())
    arithmetic = Arithmetic("fp32", False, "cpu")
    assert evaluate(model, batches, arithmetic, "flip") == pytest.approx(expected)
    assert evaluate(model, batches, arithmetic)[0] != pytest.approx(expected[0])


def test_zero_head_starts_training_from_a_zero_classifier(data, tmp_path, monkeypatch):
    heads = []
    real = train_module.make_optimizer

    def watched(model, *args):
        heads.append(model.fc.weight.abs().sum().item() + model.fc.bias.abs().sum().item())
        return real(model, *args)

    monkeypatch.setattr(train_module, "make_optimizer", watched)
    model = tiny_model()
    train(model, data, config(tmp_path, epochs=1, head_init="zero"), progress=False)
    assert heads == [0.0] and model.fc.weight.abs().sum() > 0  # zero at the start, then it learns


def test_both_settings_of_the_full_profile_train_what_the_recipe_says(data, tmp_path):
    # caps on the work, not on the recipe's shape (stem, resize, schedule, augmentation); the
    # fine-tuned crop as small as the scratch run's
    caps = dict(batch_size=4, steps_per_epoch=1, epochs=3, eval_images=20, val_size=40)
    caps |= dict(image_size=32, precision="fp32", device="cpu")
    own = str(write_test_weights("resnet18", tmp_path))
    for pretrained, stem, resize in ((False, "cifar", None), (True, "imagenet", 160)):
        cfg = make_config("resnet18", 1.0, pretrained, profile="full", weights=own, **caps)
        assert (cfg.stem, cfg.resize) == (stem, resize)  # the branches only this profile takes
        model = build_model(cfg.model, pretrained, cfg.stem, cfg.weights_path, weights=cfg.weights)
        result = train(model, data, cfg, progress=False)
        assert len(result["history"]) == cfg.epochs and result["steps_per_epoch"] == 1
        assert all(np.isfinite(h["train_loss"]) for h in result["history"])
