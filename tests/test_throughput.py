"""benchmarks/throughput.py on the CPU: the FLOP count, achieved FLOP/s and share of a peak,
the peak table, and when torch.compile pays."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.test_benchmark import load_script, table_rows


def test_throughput_counts_flops_and_states_the_share_of_a_given_peak(tmp_path: Path) -> None:
    out = tmp_path / "throughput.md"
    throughput = load_script("throughput")
    throughput.main(
        ["--device", "cpu", "--precision", "fp32", "--models", "resnet18", "--batch", "2",
         "--steps", "1", "--warmup", "1", "--peak-tflops", "0.5", "--out", str(out)]
    )  # fmt: skip
    text = out.read_text()
    assert "AMD" in text or "Intel" in text or "(CPU)" in text
    ((model, stem, px, batch, arith, compiled, ips, gflop, tflops, share, first),) = table_rows(
        text, "resnet18"
    )
    assert (stem, px, batch, arith, compiled) == ("cifar", "32", "2", "fp32", "no")
    # forward + backward: the backward pass costs about twice the forward (no input gradient
    # for the first convolution), so between 2x and 3x the forward's count
    from torch.utils.flop_counter import FlopCounterMode

    from common.models import build_model

    with FlopCounterMode(display=False) as forward:
        build_model("resnet18", stem="cifar", seed=0)(torch.randn(1, 3, 32, 32))
    assert 2 < float(gflop) * 1e9 / forward.get_total_flops() <= 3
    achieved = float(ips.replace(",", "")) * float(gflop) / 1000
    assert float(tflops) == pytest.approx(achieved, rel=0.05, abs=1e-3)
    # tflops is printed to 3 decimals: 0.0005 / 0.5 TFLOP/s is 0.1 point of the share
    assert float(share.rstrip("%")) == pytest.approx(100 * float(tflops) / 0.5, abs=0.15)


def test_throughput_peak_and_compile_break_even(monkeypatch: pytest.MonkeyPatch) -> None:
    throughput = load_script("throughput")
    gpu = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "NVIDIA H200 NVL")
    nvl = throughput.peak_tflops(gpu, None)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "NVIDIA H200")
    assert throughput.peak_tflops(gpu, None) > nvl  # the NVL card's own, lower, entry
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "Tesla T4")
    with pytest.raises(throughput.ConfigError, match="--peak-tflops"):
        throughput.peak_tflops(gpu, None)
    assert throughput.peak_tflops(torch.device("cpu"), None) is None

    def row(ips: float, first: float, compiled: bool):
        return throughput.Row("resnet18", "cifar", 32, 500, "bf16", compiled, ips, 1e9, first)

    # 10 s more for the first step, 1/100 - 1/200 s saved per image: 2,000 images
    assert throughput.pays_after(row(100, 1, False), row(200, 11, True)) == "2,000 images"
    assert throughput.pays_after(row(100, 1, False), row(90, 11, True)).startswith("never")


def test_grouped_convolutions_backward_counts_twice_their_forward() -> None:
    from torch.utils.flop_counter import FlopCounterMode

    from common.models import build_model

    throughput = load_script("throughput")
    for name in ("resnet50", "resnext50_32x4d"):  # ungrouped and grouped convolutions
        with FlopCounterMode(display=False) as forward:
            build_model(name, stem="imagenet", seed=0).eval()(torch.randn(1, 3, 32, 32))
        ratio = throughput.flops_per_image(name, "imagenet", 32) / forward.get_total_flops()
        assert 2.9 < ratio <= 3.0, name
