"""benchmarks/plan.py on the CPU: the ordered commands, what a budget starts, the pack."""

import tarfile

from tests.test_benchmark import load_script


def test_list_and_a_budget_dry_run_start_only_what_fits(tmp_path, capsys):
    plan = load_script("plan")
    args = ["--out", str(tmp_path / "runs"), "--data", str(tmp_path / "data")]
    assert plan.main([*args, "--list"]) == 0
    listed = capsys.readouterr().out
    assert listed.index("fine-tuned ResNet-50") < listed.index("ResNet-18 from scratch")
    assert listed.index("twice its budget") < listed.index("ResNet-152")
    assert plan.main([*args, "--budget", "60", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would start" not in out and out.count("skipped") == len(plan.STEPS)
    (tmp_path / "runs" / "scratch" / "r").mkdir(parents=True)
    (tmp_path / "runs" / "scratch" / "r" / "best.pt").write_text("w")
    (tmp_path / "runs" / "scratch" / "r" / "metrics.json").write_text("{}")
    plan.main([*args, "--pack", str(tmp_path / "p.tar.gz")])
    with tarfile.open(tmp_path / "p.tar.gz") as tar:
        names = tar.getnames()
    assert any(n.endswith("metrics.json") for n in names) and not any(".pt" in n for n in names)
