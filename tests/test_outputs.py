"""What a report leaves behind: the summary and README sections made end to end from run folders,
the committed report reproduced, files readable as the umask allows, the data a run read."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from common.config import make_config
from common.files import write_json, write_text
from common.report import (
    HEADLINE_END,
    HEADLINE_START,
    README_END,
    README_START,
    Call,
    make_metrics,
    write_report,
)
from tests.conftest import REPO, fake_result
from tests.test_results import COMMITTED, record


def write_runs(out: Path, runs: list[dict]) -> Path:
    for i, m in enumerate(runs):
        write_json(out / m["setting"] / f"run{i}" / "metrics.json", m)
    return out


def readme(tmp_path: Path) -> Path:
    path = tmp_path / "README.md"
    path.write_text(f"# t\n{HEADLINE_START}\n{HEADLINE_END}\n{README_START}\n{README_END}\n")
    return path


def test_a_full_report_answers_first_and_keeps_apart_what_differs(tmp_path):
    runs = [
        record(f, s, 0.6 + f / 5 + s / 100, m)
        for m in ("resnet18", "resnet50")
        for f in (1 / 16, 0.5, 1.0)
        for s in (0, 1)
    ]
    runs += [record(1.0, s, 0.2, lr=0.01, when=-1) for s in (0, 2)]  # an older configuration
    runs += [
        record(1.0, 0, 0.9, "resnet50", pretrained=True, weights=w, when=i)
        for i, w in enumerate(("V1", "V2"))
    ]
    failed = {("scratch", "resnet50", 0.5): {2: "TrainingError: diverged"}}
    (tmp_path / "i" / "scaling").mkdir(parents=True)
    (tmp_path / "i" / "scaling" / "error_vs_data.png").write_bytes(b"\x89PNG")  # left earlier
    call = Call("python run_all.py", failed=failed, figures=[])
    out = write_runs(tmp_path / "runs", runs)
    summary = write_report(out, tmp_path / "i", tmp_path / "r", readme(tmp_path), "full", call)
    summary = summary.read_text()
    text = (tmp_path / "README.md").read_text()
    head = text.split(HEADLINE_START)[1].split(HEADLINE_END)[0]
    assert "| ResNet-50 | 100% | 80.50 ± 0.71 (n=2) | 90.00 (n=1) (ImageNet V2) |" in head
    assert "| 90.00 (n=1) (ImageNet V1) |" in head  # never pooled with V2
    section = text.split(README_START)[1]
    assert (
        section.index("### Curves")
        < section.index("### Tested claims")
        < section.index("### Not tested")
    )
    assert "](i/from-scratch/resnet18_acc_50.png)" in section and "_loss_" not in section
    assert "| ResNet-50 − ResNet-18, from scratch, 1/16 (2,812 images) |" in section
    assert "Data: CIFAR-10 from `data/`" in section and str(REPO) not in section
    assert "(n = 2 of 3: seed 2 failed: TrainingError: diverged)" in summary
    assert (
        "| scratch (lr=0.01) |" in summary
        and "2 runs of 1 other configuration (lr=0.01)" in summary
    )
    assert "1 fine-tuned run started from other ImageNet weights" in summary
    assert "error_vs_data.png" not in summary  # drawn by an earlier call, not this one
    assert "depart from their sources: `docs/recipes.md#where-we-depart" in summary
    assert len(list((tmp_path / "i" / "from-scratch").glob("*.png"))) == 12


def test_a_quick_report_says_what_was_trained_and_leaves_full_results_alone(tmp_path):
    full = write_runs(tmp_path / "full", [record()])
    write_report(full, tmp_path / "i", tmp_path / "r", readme(tmp_path), "full", Call("c"))
    committed = (tmp_path / "README.md").read_text()
    cfg = make_config("resnet18", 1.0, profile="quick", output_dir="/nowhere")
    result = dict(fake_result(0.3, epochs=4), train_images=45_000, steps_per_epoch=16)
    quick = write_runs(tmp_path / "quick", [make_metrics(cfg, result)])
    summary = write_report(
        quick, tmp_path / "i2", tmp_path / "r2", tmp_path / "README.md", "quick", Call("c")
    ).read_text()
    assert (tmp_path / "README.md").read_text() == committed
    seen = f"{4 * 16 * cfg.batch_size:,}"
    assert (
        f"| {seen} seen, drawn from 45,000 |" in summary
        and f"each saw {seen} training images" in summary
    )
    for absent in ("depart from their sources", "Tested claims\n\n|", "Curves over data size"):
        assert absent not in summary


def test_the_committed_runs_give_the_committed_summary_table(tmp_path):
    summary = write_report(COMMITTED, tmp_path / "i", tmp_path / "r", None, "full", Call("c"))
    rows = lambda text: [line for line in text.splitlines() if line.startswith("| ResNet")]  # noqa: E731
    assert rows(summary.read_text())[:6] == rows((REPO / "results/summary.md").read_text())[:6]


def test_atomic_writes_honour_the_umask(tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    write_text(tmp_path / "summary.md", "x")
    assert (tmp_path / "summary.md").stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_run_records_which_data_it_read(tmp_path, fake_data, monkeypatch):
    from torchvision.datasets import CIFAR10

    from common import data

    cfg = make_config(profile="quick", data_dir=str(fake_data), output_dir=str(tmp_path / "r"))
    assert make_metrics(cfg, fake_result())["data"] == "re-encoded"  # checksums differ
    folder = fake_data / "cifar-10-batches-py"
    md5 = {n: hashlib.md5((folder / n).read_bytes()).hexdigest() for n in os.listdir(folder)}
    monkeypatch.setattr(
        CIFAR10, "train_list", [[f"data_batch_{i}", md5[f"data_batch_{i}"]] for i in range(1, 6)]
    )
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", md5["test_batch"]]])
    assert data.data_origin(fake_data) == "original"
    assert data.data_origin(tmp_path / "nothing") == "unknown"
