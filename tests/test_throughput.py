"""benchmarks/throughput.py on the CPU: FLOPs per training image, achieved FLOP/s and share of
a peak, one row per precision, the peak table, and when torch.compile pays."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from benchmarks import throughput
from common.models import build_model
from tests.test_benchmark import table_rows


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
