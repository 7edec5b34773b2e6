"""Training speed with our data pipeline against the usual one: same model, step and batch.

    python benchmarks/pipeline.py --device cpu --stem imagenet --batch-size 64 --steps 100 \\
        --warmup 5 --workers 2

ours: `common.data.Batches`, the uint8 training images resident on the device, cropped, flipped
and normalized (and resized) as whole batches there. usual: PIL images, torchvision.transforms
per image and a DataLoader with workers, each batch copied to the device. Data wait is the time
blocked in next(batches), the copy included, over the total.
"""

import argparse
import time
from collections.abc import Callable, Iterator
from functools import partial

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

import benchmarks
from common.config import RunConfig, make_config
from common.data import CIFAR_MEAN, CIFAR_STD, Batches, load_cifar10
from common.errors import one_line_exit
from common.models import build_model
from common.training import make_optimizer, place, resolve_device, train_step

Stream = Iterator[tuple[torch.Tensor, torch.Tensor]]  # endless (images, labels) batches
Pipeline = Callable[[torch.Tensor, torch.Tensor, argparse.Namespace, RunConfig], Stream]


class PilCifar(Dataset):
    """uint8 CIFAR images as PIL images through torchvision's transforms."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, image_size: int) -> None:
        self.x, self.y = x.permute(0, 2, 3, 1).numpy(), y.tolist()  # (N, 32, 32, 3) for PIL
        resize = [transforms.Resize(image_size)] if image_size != 32 else []
        self.tf = transforms.Compose(
            [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(), *resize,
             transforms.ToTensor(), transforms.Normalize(CIFAR_MEAN, CIFAR_STD)]
        )  # fmt: skip

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.tf(Image.fromarray(self.x[i])), self.y[i]


def ours(x: torch.Tensor, y: torch.Tensor, args: argparse.Namespace, cfg: RunConfig) -> Stream:
    gen = torch.Generator().manual_seed(0)
    batches = Batches(
        x.to(args.device), y.to(args.device), cfg.batch_size, train=True, mean=CIFAR_MEAN,
        std=CIFAR_STD, image_size=cfg.image_size, gen=gen,
    )  # fmt: skip
    while True:
        yield from batches


def usual(x: torch.Tensor, y: torch.Tensor, args: argparse.Namespace, cfg: RunConfig) -> Stream:
    cuda = args.device.type == "cuda"
    loader = DataLoader(
        PilCifar(x, y, cfg.image_size), cfg.batch_size, shuffle=True, drop_last=True,
        num_workers=args.workers, pin_memory=cuda, persistent_workers=args.workers > 0,
    )  # fmt: skip
    while True:
        for xb, yb in loader:
            yield xb.to(args.device, non_blocking=cuda), yb.to(args.device, non_blocking=cuda)


def measure(
    stream: Pipeline, model: str, x: torch.Tensor, y: torch.Tensor, args: argparse.Namespace
) -> tuple[float, float]:
    """Images/s and data-wait % of `args.steps` training steps after `args.warmup` others."""
    precision = "bf16" if args.device.type == "cuda" else "fp32"
    cfg = make_config(
        model, 1.0, profile="full", device=str(args.device), precision=precision,
        batch_size=args.batch_size, image_size=args.image_size, stem=args.stem,
    )  # fmt: skip
    net = build_model(model, stem=cfg.stem, seed=0)
    device, arithmetic = place(net, cfg)
    opt, _ = make_optimizer(net, cfg, 1)
    step = partial(train_step, net.train(), opt, arithmetic.scaler(), arithmetic)
    batches = stream(x, y, args, cfg)
    benchmarks.timed(device, lambda: step(*next(batches)), args.warmup)
    waits = []

    def timed_steps() -> None:
        for _ in range(args.steps):
            fetch = time.perf_counter()
            xb, yb = next(batches)
            waits.append(time.perf_counter() - fetch)
            step(xb.contiguous(memory_format=arithmetic.memory_format), yb)

    total = benchmarks.timed(device, timed_steps)
    return args.steps * cfg.batch_size / total, 100 * sum(waits) / total


def main(argv: list[str] | None = None) -> str:
    """Measure each model with both pipelines, then write the table."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--models", default="resnet18,resnet50", help="comma-separated")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--stem", default="cifar", help="cifar or imagenet")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--steps", type=int, default=100, help="timed steps")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps first")
    p.add_argument("--workers", type=int, default=4, help="the usual pipeline's workers")
    p.add_argument("--data-dir", default="data", help="folder holding cifar-10-batches-py")
    p.add_argument("--out", help="default: benchmarks/results/pipeline-<machine>.md")
    args = p.parse_args(argv)
    with one_line_exit("pipeline.py"):
        args.device = resolve_device(args.device)
        data = load_cifar10(args.data_dir, download=False)
        lines = benchmarks.header(
            "Data pipeline: ours vs the usual",
            __file__,
            argv,
            *benchmarks.where(),
            f"settings: {args.warmup} warm-up + {args.steps} timed steps per row, batch "
            f"{args.batch_size}, {args.image_size} px, {args.stem} stem, the full recipe's "
            f"optimizer, {'bf16 + channels-last' if args.device.type == 'cuda' else 'fp32'}, "
            f"all {len(data.train_y):,} training images; usual: {args.workers} workers",
        ) + [
            "| model | pipeline | images/s | data wait % | ours / usual |",
            "|---|---|---:|---:|---:|",
        ]
        for model in args.models.split(","):
            (mine, wait), (theirs, their_wait) = (
                measure(stream, model, data.train_x, data.train_y, args) for stream in (ours, usual)
            )
            lines += [
                f"| {model} | ours | {mine:,.1f} | {wait:.1f} | {mine / theirs:.2f} |",
                f"| {model} | usual | {theirs:,.1f} | {their_wait:.1f} | – |",
            ]
    out = args.out or benchmarks.RESULTS / f"pipeline-{benchmarks.machine(str(args.device))}.md"
    benchmarks.write(out, "\n".join(lines) + "\n")
    return str(out)


if __name__ == "__main__":
    main()
