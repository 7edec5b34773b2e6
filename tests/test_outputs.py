"""What a run leaves behind: readable files, no stray checkpoints, no silently shrunk README."""

from __future__ import annotations

import json
import os
from pathlib import Path

from common.checkpoint import BEST, LATEST, PREVIOUS
from common.config import make_config
from common.files import write_text
from common.report import README_END, README_START, write_report
from common.results import make_metrics
from common.run import KEEP_CHECKPOINTS, save_run
from tests.conftest import fake_result


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
    write_report(out, tmp_path / "img", tmp_path / "res", readme, "quick", "cmd", {})


def test_a_readme_section_with_fewer_runs_says_so(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(f"# t\n{README_START}\n{README_END}\n")
    report(tmp_path, 3, readme)
    assert "<!-- runs: 3 -->" in readme.read_text() and "held" not in capsys.readouterr().out
    report(tmp_path, 1, readme)
    assert "its results section held 3 runs and now shows 1" in capsys.readouterr().out
