"""Training throughput in fp32 against bf16 autocast + channels-last, on this machine's device.

    python benchmarks/precision.py                         # the three CPU configurations below
    python benchmarks/precision.py --device cuda --batch-size 256

Each row times the same training step (`common.training.train_throughput`: random images, SGD,
cross-entropy) of one model after a warm-up step, in fp32 and in bf16 + channels-last, and says
which one `precision='auto'` would pick there (the faster). Some CPUs compute bf16 natively
(AMX-BF16, AVX512-BF16), others emulate it, so the answer is a property of the machine. Writes
a Markdown table with the hardware to benchmarks/results/precision-<machine>.md.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import torch

from benchmarks import output
from common.errors import ConfigError
from common.models import build_model, check_model
from common.results import hardware
from common.training import Arithmetic, resolve_device, train_throughput

# The configurations measured, MODEL:STEM:IMAGE_SIZE. The CIFAR stem at 32 px is the full
# scratch recipe's; the ImageNet stem at 32 px the quick profile's; 96 px an upsampled fine-tune.
CONFIGS = "resnet18:cifar:32,resnet50:imagenet:96,resnet18:imagenet:32"
# Per device type, the batch (32 keeps an emulated-bf16 CPU row within a few minutes) and the
# timed steps per row and precision, after one warm-up step
DEFAULTS = {"cpu": dict(batch_size=32, steps=3), "cuda": dict(batch_size=256, steps=50)}
CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--batch-size", type=int, default=None, help="default: 32 on CPU, 256 on GPU")
    p.add_argument("--steps", type=int, default=None, help="timed steps (default: 3 CPU, 50 GPU)")
    p.add_argument("--configs", default=CONFIGS, help="comma list of MODEL:STEM:IMAGE_SIZE")
    p.add_argument("--out", default=None, help="Markdown file (default under benchmarks/results)")
    return p.parse_args(argv)


def parse_configs(text: str) -> list[tuple[str, str, int]]:
    configs = []
    for item in text.split(","):
        try:
            model, stem, size = item.split(":")
            configs.append((model, stem, int(size)))
        except ValueError:
            raise ConfigError(f"--configs takes MODEL:STEM:IMAGE_SIZE, got {item!r}") from None
        check_model(model)
    return configs


def cpu_bf16_support() -> str:
    """The CPU's native bf16 instructions, as /proc/cpuinfo lists them."""
    try:
        flags = re.search(r"^flags\s*:(.*)$", Path("/proc/cpuinfo").read_text(), re.M)
    except OSError:
        return "unknown"
    have = [f for f in CPU_BF16_FLAGS if flags and f in flags.group(1).split()]
    return ", ".join(have) if have else "none (bf16 is emulated)"


def measure(
    configs: list[tuple[str, str, int]], device: torch.device, batch: int, steps: int
) -> list[dict]:
    rows = []
    for model_name, stem, size in configs:
        model = build_model(model_name, stem=stem, seed=0).to(device)
        speeds = {
            name: train_throughput(model, Arithmetic(name, cl, device.type), batch, size, steps)
            for name, cl in (("fp32", False), ("bf16", True))
        }
        rows.append(dict(model=model_name, stem=stem, size=size, **speeds))
        print(
            f"{model_name} {stem} {size} px: fp32 {speeds['fp32']:.1f}, bf16 {speeds['bf16']:.1f}"
        )
    return rows


def report(rows: list[dict], args: argparse.Namespace, device: torch.device, command: str) -> str:
    native = f"; native bf16: {cpu_bf16_support()}" if device.type == "cpu" else ""
    lines = output.header(
        f"fp32 vs bf16 + channels-last, {hardware()}",
        command,
        f"hardware: {hardware()}{native}",
        output.load_average(),
        f"software: {output.software()}",
        f"settings: random images, batch {args.batch_size}, SGD momentum 0.9, cross-entropy; "
        f"1 warm-up + {args.steps} timed steps per cell, one run",
        output.measured(),
    ) + [
        "| model | stem | image size | fp32 (images/s) | bf16 + channels-last (images/s) "
        "| ratio | auto picks |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        pick = "bf16" if r["bf16"] > r["fp32"] else "fp32"
        lines.append(
            f"| {r['model']} | {r['stem']} | {r['size']} | {r['fp32']:.1f} | {r['bf16']:.1f} "
            f"| {r['bf16'] / r['fp32']:.2f}x | {pick} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> str:
    args = parse_args(argv)
    with output.one_line_errors("precision.py"):
        device = resolve_device(args.device)
        configs = parse_configs(args.configs)
        output.settle(args, DEFAULTS[device.type], dict(batch_size=1, steps=1))
    rows = measure(configs, device, args.batch_size, args.steps)
    out = Path(args.out) if args.out else output.default_out("precision", device)
    output.write_result(out, report(rows, args, device, output.command_line("precision.py", argv)))
    return str(out)


if __name__ == "__main__":
    main()
