"""The training loop: learning, reproducibility, checkpoints, resume and divergence."""

import pytest
import torch

import common.training as train_module
from common.checkpoint import BEST, LATEST, PREVIOUS, load_checkpoint
from common.config import make_config
from common.data import load_cifar10
from common.errors import ConfigError, TrainingError
from common.models import build_model
from common.training import lr_factor, train
from tests.conftest import TINY


@pytest.fixture(scope="module")
def data(fake_data):
    return load_cifar10(fake_data, download=False)


def config(tmp_path, **kw):
    values = dict(TINY, output_dir=str(tmp_path / "run"), device="cpu") | kw
    return make_config(model="resnet18", data_fraction=1.0, profile="quick", **values)


def fit(data, cfg, run_dir=None):
    torch.manual_seed(cfg.seed)
    return train(build_model(cfg.model, stem=cfg.stem), data, cfg, run_dir, progress=False)


def test_a_few_steps_lower_the_loss(data, tmp_path):
    cfg = config(tmp_path, epochs=4, steps_per_epoch=4, lr=2e-3)
    result = fit(data, cfg)
    losses = [h["train_loss"] for h in result["history"]]
    assert losses[-1] < losses[0]
    assert result["train_images"] == 160 and result["val_images"] == 20
    assert 0 <= result["test_acc"] <= 1 and result["test_images"] == 40


def test_training_is_reproducible_on_cpu(data, tmp_path):
    a = fit(data, config(tmp_path, seed=1))
    b = fit(data, config(tmp_path, seed=1))
    assert a["history"] == b["history"] and a["test_acc"] == b["test_acc"]


def test_resume_after_interruption_gives_identical_results(data, tmp_path, monkeypatch):
    cfg = config(tmp_path, epochs=3)
    reference = fit(data, cfg)
    run_dir = tmp_path / "interrupted"
    real_evaluate = train_module.evaluate
    calls = {"n": 0}

    def evaluate_then_die(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # validation of epoch 2: epoch 1's checkpoint is on disk
            raise KeyboardInterrupt
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(train_module, "evaluate", evaluate_then_die)
    with pytest.raises(KeyboardInterrupt):
        fit(data, cfg, run_dir)
    assert len(load_checkpoint(run_dir, cfg.training_key())["history"]) == 1
    monkeypatch.setattr(train_module, "evaluate", real_evaluate)
    resumed = fit(data, cfg, run_dir)
    assert resumed["history"] == reference["history"]
    assert resumed["test_acc"] == reference["test_acc"]
    assert (run_dir / BEST).exists()


def test_corrupt_checkpoint_falls_back_to_the_previous_one(data, tmp_path):
    cfg = config(tmp_path, epochs=2)
    run_dir = tmp_path / "run"
    fit(data, cfg, run_dir)
    assert (run_dir / PREVIOUS).exists()
    (run_dir / LATEST).write_bytes((run_dir / LATEST).read_bytes()[:100])  # truncated
    state = load_checkpoint(run_dir, cfg.training_key())
    assert state is not None and len(state["history"]) == 1
    (run_dir / PREVIOUS).write_bytes(b"")
    assert load_checkpoint(run_dir, cfg.training_key()) is None  # start over


def test_checkpoint_of_other_settings_is_not_resumed(data, tmp_path):
    cfg = config(tmp_path, epochs=2)
    fit(data, cfg, tmp_path / "run")
    other = config(tmp_path, epochs=3)
    assert load_checkpoint(tmp_path / "run", other.training_key()) is None


def test_divergence_ends_the_run_with_a_clear_message(data, tmp_path):
    with pytest.raises(TrainingError, match="diverged, lower lr"):
        fit(data, config(tmp_path, optimizer="sgd", lr=1e38, label_smoothing=0.0))


def test_out_of_memory_in_evaluation_is_one_line(data, tmp_path, monkeypatch):
    def no_memory(*args):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(train_module, "evaluate", no_memory)
    with pytest.raises(
        TrainingError, match="out of GPU memory with batch_size 16 at image_size 32"
    ):
        fit(data, config(tmp_path))


def test_early_stopping_stops_after_patience(data, tmp_path, monkeypatch):
    accs = iter([0.5, 0.4, 0.3, 0.2, 0.1, 0.9])
    monkeypatch.setattr(train_module, "evaluate", lambda *args: (1.0, next(accs)))
    result = fit(data, config(tmp_path, epochs=6, patience=2))
    assert len(result["history"]) == 3 and result["best_epoch"] == 1


def test_schedule_warms_up_then_decays_to_zero():
    factors = [lr_factor(s, 4, 20) for s in range(21)]
    assert factors[0] == 0.25 and factors[3] == 1.0
    assert all(a >= b for a, b in zip(factors[3:], factors[4:], strict=False))
    assert factors[20] == pytest.approx(0.0)
    # the triangular schedule: the same warm-up, then a straight line down to 0
    triangle = [lr_factor(s, 4, 20, "linear") for s in range(21)]
    assert triangle[:4] == factors[:4] and triangle[12] == pytest.approx(0.5)
    assert triangle[20] == 0.0 and triangle[8] - triangle[9] == pytest.approx(1 / 16)


def test_cuda_without_gpu_is_refused():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ConfigError, match="no GPU is visible"):
        train_module.resolve_device("cuda")
