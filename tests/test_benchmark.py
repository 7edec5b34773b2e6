"""The benchmarks on the CPU: the pipeline and the recipe sweep on the fake CIFAR-10 (tables,
resume, one-line errors), throughput's FLOPs and peaks, and the plan's commands, budget and pack."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from benchmarks import machine, pipeline, plan, recipe_sweep, throughput
from common.models import build_model
from common.runner import State


def table_rows(text: str, first_cell: str) -> list[list[str]]:
    return [
        [c.strip() for c in line.split("|")[1:-1]]
        for line in text.splitlines()
        if line.startswith(f"| {first_cell}")
    ]


def test_both_pipelines_are_measured(tmp_path: Path, fake_data: Path) -> None:
    out = tmp_path / "pipeline.md"
    args = ["--device", "cpu", "--data-dir", str(fake_data), "--models", "resnet18", "--stem",
            "imagenet", "--steps", "2", "--warmup", "1", "--batch-size", "8", "--workers", "0",
            "--out", str(out)]  # fmt: skip
    pipeline.main(args)
    (ours, usual) = table_rows(out.read_text(), "resnet18")
    assert [ours[1], usual[1]] == ["ours", "usual"]
    assert float(ours[2]) > 0 and 0 <= float(ours[3]) <= 100 and float(usual[2]) > 0
    assert float(ours[4]) == pytest.approx(float(ours[2]) / float(usual[2]), rel=0.05)


def test_recipe_sweep_scores_on_validation_over_seeds_and_resumes(
    tmp_path: Path, fake_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = "scratch epochs=1 steps_per_epoch=1 batch_size=4 val_size=40 precision=fp32 lr=1 cutout=8"
    args = ["--data-dir", str(fake_data), "--fraction", "1", "--seeds", "0,1", "--name", "t",
            "--out-dir", str(tmp_path), "--eval-images", "none", "--run", run]  # fmt: skip
    text = recipe_sweep.main(args)
    ((_, seeds, _, per_seed, images, _),) = table_rows(text, "scratch epochs=1")
    assert (seeds, len(per_seed.split(", ")), images) == ("2", 2, "4")  # an accuracy per seed
    assert "40 fixed validation images" in text and "shows no test accuracy" in text
    (folder,) = tmp_path.glob("t-cpu-*/")  # named by the machine: a CPU here
    records = [json.loads(f.read_text()) for f in folder.glob("*/seed*/metrics.json")]
    assert sorted(m["seed"] for m in records) == [0, 1]
    assert all((m["config"]["lr"], m["config"]["cutout"]) == (1, 8) for m in records)
    assert (folder.parent / f"{folder.name}.md").read_text() == text
    monkeypatch.setattr(
        "common.runner.train_and_save", lambda *a, **k: pytest.fail("retrained a finished run")
    )
    assert recipe_sweep.main(args) == text  # resumed from the runs' records


@pytest.mark.parametrize(
    "args, message",
    [
        (["--run", "bogus lr=1"], "write 'scratch|pretrained key=value ...'"),
        (["--run", "scratch", "--seeds", "0,x"], "--seeds takes whole numbers"),
    ],
)
def test_recipe_sweep_bad_input_is_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    with pytest.raises(SystemExit) as e:
        recipe_sweep.main(["--name", "x", "--out-dir", str(tmp_path), *args])
    assert message in str(e.value.code) and "\n" not in str(e.value.code)
    assert not any(tmp_path.iterdir())  # nothing trained, nothing written


def test_a_row_per_precision_with_flops_and_the_share_of_a_given_peak(tmp_path: Path) -> None:
    out = tmp_path / "throughput.md"
    throughput.main(
        ["--device", "cpu", "--precision", "fp32,bf16", "--models", "resnet18", "--setting",
         "pretrained", "--image-size", "64", "--batch", "2", "--steps", "1", "--warmup", "1",
         "--peak-tflops", "0.5", "--out", str(out)]
    )  # fmt: skip
    rows = table_rows(out.read_text(), "resnet18")
    assert [r[4] for r in rows] == ["fp32", "bf16 autocast + channels-last"]
    model, x = build_model("resnet18", stem="imagenet", seed=0), torch.randn(2, 3, 64, 64)
    with FlopCounterMode(display=False) as counted:  # a real forward and backward pass
        F.cross_entropy(model(x), torch.zeros(2, dtype=torch.long)).backward()
    for _, stem, px, batch, _, compiled, ips, gflop, tflops, share, _ in rows:
        assert (stem, px, batch, compiled) == ("imagenet", "64", "2", "no")
        # within a few %: the first convolution needs no gradient of its input
        assert float(gflop) * 2e9 == pytest.approx(counted.get_total_flops(), rel=0.05)
        assert float(tflops) == pytest.approx(float(ips) * float(gflop) / 1000, rel=0.05, abs=1e-3)
        assert float(share.rstrip("%")) == pytest.approx(100 * float(tflops) / 0.5, abs=0.15)


def test_peak_table_compile_break_even_and_bad_input(monkeypatch: pytest.MonkeyPatch) -> None:
    gpu = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "NVIDIA H200 NVL")
    nvl = throughput.peak_tflops(gpu, None)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "NVIDIA H200")
    assert throughput.peak_tflops(gpu, None) > nvl  # the NVL card's own, lower, entry
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "Tesla T4")
    with pytest.raises(throughput.ConfigError, match="--peak-tflops"):
        throughput.peak_tflops(gpu, None)
    assert throughput.peak_tflops(torch.device("cpu"), None) is None

    def row(ips: float, first: float, compiled: bool) -> throughput.Row:
        return throughput.Row("resnet18", "cifar", 32, 500, "bf16", compiled, ips, 1e9, first)

    # 10 s more for the first step, 1/100 - 1/200 s saved per image: 2,000 images
    assert throughput.pays_after(row(100, 1, False), row(200, 11, True)) == "2,000 images"
    assert throughput.pays_after(row(100, 1, False), row(90, 11, True)).startswith("never")
    with pytest.raises(SystemExit, match="--steps must be at least 1"):
        throughput.main(["--device", "cpu", "--steps", "0"])


def test_list_and_a_budget_dry_run_start_only_what_fits(tmp_path, capsys):
    args = ["--out", str(tmp_path / "runs"), "--data", str(tmp_path / "data")]
    assert plan.main([*args, "--list"]) == 0
    listed = capsys.readouterr().out
    assert listed.index("fine-tuned ResNet-50") < listed.index("ResNet-18 from scratch")
    assert listed.index("twice its budget") < listed.index("ResNet-152")
    first = float(listed.split()[0])  # the first step's estimate, in seconds
    assert plan.main([*args, "--budget", str(first + 60), "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("would start") and "fine-tuned" not in out[0]  # a command, not why
    assert sum(line.startswith("would start") for line in out) == 1  # the rest exceed 60 s
    (tmp_path / "runs" / "scratch" / "r").mkdir(parents=True)
    (tmp_path / "runs" / "scratch" / "r" / "best.pt").write_text("w")
    (tmp_path / "runs" / "scratch" / "r" / "metrics.json").write_text("{}")
    plan.main([*args, "--pack", str(tmp_path / "p.tar.gz")])
    with tarfile.open(tmp_path / "p.tar.gz") as tar:
        names = tar.getnames()
    assert any(n.endswith("metrics.json") for n in names) and not any(".pt" in n for n in names)


def test_a_sweep_is_done_when_the_runs_its_command_describes_are(tmp_path, capsys, monkeypatch):
    folder = f"check-budget-resnet18-{machine('auto')}"

    def state(cfg):  # only the sweep's runs are done, in the folder recipe_sweep.py writes
        return State.DONE if folder in cfg.output_dir else State.TODO

    monkeypatch.setattr(plan, "state", state)
    plan.main(["--out", str(tmp_path / "runs"), "--data", str(tmp_path / "data"), "--list"])
    listed = capsys.readouterr().out.splitlines()
    marks = [line.split()[0] for line in listed if "twice its budget" in line]
    assert marks[0] == "done" and "done" not in marks[1:]
