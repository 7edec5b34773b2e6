"""benchmarks/gpu_plan.py on the CPU with tiny runs: the piece table, what it would run, one tiny
piece end to end, resuming, the results tarball, the prepared inputs and bad input."""

from __future__ import annotations

import io
import json
import lzma
import math
import tarfile
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from tests.conftest import TINY, write_fake_cifar
from tests.test_benchmark import load_script

SETS = [a for k, v in TINY.items() for a in ("--set", f"{k}={v}")]


@pytest.fixture
def plan() -> ModuleType:
    return load_script("gpu_plan")


def rows(text: str) -> dict[str, list[str]]:
    """The --list table's rows by piece name."""
    cells = [[c.strip() for c in line.split("|")[1:-1]] for line in text.splitlines()]
    return {r[0]: r for r in cells if len(r) == 5 and r[0] not in ("piece", "---")}


def tiny_piece(plan: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """Replace the plan by one grid piece of one run."""
    piece = plan.Piece("t-grid", "one tiny run", "grid", runs=("scratch:resnet18:1",))
    monkeypatch.setattr(plan, "PIECES", (piece,))


def test_list_shows_every_piece_in_order_within_nine_minutes(
    plan: ModuleType, tmp_path: Path
) -> None:
    table = rows(plan.main(["--out", str(tmp_path / "plan"), "--list"]))
    assert list(table) == [p.name for p in plan.PIECES]
    assert [n[0] for n in table] == sorted(n[0] for n in table)  # a, b, ... h in order
    estimates = [float(r[2]) for r in table.values() if r[2] != "–"]
    assert estimates and all(0 < s <= plan.PIECE_LIMIT_S for s in estimates)
    for name in ("c-finetune-bit", "e-1-16", "h-papermill"):  # no weights given
        assert table[name][4].startswith("blocked:") and "weights" in table[name][4]
    assert not (tmp_path / "plan").exists()  # listing creates nothing


def test_dry_run_prints_each_seeds_command_and_runs_nothing(
    plan: ModuleType, tmp_path: Path
) -> None:
    text = plan.main(["--out", str(tmp_path / "plan"), "--pieces", "d-resnet18", "--dry-run"])
    commands = [line.split() for line in text.splitlines() if "direct_runs.py" in line]
    assert [c[c.index("--seed") + 1] for c in commands] == ["0", "1", "2"]
    for c in commands:
        assert c[c.index("--profile") + 1] == "full"
        assert [c[i + 1] for i, a in enumerate(c) if a == "--run"] == [
            "scratch:resnet18:1/16",
            "scratch:resnet18:0.5",
            "scratch:resnet18:1",
        ]
    assert not (tmp_path / "plan").exists()


def test_a_sweep_piece_scores_every_row_on_all_validation_images_in_the_full_profile(
    plan: ModuleType, tmp_path: Path
) -> None:
    out = tmp_path / "plan"
    text = plan.main(
        ["--out", str(out), "--pieces", "a-resnet18", "--dry-run", "--set", "epochs=1"]
    )
    ((command,),) = [[line] for line in text.splitlines() if "recipe_sweep.py" in line]
    args = command.split()
    runs = command.split(" --run ")[1:]
    (piece,) = [p for p in plan.PIECES if p.name == "a-resnet18"]
    assert len(runs) == len(piece.specs) == len(set(runs))
    assert all("eval_images=none" in r and r.rstrip("'").endswith("epochs=1") for r in runs)
    assert args[args.index("--profile") + 1] == "full"
    assert args[args.index("--name") + 1] == "a-resnet18"
    assert args[args.index("--out-dir") + 1] == str(out / "sweeps")


def test_a_tiny_piece_runs_resumes_and_packs_no_weights(
    plan: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out, back = tmp_path / "plan", tmp_path / "back"
    write_fake_cifar(out / "data")
    back.mkdir()
    monkeypatch.setenv("OUT", str(back))
    tiny_piece(plan, monkeypatch)
    args = ["--out", str(out), "--budget", "600", *SETS]
    assert rows(plan.main(args))["t-grid"][4] == "done"
    metrics = json.loads((out / "runs/scratch/resnet18_data-100_seed0/metrics.json").read_text())
    assert math.isfinite(metrics["history"][-1]["train_loss"]) and metrics["profile"] == "full"
    assert (out / "runs/scratch/resnet18_data-100_seed0/best.pt").exists()
    assert (out / "data/cifar-10-batches-py/test_batch").stat().st_mtime == plan.FIXED_MTIME
    (tarball,) = back.iterdir()
    with tarfile.open(tarball) as tar:
        names = tar.getnames()
    assert "plan/runs/scratch/resnet18_data-100_seed0/metrics.json" in names
    assert "plan/plan-log.jsonl" in names and "plan/plan.md" in names
    assert not [n for n in names if n.endswith((".pt", ".pth")) or n.startswith("plan/data")]
    # the same command again: nothing left, nothing run
    monkeypatch.setattr(plan, "run_command", lambda *a: pytest.fail("ran a finished piece"))
    assert rows(plan.main(args))["t-grid"][4] == "done"
    assert len((out / "plan-log.jsonl").read_text().splitlines()) == 1


def test_a_piece_that_does_not_fit_the_budget_is_not_started(
    plan: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "plan"
    write_fake_cifar(out / "data")
    tiny_piece(plan, monkeypatch)
    monkeypatch.setattr(plan, "run_command", lambda *a: pytest.fail("started"))
    plan.main(["--out", str(out), "--budget", "20", *SETS])  # ~26 s estimated, 20 - 15 left
    assert "[t-grid] not started: needs ~" in capsys.readouterr().out
    assert not (out / "runs").exists()


def test_weights_are_decompressed_once_and_a_misfit_blocks_their_pieces(
    plan: ModuleType, tmp_path: Path
) -> None:
    state = {"w": torch.arange(6.0).half()}
    raw = io.BytesIO()
    torch.save(state, raw)
    xz = tmp_path / "tiny-weights.pth.xz"
    with lzma.open(xz, "wb") as f:
        f.write(raw.getvalue())
    ctx = plan.Context(tmp_path / "plan", weights_name=plan.weights_name(str(xz)))
    plan.prepare_weights(ctx, str(xz))
    assert ctx.weights.name == "tiny-weights.pth"
    assert ctx.weights.read_bytes() == raw.getvalue()
    assert ctx.weights.stat().st_mtime == plan.FIXED_MTIME
    xz.unlink()
    plan.prepare_weights(ctx, str(xz))  # present: the archive is not read again
    (piece,) = [p for p in plan.PIECES if p.name == "e-1-16"]
    words, left, _ = plan.status(ctx, piece)
    assert words.startswith("blocked: ") and "\n" not in words and not left
    assert "resnet50" in words  # why: the file does not fit ResNet-50


def test_a_sweep_on_a_gpu_needs_recipe_sweeps_device_option(
    plan: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(plan, "REPO", tmp_path)
    (tmp_path / "benchmarks").mkdir()
    sweep = tmp_path / "benchmarks" / "recipe_sweep.py"
    sweep.write_text('make_config(device="cpu")\n')
    assert "needs --device" in plan.sweep_device_blocker()
    sweep.write_text('p.add_argument("--device", default="auto")\n')
    assert plan.sweep_device_blocker() is None


def test_the_data_is_built_from_an_image_folder_archive(plan: ModuleType, tmp_path: Path) -> None:
    pytest.importorskip("common.image_folder", reason="the image-folder data builder")
    from PIL import Image

    from common.data import load_cifar10

    archive = tmp_path / "images.tar.gz"
    classes = ["airplane", "automobile", "bird", "cat", "deer"]
    classes += ["dog", "frog", "horse", "ship", "truck"]
    with tarfile.open(archive, "w:gz") as tar:
        for split, count in (("train", 5), ("test", 2)):
            for label, name in enumerate(classes):
                for i in range(count):
                    img = np.full((32, 32, 3), 20 * label + i, dtype=np.uint8)
                    data = io.BytesIO()
                    Image.fromarray(img).save(data, format="PNG")
                    info = tarfile.TarInfo(f"cifar/{split}/{name}/{i:04d}.png")
                    info.size = len(data.getvalue())
                    tar.addfile(info, io.BytesIO(data.getvalue()))
    ctx = plan.Context(tmp_path / "plan")
    plan.prepare_data(ctx, str(archive), 300)
    data = load_cifar10(ctx.data_dir, download=False)
    assert (len(data.train_y), len(data.test_y)) == (50, 20)
    archive.unlink()
    plan.prepare_data(ctx, str(archive), 300)  # complete: the archive is not needed again


@pytest.mark.parametrize(
    "args, message",
    [
        (["--pieces", "zz"], "unknown piece(s) zz"),
        (["--pieces", "d-resnet18"], "give --data-archive"),
        (["--budget", "0"], "--budget must be positive"),
        (["--pieces", "e-1-16", "--weights-xz", "{tmp}/w.xz"], "is not an .xz file"),
    ],
)
def test_bad_input_is_one_line(
    plan: ModuleType, tmp_path: Path, args: list[str], message: str
) -> None:
    (tmp_path / "w.xz").write_bytes(b"not xz")
    if "e-1-16" in args:  # the data is there: the weights are what is wrong
        write_fake_cifar(tmp_path / "plan" / "data")
    with pytest.raises(SystemExit) as e:
        plan.main(["--out", str(tmp_path / "plan"), *(a.format(tmp=tmp_path) for a in args)])
    assert message in str(e.value.code) and "\n" not in str(e.value.code)


def test_the_compile_piece_is_done_per_model_when_both_its_rows_are_there(
    plan: ModuleType, tmp_path: Path
) -> None:
    ctx = plan.Context(tmp_path / "plan")
    (piece,) = [p for p in plan.PIECES if p.name == "g-compile"]
    table = plan.throughput_file(ctx, piece)
    table.parent.mkdir(parents=True)
    eager = "| resnet18 | cifar | 32 | 500 | bf16 autocast + channels-last | no | 1.0 |"
    table.write_text(eager + "\n")
    assert plan.todo(ctx, piece) == ["resnet18", "resnet50"]
    table.write_text(eager + "\n" + eager.replace("| no |", "| yes |") + "\n")
    assert plan.todo(ctx, piece) == ["resnet50"]
