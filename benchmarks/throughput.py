"""Training speed per model against the hardware's limit: images/s, FLOPs per image, FLOP/s.

    python benchmarks/throughput.py --models resnet18,resnet50 --compile --batch 1024
    python benchmarks/throughput.py --device cpu --precision fp32,bf16 --batch 32 --steps 3

Each row times one model's training step as a full-profile run takes it (`--setting`'s batch,
size, stem, optimizer; `--precision` auto: bf16 + channels-last on a GPU) on random images on
the device. A training image costs 3x its forward FLOPs. `--compile` adds a torch.compile row
per model, its first step (the compilation) timed apart. The file is rewritten after each row.
"""

import argparse
from dataclasses import dataclass
from functools import partial
from itertools import pairwise, product

import torch

import benchmarks
from common.config import make_config
from common.errors import ConfigError, one_line_exit
from common.models import MODELS, build_model, flops_per_image
from common.training import make_optimizer, place, resolve_device, train_step

# Dense bf16 tensor-core TFLOP/s by GPU name, the first match wins (sources: README)
PEAKS = (
    ("H200 NVL", 835.5),
    ("H200", 989.5),
    ("H100 NVL", 835.5),
    ("H100 PCIe", 756.5),
    ("H100", 989.5),
    ("A100", 312.0),
)


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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=",".join(MODELS), help="comma list (default: all)")
    p.add_argument("--setting", default="scratch", choices=("scratch", "pretrained"))
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--precision", default="auto", help="comma list of auto, bf16, fp16, fp32")
    p.add_argument("--batch", type=int, default=None, help="default: the full recipe's")
    p.add_argument("--image-size", type=int, default=None, help="default: the full recipe's")
    p.add_argument("--steps", type=int, default=30, help="timed steps")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    p.add_argument("--compile", action="store_true", help="add a torch.compile row per model")
    p.add_argument("--peak-tflops", type=float, default=None, help="the device's dense peak")
    p.add_argument("--out", default=None, help="default: results/throughput-<machine>.md")
    return p.parse_args(argv)


def peak_tflops(device: torch.device, given: float | None) -> float | None:
    """The dense peak: `given`, else PEAKS' entry for the GPU; None on a CPU."""
    if given is not None or device.type != "cuda":
        return given
    name = torch.cuda.get_device_name(device)
    for pattern, peak in PEAKS:
        if pattern in name:
            return peak
    raise ConfigError(f"no dense bf16 peak is known for {name}: pass --peak-tflops")


def measure(name: str, precision: str, compiled: bool, args: argparse.Namespace) -> Row:
    """Time `args.steps` training steps of the full recipe's run of `name`."""
    shape = {"batch_size": args.batch, "image_size": args.image_size}
    cfg = make_config(
        name, 1.0, args.setting == "pretrained", profile="full", device=args.device,
        precision=precision, **shape,
    )  # fmt: skip
    model = build_model(cfg.model, stem=cfg.stem, seed=0)  # the pretrained network's arithmetic
    device, arithmetic = place(model, cfg)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(cfg.batch_size, 3, cfg.image_size, cfg.image_size, generator=gen)
    x = x.to(device).contiguous(memory_format=arithmetic.memory_format)
    y = torch.randint(0, 10, (cfg.batch_size,), generator=gen).to(device)
    opt, _ = make_optimizer(model, cfg, 1)
    net = torch.compile(model) if compiled else model
    step = partial(train_step, net, opt, arithmetic.scaler(), arithmetic, x, y)
    first = benchmarks.timed(device, step)  # cuDNN's autotuning; torch.compile's compilation
    benchmarks.timed(device, step, args.warmup - 1)
    ips = args.steps * cfg.batch_size / benchmarks.timed(device, step, args.steps)
    # a backward pass costs twice the forward: gradients of both weights and inputs
    flops = 3 * flops_per_image(name, cfg.stem, cfg.image_size)
    return Row(name, cfg.stem, cfg.image_size, cfg.batch_size, arithmetic.describe(), compiled,
               ips, flops, first)  # fmt: skip


def pays_after(eager: Row, compiled: Row) -> str:
    """Training images after which compiling has saved its own first step's extra time."""
    saved = 1 / eager.images_per_s - 1 / compiled.images_per_s  # seconds per image
    if saved <= 0:
        return "never (not faster)"
    return f"{(compiled.first_step_s - eager.first_step_s) / saved:,.0f} images"


def report(rows: list[Row], peak: float | None, argv: list[str] | None) -> str:
    """The Markdown table: one row per model and mode, then the compile break-even."""
    lines = benchmarks.header(
        "Training throughput against the hardware's limit",
        __file__,
        argv,
        *benchmarks.where(),
        "the training step on random images already on the device (no augmentation); "
        "FLOPs: 3x the forward's (FlopCounterMode), per image",
        f"peak: {f'{peak:g} TFLOP/s dense bf16' if peak else 'none stated'}",
    ) + [
        "| model | stem | image px | batch | arithmetic | compiled | train images/s "
        "| GFLOP / training image | achieved TFLOP/s | share of peak | first step s |",
        "|---|---|---:|---:|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        tflops = r.images_per_s * r.flops_per_image / 1e12
        share = f"{100 * tflops / peak:.1f}%" if peak else "–"
        lines.append(
            f"| {r.model} | {r.stem} | {r.size} | {r.batch} | {r.arithmetic} | "
            f"{'yes' if r.compiled else 'no'} | {r.images_per_s:,.1f} | "
            f"{r.flops_per_image / 1e9:.2f} | {tflops:.3f} | {share} | {r.first_step_s:.1f} |"
        )
    pairs = [(e, c) for e, c in pairwise(rows) if c.compiled and not e.compiled]
    if pairs:
        lines += ["", "torch.compile pays for its first step after (per run, each run compiles):"]
        lines += [f"- {e.model}, {e.arithmetic}: {pays_after(e, c)}" for e, c in pairs]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> str:
    """Measure every model and precision (eager, then compiled if asked), writing each row."""
    args = parse_args(argv)
    with one_line_exit("throughput.py"):
        for key in ("batch", "image_size", "steps", "warmup"):
            if (value := getattr(args, key)) is not None and value < 1:
                raise ConfigError(f"--{key.replace('_', '-')} must be at least 1, got {value}")
        peak = peak_tflops(resolve_device(args.device), args.peak_tflops)
        out = args.out or benchmarks.RESULTS / f"throughput-{benchmarks.machine(args.device)}.md"
        rows: list[Row] = []
        modes = (False, True) if args.compile else (False,)
        for name, precision, compiled in product(
            args.models.split(","), args.precision.split(","), modes
        ):
            rows.append(measure(name, precision, compiled, args))
            benchmarks.write(out, report(rows, peak, argv))
    return str(out)


if __name__ == "__main__":
    main()
