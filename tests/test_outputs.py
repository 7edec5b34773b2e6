"""What a run and a report leave behind: readable files, no stray checkpoints, portable paths,
no silently shrunk or overwritten README, rows that never mix weights or hide a failed seed."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import pytest

from common.config import make_config
from common.files import write_text
from common.readme import HEADLINE_END, HEADLINE_START, README_END, README_START
from common.report import Call, write_report
from common.results import make_metrics, weights_title
from common.run import KEEP_CHECKPOINTS, save_run
from common.rundir import Busy, run_lock
from common.scaling import load_all
from common.training import BEST, LATEST, PREVIOUS
from tests.conftest import REPO, fake_result


def test_atomic_writes_honour_the_umask(tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    write_text(tmp_path / "summary.md", "x")
    assert (tmp_path / "summary.md").stat().st_mode & 0o777 == 0o666 & ~umask


def run_folder(tmp_path: Path, name: str = "run") -> Path:
    folder = tmp_path / name
    folder.mkdir()
    for file in (LATEST, PREVIOUS, BEST):
        (folder / file).write_bytes(b"x")
    return folder


def test_a_notebook_run_keeps_only_best_pt(tmp_path, monkeypatch):
    monkeypatch.delenv(KEEP_CHECKPOINTS, raising=False)
    folder = run_folder(tmp_path)
    save_run(make_config(profile="quick", output_dir=str(folder)), fake_result(epochs=1))
    assert sorted(p.name for p in folder.glob("*.pt")) == [BEST]
    monkeypatch.setenv(KEEP_CHECKPOINTS, "1")  # run_all.py --keep-checkpoints
    kept = run_folder(tmp_path, "kept")
    save_run(make_config(profile="quick", output_dir=str(kept)), fake_result(epochs=1))
    assert (kept / LATEST).exists() and (kept / PREVIOUS).exists()


def report(tmp_path: Path, seeds: int, readme: Path) -> None:
    out = tmp_path / f"runs{seeds}"
    for seed in range(seeds):
        cfg = make_config(seed=seed, profile="quick", output_dir=str(out / "scratch" / f"s{seed}"))
        folder = Path(cfg.output_dir)
        folder.mkdir(parents=True)
        (folder / "metrics.json").write_text(json.dumps(make_metrics(cfg, fake_result(epochs=1))))
    write_report(out, tmp_path / "img", tmp_path / "res", readme, "quick", Call("cmd"))


def test_a_readme_section_with_fewer_runs_says_so(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(f"# t\n{README_START}\n{README_END}\n")
    report(tmp_path, 3, readme)
    assert "<!-- runs: 3 -->" in readme.read_text() and "held" not in capsys.readouterr().out
    report(tmp_path, 1, readme)
    assert "its results section held 3 runs and now shows 1" in capsys.readouterr().out


def write_runs(out: Path, cells: list[tuple], profile: str = "full") -> None:
    """metrics.json files for (setting, model, fraction, seed, acc, weights) tuples."""
    for setting, model, fraction, seed, acc, weights in cells:
        cfg = make_config(
            model=model,
            data_fraction=fraction,
            pretrained=setting == "pretrained",
            seed=seed,
            profile=profile,
            weights=weights,
            weights_path=None if weights in (None, "V1", "V2") else weights,
            output_dir=str(out / setting / f"{model}-{fraction}-{seed}-{Path(str(weights)).name}"),
        )
        metrics = make_metrics(cfg, fake_result(acc))
        Path(cfg.output_dir).mkdir(parents=True)
        (Path(cfg.output_dir) / "metrics.json").write_text(json.dumps(metrics))


def readme_with_markers(tmp_path: Path) -> Path:
    readme = tmp_path / "README.md"
    readme.write_text(f"# t\n{HEADLINE_START}\n{HEADLINE_END}\n{README_START}\n{README_END}\n")
    return readme


def test_committed_metrics_hold_no_absolute_paths(tmp_path):
    inside = make_config(profile="quick", data_dir="data", output_dir="runs/scratch/x")
    outside = make_config(profile="quick", data_dir=str(tmp_path / "d"), output_dir=str(tmp_path))
    for cfg in (inside, outside):
        config = make_metrics(cfg, fake_result())["config"]
        assert not any(Path(config[k]).is_absolute() for k in ("data_dir", "output_dir"))
    assert make_metrics(inside, fake_result())["config"]["data_dir"] == "data"
    assert make_metrics(outside, fake_result())["config"]["data_dir"] == "d"  # beside the run
    for path in (REPO / "results").glob("**/metrics.json"):  # what the repository carries
        assert not re.search(r'"/(work|root|tmp|home)/', path.read_text()), path


def test_runs_from_different_imagenet_weights_never_share_a_headline_row(tmp_path):
    own = tmp_path / "mine.pth"
    own.write_bytes(b"x")
    write_runs(
        tmp_path / "runs",
        [
            ("scratch", "resnet50", 1.0, 0, 0.80, None),
            ("pretrained", "resnet50", 1.0, 0, 0.90, "V1"),
            ("pretrained", "resnet50", 1.0, 0, 0.92, "V2"),
            ("pretrained", "resnet50", 1.0, 0, 0.85, str(own)),
        ],
    )
    readme = readme_with_markers(tmp_path)
    write_report(tmp_path / "runs", tmp_path / "i", tmp_path / "r", readme, "full", Call("c"))
    head = readme.read_text().split(HEADLINE_START)[1].split(HEADLINE_END)[0]
    for number, label in (("90.00", "ImageNet V1"), ("92.00", "ImageNet V2"), ("85.00", "mine")):
        [row] = [line for line in head.splitlines() if f"{number} (" in line]
        assert label in row and "| 80.00 (n=1) |" in row  # each beside the same from-scratch cell
    # the curves and fits draw one set of weights per model: the latest runs', never a pool
    summary = (tmp_path / "r" / "summary.md").read_text()
    assert "2 fine-tuned runs started from other ImageNet weights" in summary
    plotted = load_all(tmp_path / "runs", "full")
    assert len({weights_title(m) for m in plotted if m["pretrained"]}) == 1


def test_a_failed_seed_is_named_in_its_row(tmp_path):
    write_runs(tmp_path / "runs", [("scratch", "resnet18", 1.0, s, 0.5, None) for s in (0, 2)])
    call = Call("c", failed={("scratch", "resnet18", 1.0): {1: "TrainingError: diverged"}})
    summary = write_report(tmp_path / "runs", tmp_path / "i", tmp_path / "r", None, "full", call)
    assert "(n = 2 of 3: seed 1 failed: TrainingError: diverged)" in summary.read_text()


def test_a_quick_call_leaves_the_readmes_full_results_alone(tmp_path, capsys):
    readme = readme_with_markers(tmp_path)
    write_runs(tmp_path / "full", [("scratch", "resnet18", 1.0, 0, 0.9, None)])
    write_report(tmp_path / "full", tmp_path / "i", tmp_path / "r", readme, "full", Call("c"))
    committed = readme.read_text()
    assert "profile `full`" in committed
    write_runs(tmp_path / "quick", [("scratch", "resnet18", 1.0, 0, 0.3, None)], profile="quick")
    summary = write_report(
        tmp_path / "quick", tmp_path / "i2", tmp_path / "r2", readme, "quick", Call("c")
    )
    assert readme.read_text() == committed and "30.00" in summary.read_text()


def test_only_the_scaling_figures_this_call_drew_are_linked(tmp_path):
    write_runs(tmp_path / "runs", [("scratch", "resnet18", 1.0, 0, 0.9, None)])
    scaling = tmp_path / "i" / "scaling"
    scaling.mkdir(parents=True)
    for name in ("error_vs_data", "accuracy_vs_time"):
        (scaling / f"{name}.png").write_bytes(b"\x89PNG")  # left by an earlier call
    readme = readme_with_markers(tmp_path)
    drawn = [scaling / "accuracy_vs_time.png"]
    call = Call("c", figures=drawn)
    write_report(tmp_path / "runs", tmp_path / "i", tmp_path / "r", readme, "full", call)
    text = readme.read_text()
    assert "accuracy_vs_time.png" in text and "error_vs_data.png" not in text


def test_the_summary_says_which_data_the_runs_read(tmp_path, fake_data, monkeypatch):
    from torchvision.datasets import CIFAR10

    from common import data

    cfg = make_config(profile="quick", data_dir=str(fake_data), output_dir=str(tmp_path / "r"))
    assert make_metrics(cfg, fake_result())["data"] == "re-encoded"  # checksums differ
    folder = fake_data / "cifar-10-batches-py"
    md5 = {n: hashlib.md5((folder / n).read_bytes()).hexdigest() for n in os.listdir(folder)}
    batches = [f"data_batch_{i}" for i in range(1, 6)]
    monkeypatch.setattr(CIFAR10, "train_list", [[n, md5[n]] for n in batches])
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", md5["test_batch"]]])
    assert data.data_origin(fake_data) == "original"
    assert data.data_origin(tmp_path / "nothing") == "unknown"


def test_a_run_folder_keeps_no_lock_file_once_released(tmp_path):
    folder = tmp_path / "run"
    with run_lock(folder):
        with pytest.raises(Busy), run_lock(folder):
            pass
        assert (folder / ".lock").exists()
    assert not (folder / ".lock").exists()
    with run_lock(folder):  # and it locks again
        pass


def test_a_run_on_gpu_3_is_labelled_from_its_own_record(tmp_path):
    # its kernel saw GPU 3 alone, as cuda:0: the label must not ask torch about cuda:3
    cfg = make_config(profile="quick", output_dir=str(tmp_path))
    result = dict(fake_result(), device="cuda:3", device_name="NVIDIA H200")
    metrics = make_metrics(cfg, result)
    assert (metrics["device"], metrics["hardware"]) == ("cuda:3", "NVIDIA H200 (GPU)")
