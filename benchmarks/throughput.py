"""Training speed per model against the hardware's limit: images/s, FLOPs per image, FLOP/s.

    python benchmarks/throughput.py                        # every model, the full recipe's shape
    python benchmarks/throughput.py --models resnet18,resnet50 --compile --batch 1024

Each row times the training step of one model as a run of the full recipe takes it: the
recipe's batch, image size and stem (`--setting`), the run's arithmetic (`precision=auto`: bf16
autocast + channels-last on a GPU), SGD with Nesterov momentum and weight decay, on random
images already on the device (the on-device augmentation is not included). FLOPs per training
image are counted by `torch.utils.flop_counter.FlopCounterMode` over one forward and backward
pass (convolutions and matrix products; batch norm and the optimizer are not counted), divided
by the batch (grouped convolutions: see `flops_per_image`). Achieved FLOP/s = images/s x FLOPs
per image, given as a share of the device's dense bf16 peak (PEAKS, or `--peak-tflops`).
`--compile` adds a torch.compile row per model whose first step (the compilation) is timed
apart, with the number of training images after which it pays for itself. Writes
benchmarks/results/throughput-<device>-<machine>.md row by row, so a stopped run keeps what it
measured.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from functools import partial
from itertools import product
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from benchmarks import output
from common.config import make_config
from common.errors import ConfigError
from common.files import write_text
from common.models import MODELS, build_model, check_model
from common.report import hardware
from common.training import place, resolve_device, train_step

# Dense bf16 tensor-core peaks (TFLOP/s) by the name torch gives the GPU; the first pattern the
# name contains wins. NVIDIA's spec tables print these "with sparsity" (H200 SXM and H100 SXM:
# BFLOAT16 Tensor Core 1,979 TFLOPS; H200 NVL and H100 NVL 1,671; H100 PCIe 1,513) and their
# footnote says the dense figure is half ("Shown with sparsity. Specifications 1/2 lower
# without sparsity"). Read as quoted, not on nvidia.com itself: the H100 table with that
# footnote at archive-lib.hpctech.co.jp/gpuproduct/nvidia-h100.html; H100 SXM5 BF16 matrix
# 989.4 dense, 1978.9 sparse at glennklockwood.com/garden/processors/h100; the H200 SXM/NVL
# table (1,979 / 1,671) in a public note quoting NVIDIA's H200 page, and "FP16 / BF16 (dense)
# ~989 TFLOPS" for the H200 SXM at itkb.uw.cz/2026/06/nvidia-h200-vs-b300-precisions-cores.html.
# A100: "BFLOAT16 Tensor Core 312 w/o sparsity, 624 with", NVIDIA's A100 page as quoted in a
# public course note. Any other GPU needs --peak-tflops.
PEAKS: tuple[tuple[str, float], ...] = (
    ("H200 NVL", 835.5),
    ("H200", 989.5),
    ("H100 NVL", 835.5),
    ("H100 PCIe", 756.5),
    ("H100", 989.5),
    ("A100", 312.0),
)
# Timed steps per row, and untimed ones first (cuDNN's kernel choice, compilation), per device type
DEFAULTS = {"cpu": dict(steps=3, warmup=1), "cuda": dict(steps=30, warmup=5)}
FLOP_BATCH = 2  # FLOPs grow linearly with the batch: count them on a small one, on the CPU
WEIGHT_DECAY = 5e-4  # the full scratch recipe's; its value does not change the step's cost


@dataclass
class Row:
    model: str
    stem: str
    size: int
    batch: int
    arithmetic: str
    compiled: bool
    images_per_s: float
    flops_per_image: float
    first_step_s: float  # the first step alone: with --compile, the compilation

    @property
    def tflops(self) -> float:
        return self.images_per_s * self.flops_per_image / 1e12


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=",".join(MODELS), help="comma list (default: all)")
    p.add_argument("--setting", default="scratch", choices=("scratch", "pretrained"))
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--precision", default="auto", help="auto, bf16, fp16 or fp32")
    p.add_argument("--batch", type=int, default=None, help="default: the full recipe's")
    p.add_argument("--image-size", type=int, default=None, help="default: the full recipe's")
    p.add_argument("--steps", type=int, default=None, help="timed steps (default: 3 CPU, 30 GPU)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps (1 CPU, 5 GPU)")
    p.add_argument("--compile", action="store_true", help="add a torch.compile row per model")
    p.add_argument("--peak-tflops", type=float, default=None, help="the device's dense peak")
    p.add_argument("--out", default=None, help="Markdown file (default under benchmarks/results)")
    return p.parse_args(argv)


def peak_tflops(device: torch.device, given: float | None) -> float | None:
    """The stated dense peak: `given`, else PEAKS' entry for the GPU; None on a CPU. A GPU
    that PEAKS lacks needs `--peak-tflops` (one line)."""
    if given is not None:
        if given <= 0:
            raise ConfigError(f"--peak-tflops must be positive, got {given}")
        return given
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for pattern, peak in PEAKS:
        if pattern in name:
            return peak
    raise ConfigError(
        f"no dense bf16 peak is known for {name}: pass --peak-tflops with the datasheet's dense "
        "(not sparse) figure"
    )


def flops_per_image(name: str, stem: str, size: int) -> float:
    """Forward + backward FLOPs of one training image, counted on the CPU in fp32. torch's
    counter overcounts the backward of grouped convolutions (ResNeXt50_32x4d at 32 px: 3.74x
    its forward against 2.00x for ResNet-50), so there the convolutions' backward is taken as
    twice their forward, as the counter finds it for ungrouped ones."""
    model = build_model(name, stem=stem, seed=0).train()
    x = torch.randn(FLOP_BATCH, 3, size, size)
    y = torch.zeros(FLOP_BATCH, dtype=torch.long)
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x), y).backward()
    total = counter.get_total_flops()
    if any(isinstance(m, nn.Conv2d) and m.groups > 1 for m in model.modules()):
        counts = {str(op): n for op, n in counter.get_flop_counts()["Global"].items()}
        total += 2 * counts["aten.convolution"] - counts["aten.convolution_backward"]
    return total / FLOP_BATCH


def measure(name: str, args: argparse.Namespace, compiled: bool) -> Row:
    """Count the FLOPs of the full recipe's run of `name` in `args.setting` (with the batch and
    size asked for), then time `args.steps` of its training steps (`train_step`, SGD with
    Nesterov momentum and weight decay) after `args.warmup` others."""
    shape = {"batch_size": args.batch, "image_size": args.image_size}
    cfg = make_config(
        name, 1.0, args.setting == "pretrained", profile="full", device=args.device,
        precision=args.precision, weights="V1", **{k: v for k, v in shape.items() if v},
    )  # fmt: skip
    flops = flops_per_image(name, cfg.stem, cfg.image_size)
    model = build_model(cfg.model, stem=cfg.stem, seed=0)  # the pretrained network's arithmetic
    device, arithmetic = place(model, cfg)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(cfg.batch_size, 3, cfg.image_size, cfg.image_size, generator=gen)
    x = x.to(device).contiguous(memory_format=arithmetic.memory_format)
    y = torch.randint(0, 10, (cfg.batch_size,), generator=gen).to(device)
    opt = torch.optim.SGD(
        model.parameters(), lr=1e-3, momentum=0.9, nesterov=True, weight_decay=WEIGHT_DECAY
    )
    net = torch.compile(model) if compiled else model
    step = partial(train_step, net, opt, arithmetic.scaler(), arithmetic, x, y)
    first = output.timed(device, step)  # cuDNN's autotuning, with torch.compile the compilation
    output.timed(device, step, args.warmup - 1)
    ips = args.steps * cfg.batch_size / output.timed(device, step, args.steps)
    return Row(
        name, cfg.stem, cfg.image_size, cfg.batch_size, arithmetic.describe(), compiled, ips,
        flops, first,
    )  # fmt: skip


def pays_after(eager: Row, compiled: Row) -> str:
    """Training images after which compiling has saved its own first step's extra time."""
    saved = 1 / eager.images_per_s - 1 / compiled.images_per_s  # seconds per image
    if saved <= 0:
        return "never (not faster)"
    return f"{(compiled.first_step_s - eager.first_step_s) / saved:,.0f} images"


def report(rows: list[Row], peak: float | None, device: torch.device, command: str) -> str:
    """The Markdown table: one row per model and mode, then the compile break-even."""
    share = f"share of {peak:g} TFLOP/s" if peak else "share of peak"
    peak_line = (
        f"{peak:g} TFLOP/s dense bf16 (PEAKS in benchmarks/throughput.py or --peak-tflops)"
        if peak
        else "none stated: no share is given"
    )
    lines = output.header(
        f"Training throughput against the hardware's limit, {hardware()}",
        command,
        f"hardware: {hardware()}; {output.software()}",
        output.load_average(),
        f"{output.measured()}; one run per row",
        "the model's training step on random images already on the device (no augmentation);"
        " FLOPs: FlopCounterMode over one forward + backward, per image",
        f"peak: {peak_line}",
    ) + [
        "| model | stem | image px | batch | arithmetic | compiled | train images/s "
        f"| GFLOP / training image | achieved TFLOP/s | {share} | first step s |",
        "|---|---|---:|---:|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        frac = f"{100 * r.tflops / peak:.1f}%" if peak else "–"
        lines.append(
            f"| {r.model} | {r.stem} | {r.size} | {r.batch} | {r.arithmetic} | "
            f"{'yes' if r.compiled else 'no'} | {r.images_per_s:,.1f} | "
            f"{r.flops_per_image / 1e9:.2f} | {r.tflops:.3f} | {frac} | {r.first_step_s:.1f} |"
        )
    pairs = [(e, c) for e in rows for c in rows if c.compiled and not e.compiled and
             (e.model, e.batch) == (c.model, c.batch)]  # fmt: skip
    if pairs:
        lines += ["", "torch.compile pays for its first step after (per run, each run compiles):"]
        lines += [f"- {e.model}, batch {e.batch}: {pays_after(e, c)}" for e, c in pairs]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> str:
    """Measure every model (eager, then compiled if asked), rewriting the file after each row."""
    args = parse_args(argv)
    with output.one_line_errors("throughput.py"):
        models = [m for m in args.models.split(",") if m]
        for m in models:
            check_model(m)
        device = resolve_device(args.device)
        output.settle(args, DEFAULTS[device.type], dict(batch=1, image_size=1, steps=1, warmup=1))
        peak = peak_tflops(device, args.peak_tflops)
        out = Path(args.out) if args.out else output.default_out("throughput", device)
        command, rows = output.command_line("throughput.py", argv), []
        for name, compiled in product(models, (False, True) if args.compile else (False,)):
            rows.append(measure(name, args, compiled))
            print(f"{name}{' compiled' if compiled else ''}: {rows[-1].images_per_s:,.1f} images/s")
            write_text(out, report(rows, peak, device, command))
    print(f"written to {out}")
    return str(out)


if __name__ == "__main__":
    main()
