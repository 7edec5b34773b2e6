"""The benchmark scripts on synthetic images: what they report, bad input in one line."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from types import ModuleType

import pytest
import torch


def load_script(name: str) -> ModuleType:
    """A benchmark script's module, as the project installs it: benchmarks.<name>."""
    return importlib.import_module(f"benchmarks.{name}")


def test_both_pipelines_are_measured(tmp_path: Path) -> None:
    out = tmp_path / "pipeline.md"
    load_script("pipeline").main(
        [
            "--synthetic",
            "--device",
            "cpu",
            "--models",
            "resnet18",
            "--steps",
            "2",
            "--warmup",
            "1",
            "--batch-size",
            "8",
            "--workers",
            "1",
            "--image-size",
            "32",
            "--stem",
            "imagenet",
            "--out",
            str(out),
        ]
    )
    text = out.read_text()
    assert "SYNTHETIC" in text and "--synthetic" in text
    rows = {
        cells[2]: cells
        for line in text.splitlines()
        if line.startswith("| resnet18 |")
        for cells in [[c.strip() for c in line.split("|")]]
    }
    assert set(rows) == {"ours", "usual"}
    for cells in rows.values():
        assert cells[3:5] == ["32", "8"]
        assert float(cells[5].replace(",", "")) > 0
        assert 0 <= float(cells[6]) <= 100
    assert float(rows["ours"][7]) > 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["--models", "resnet7"], "unknown model 'resnet7'"),
        (["--steps", "0"], "--steps must be at least 1"),
        pytest.param(
            ["--device", "cuda"],
            "no GPU is visible",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present"),
        ),
    ],
)
def test_bad_input_is_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    with pytest.raises(SystemExit) as e:
        load_script("pipeline").main(["--synthetic", "--out", str(tmp_path / "x.md"), *args])
    assert message in str(e.value.code) and "\n" not in str(e.value.code)
    assert not (tmp_path / "x.md").exists()


def table_rows(text: str, first_cell: str) -> list[list[str]]:
    return [
        [c.strip() for c in line.split("|")[1:-1]]
        for line in text.splitlines()
        if line.startswith(f"| {first_cell}")
    ]


def test_precision_benchmark_measures_both_and_names_the_pick(tmp_path: Path) -> None:
    out = tmp_path / "precision.md"
    load_script("precision").main(
        ["--device", "cpu", "--batch-size", "4", "--steps", "1", "--configs",
         "resnet18:imagenet:32", "--out", str(out)]
    )  # fmt: skip
    text = out.read_text()
    assert "AMD" in text or "Intel" in text or "(CPU)" in text
    ((model, stem, size, fp32, bf16, ratio, pick),) = table_rows(text, "resnet18")
    assert (stem, size) == ("imagenet", "32") and float(fp32) > 0 and float(bf16) > 0
    assert pick == ("bf16" if float(bf16) > float(fp32) else "fp32")


def test_grid_time_predicts_every_run_from_measured_parts(tmp_path: Path) -> None:
    out = tmp_path / "grid.md"
    load_script("grid_time").main(
        ["--device", "cpu", "--settings", "scratch", "--models", "resnet18", "--max-batch", "4",
         "--steps", "1", "--warmup", "1", "--eval-images", "8", "--precision", "fp32",
         "--out", str(out)]
    )  # fmt: skip
    text = out.read_text()
    ((config, batch, arith, train_ips, eval_ips, write_s, size),) = table_rows(text, "ResNet-18")
    assert batch == "4 (500)" and arith == "fp32" and float(train_ips) > 0
    runs = table_rows(text, "scratch ResNet-18")
    assert [r[0].split()[-1] for r in runs] == ["1/16", "50%", "100%"]
    epochs = [int(r[1]) for r in runs]
    assert epochs == [104, 37, 26]  # the full recipe's 26 epochs / sqrt(fraction)
    for run in runs:
        assert int(run[2]) <= 50  # evaluations
        shares = [float(c.rstrip("%")) for c in run[6:9]]
        assert sum(shares) == pytest.approx(100, abs=0.2)
    assert "Predicted grid:" in text


def test_grid_time_bad_input_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as e:
        load_script("grid_time").main(["--device", "cpu", "--steps", "0", "--out", "x.md"])
    assert "--steps must be at least 1" in str(e.value.code)


def test_recipe_sweep_scores_on_validation_over_seeds_and_resumes(
    tmp_path: Path, fake_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tiny = "epochs=1 steps_per_epoch=1 batch_size=4 val_size=40 eval_images=40 precision=fp32"
    args = ["--data-dir", str(fake_data), "--fraction", "1", "--seeds", "0,1", "--name", "t",
            "--out-dir", str(tmp_path), "--run", f"scratch {tiny}",
            "--run", f"scratch {tiny} lr=1"]  # fmt: skip
    sweep = load_script("recipe_sweep")
    text = sweep.main(args)
    rows = table_rows(text, "scratch epochs=1")
    assert len(rows) == 2 and all(r[1] == "2" for r in rows)  # two seeds each
    assert all(len(r[3].split(", ")) == 2 and r[4] == "4" for r in rows)  # per seed; 4 images
    assert "20 fixed validation images" in text and "shows no test accuracy" in text
    (folder,) = tmp_path.glob("t-cpu-*/")  # named by the machine: a CPU here
    records = [json.loads(f.read_text()) for f in folder.glob("*/seed*/metrics.json")]
    assert sorted(m["seed"] for m in records) == [0, 0, 1, 1]
    assert sorted(m["config"]["lr"] for m in records)[-2:] == [1, 1]
    assert (folder.parent / f"{folder.name}.md").read_text() == text
    monkeypatch.setattr(
        "common.runner.train_and_save", lambda *a, **k: pytest.fail("retrained a finished run")
    )
    assert sweep.main(args) == text  # resumed from the runs' records: nothing trained again


def test_recipe_sweep_runs_a_new_setting_without_a_gpu_on_the_whole_validation_split(
    tmp_path: Path, fake_data: Path
) -> None:
    tiny = "epochs=1 steps_per_epoch=1 batch_size=4 val_size=40 precision=fp32"
    spec = f"scratch {tiny} cutout=8 pad_mode=reflect tta=flip"
    args = ["--data-dir", str(fake_data), "--fraction", "1", "--name", "new",
            "--out-dir", str(tmp_path), "--eval-images", "none", "--run", spec]  # fmt: skip
    text = load_script("recipe_sweep").main(args)
    assert "40 fixed validation images" in text  # all of the (40-image) validation split
    assert "--eval-images none" in text and "(CPU)" in text
    ((row,),) = [table_rows(text, spec)]
    assert row[:2] == [spec, "1"]
    (record,) = [json.loads(f.read_text()) for f in tmp_path.glob("new-cpu-*/*/seed0/metrics.json")]
    assert record["val_images"] == 40 and "(CPU)" in record["hardware"]
    config = record["config"]
    assert (config["cutout"], config["pad_mode"], config["tta"]) == (8, "reflect", "flip")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--run", "bogus lr=1"], "write 'scratch|pretrained key=value ...'"),
        (["--run", "scratch", "--seeds", "0,x"], "--seeds takes whole numbers"),
        (["--run", "scratch no_such_key=1"], "no_such_key"),
    ],
)
def test_recipe_sweep_bad_input_is_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    with pytest.raises(SystemExit) as e:
        load_script("recipe_sweep").main(["--name", "x", "--out-dir", str(tmp_path), *args])
    assert message in str(e.value.code) and "\n" not in str(e.value.code)
    assert not any(tmp_path.iterdir())  # nothing trained, nothing written
