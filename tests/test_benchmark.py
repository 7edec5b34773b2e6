"""The pipeline benchmark and the recipe sweep on the fake CIFAR-10: their tables, resume, and
bad input in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import pipeline, recipe_sweep


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
    with pytest.raises(SystemExit, match="unknown model 'resnet7'") as e:
        pipeline.main([*args, "--models", "resnet7", "--out", str(tmp_path / "x.md")])
    assert "\n" not in str(e.value.code) and not (tmp_path / "x.md").exists()


def test_recipe_sweep_scores_on_validation_over_seeds_and_resumes(
    tmp_path: Path, fake_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tiny = "epochs=1 steps_per_epoch=1 batch_size=4 val_size=40 precision=fp32"
    args = ["--data-dir", str(fake_data), "--fraction", "1", "--seeds", "0,1", "--name", "t",
            "--out-dir", str(tmp_path), "--eval-images", "none", "--run", f"scratch {tiny}",
            "--run", f"scratch {tiny} lr=1 cutout=8 pad_mode=reflect tta=flip"]  # fmt: skip
    text = recipe_sweep.main(args)
    rows = table_rows(text, "scratch epochs=1")
    assert len(rows) == 2 and all(r[1] == "2" and r[4] == "4" for r in rows)  # seeds; images
    assert all(len(r[3].split(", ")) == 2 for r in rows)  # one accuracy per seed
    assert "40 fixed validation images" in text and "shows no test accuracy" in text
    (folder,) = tmp_path.glob("t-cpu-*/")  # named by the machine: a CPU here
    records = [json.loads(f.read_text()) for f in folder.glob("*/seed*/metrics.json")]
    assert sorted(m["seed"] for m in records) == [0, 0, 1, 1]
    changed = [m["config"] for m in records if m["config"]["lr"] == 1]
    assert len(changed) == 2 and all((c["cutout"], c["tta"]) == (8, "flip") for c in changed)
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
        (["--run", "scratch no_such_key=1"], "no_such_key"),
    ],
)
def test_recipe_sweep_bad_input_is_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    with pytest.raises(SystemExit) as e:
        recipe_sweep.main(["--name", "x", "--out-dir", str(tmp_path), *args])
    assert message in str(e.value.code) and "\n" not in str(e.value.code)
    assert not any(tmp_path.iterdir())  # nothing trained, nothing written
