"""benchmarks/plan.py on the CPU: the ordered commands, what a budget starts, done, the pack."""

import tarfile

from benchmarks import machine, plan
from common.runner import State


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
    seen = []

    def state(cfg):  # the sweep's two runs done, in the folders recipe_sweep.py writes
        seen.append(cfg.output_dir)
        return State.DONE if folder in cfg.output_dir else State.TODO

    monkeypatch.setattr(plan, "state", state)
    plan.main(["--out", str(tmp_path / "runs"), "--data", str(tmp_path / "data"), "--list"])
    listed = capsys.readouterr().out.splitlines()
    marks = [line.split()[0] for line in listed if "twice its budget" in line]
    assert marks[0] == "done" and "done" not in marks[1:]
    assert sum(folder in d for d in seen) == 2  # scratch and scratch epochs=52, seed 0
