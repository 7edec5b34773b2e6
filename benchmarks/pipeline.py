"""Training throughput with our data pipeline against the usual one, same model and optimizer.

    python benchmarks/pipeline.py                                    # ResNet-18 and -50, 32 px
    python benchmarks/pipeline.py --device cuda --image-size 160     # the pretrained input size

ours:  `common.data.Batches`, as the training loop uses it: the uint8 training split resident on
       the device, shuffled, cropped + flipped, normalized (and resized) as whole batches there.
usual: a torchvision-style Dataset of PIL images, torchvision.transforms per image (RandomCrop 32
       padding 4, RandomHorizontalFlip, [Resize], ToTensor, Normalize) and a DataLoader with
       worker processes (pinned memory on CUDA), each batch then copied to the device.

Both train the same model from the same initial weights with the same SGD step (bf16 autocast +
channels_last on CUDA) at the same batch size: only the data path differs. After warm-up steps,
`steps` training steps are timed (CUDA synchronized at start and end). Data wait is the time the
training loop spends blocked in next(iterator), host->device copy included, over the total. On
CUDA our crop/flip/normalize kernels run on the GPU stream, so they count as step time there,
not as data wait; images/s covers everything either way. Writes a Markdown table to
benchmarks/results/pipeline-<cpu|cuda>.md stating the hardware, versions, data and settings.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import torch
import torchvision
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from benchmarks import output
from common.config import REPO
from common.data import CIFAR_MEAN, CIFAR_STD, Batches, data_origin, load_cifar10, make_splits
from common.errors import ConfigError
from common.models import MIN_IMAGE_SIZE, STEMS, build_model, check_model
from common.results import hardware, portable
from common.training import Arithmetic, param_groups, resolve_device, train_step

# Defaults; per-device values are keyed by device type. Every one can be set on the command line.
SETTINGS = dict(
    models="resnet18,resnet50",
    image_size=32,  # CIFAR's own; the pretrained recipe upsamples to 160 on a GPU
    batch_size={"cpu": 128, "cuda": 512},  # 512: the full from-scratch recipe's batch
    steps={"cpu": 20, "cuda": 100},  # timed training steps per (model, pipeline)
    warmup={"cpu": 3, "cuda": 10},  # untimed steps first: worker start-up, allocator, cuDNN
    workers=min(4, os.cpu_count() or 1),  # DataLoader worker processes of the usual pipeline
    val_size=5000,  # held out as in training: both pipelines iterate the other 45,000 images
    # The training loop's SGD (Nesterov, no weight decay on BN and biases) at a constant rate:
    # the rate does not change the cost of a step.
    lr=0.1,
    momentum=0.9,
    weight_decay=5e-4,
    label_smoothing=0.1,
    seed=0,  # same initial weights, splits and shuffling for both pipelines
)
SYNTHETIC_IMAGES = 50_000  # CIFAR-10's training set size
Stream = Iterator[tuple[torch.Tensor, torch.Tensor]]  # endless (images, labels) batches


class PilCifar(Dataset):
    """uint8 CIFAR images as PIL images through torchvision transforms: the usual pipeline."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, image_size: int) -> None:
        self.x = x.permute(0, 2, 3, 1).contiguous().numpy()  # (N, 32, 32, 3), as PIL wants
        self.y = y.tolist()
        resize = [transforms.Resize(image_size)] if image_size != x.shape[-1] else []
        augment = [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(), *resize]
        normalize = transforms.Normalize(CIFAR_MEAN, CIFAR_STD)
        self.tf = transforms.Compose([*augment, transforms.ToTensor(), normalize])

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.tf(Image.fromarray(self.x[i])), self.y[i]


def ours(x: torch.Tensor, y: torch.Tensor, args: argparse.Namespace) -> Stream:
    """Endless training batches from `Batches` over the split resident on the device."""
    gen = torch.Generator().manual_seed(SETTINGS["seed"])
    batches = Batches(
        x.to(args.device), y.to(args.device), args.batch_size, train=True, mean=CIFAR_MEAN,
        std=CIFAR_STD, image_size=args.image_size, gen=gen,
    )  # fmt: skip
    while True:
        yield from batches


def usual(x: torch.Tensor, y: torch.Tensor, args: argparse.Namespace) -> Stream:
    """Endless training batches from a DataLoader over PIL images, copied to the device."""
    cuda = args.device.type == "cuda"
    loader = DataLoader(
        PilCifar(x, y, args.image_size),
        batch_size=args.batch_size,
        shuffle=True,
        num_workers=args.workers,
        pin_memory=cuda,
        drop_last=True,
        persistent_workers=args.workers > 0,
        generator=torch.Generator().manual_seed(SETTINGS["seed"]),
    )
    fmt = torch.channels_last if cuda else torch.preserve_format
    copy = dict(device=args.device, non_blocking=cuda)
    while True:
        for xb, yb in loader:
            yield xb.to(**copy, memory_format=fmt), yb.to(**copy)


def measure(name: str, batches: Stream, args: argparse.Namespace) -> tuple[float, float]:
    """Images/s and data-wait % of `args.steps` training steps (`train_step`, the training
    loop's; SGD + Nesterov as in common.training) after `args.warmup` others."""
    device, cuda = args.device, args.device.type == "cuda"
    arithmetic = Arithmetic("bf16" if cuda else "fp32", cuda, device.type)
    model = build_model(name, stem=args.stem, seed=SETTINGS["seed"])
    model.to(device, memory_format=arithmetic.memory_format).train()
    groups = param_groups(model, SETTINGS["weight_decay"])
    opt = torch.optim.SGD(groups, lr=SETTINGS["lr"], momentum=SETTINGS["momentum"], nesterov=True)
    step = partial(train_step, model, opt, arithmetic.scaler(), arithmetic)
    smoothing = SETTINGS["label_smoothing"]
    output.timed(device, lambda: step(*next(batches), smoothing), args.warmup)
    wait = 0.0
    start = time.perf_counter()
    for _ in range(args.steps):
        fetch = time.perf_counter()
        xb, yb = next(batches)
        wait += time.perf_counter() - fetch
        step(xb, yb, smoothing)
    output.sync(device)
    total = time.perf_counter() - start
    return args.steps * args.batch_size / total, 100 * wait / total


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse and check the command line; bad values raise a one-line ConfigError."""
    load = os.getloadavg()[0]
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = p.add_argument
    add("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    add("--models", default=SETTINGS["models"], help="comma-separated")
    add("--image-size", type=int, default=SETTINGS["image_size"])
    add("--stem", help="cifar or imagenet (default: cifar at 32 px, else imagenet)")
    add("--batch-size", type=int, help="default: 128 on CPU, 512 on CUDA")
    add("--steps", type=int, help="timed steps; default: 20 on CPU, 100 on CUDA")
    add("--warmup", type=int, help="untimed steps first; default: 3 on CPU, 10 on CUDA")
    add("--workers", type=int, default=SETTINGS["workers"], help="the usual pipeline's workers")
    add("--data-dir", default=str(REPO / "data"), help="folder holding cifar-10-batches-py")
    add("--synthetic", action="store_true", help="random uint8 images of CIFAR's shape instead")
    add("--out", help="default: benchmarks/results/pipeline-<cpu|cuda>.md")
    args = p.parse_args(argv)
    args.load, args.command = load, output.command_line("pipeline.py", argv)
    args.device = resolve_device(args.device)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    if not args.models:
        raise ConfigError("--models is empty: name at least one, e.g. resnet18")
    for m in args.models:
        check_model(m)
    args.stem = args.stem or ("cifar" if args.image_size == 32 else "imagenet")
    if args.stem not in STEMS:
        raise ConfigError(f"unknown stem {args.stem!r}: choose one of {', '.join(STEMS)}")
    output.settle(
        args,
        {key: SETTINGS[key][args.device.type] for key in ("batch_size", "steps", "warmup")},
        dict(batch_size=1, steps=1, warmup=0, workers=0, image_size=MIN_IMAGE_SIZE),
    )
    args.out = Path(args.out or output.RESULTS / f"pipeline-{args.device.type}.md")
    return args


def load_split(args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor, str]:
    """The training split (uint8 images, labels) and a line saying what data it is."""
    if args.synthetic:
        gen = torch.Generator().manual_seed(SETTINGS["seed"])
        x = torch.randint(0, 256, (SYNTHETIC_IMAGES, 3, 32, 32), dtype=torch.uint8, generator=gen)
        y = torch.arange(SYNTHETIC_IMAGES) % 10
        source = (
            "SYNTHETIC random uint8 images of CIFAR-10's shape, not CIFAR-10 (both "
            "pipelines read images from memory, so their content should not change the cost)"
        )
    else:
        data = load_cifar10(args.data_dir, download=False)
        x, y = data.train_x, data.train_y
        folder = portable(str(Path(args.data_dir) / "cifar-10-batches-py"), Path.cwd())
        source = f"CIFAR-10 from {folder} ({data_origin(args.data_dir)} files)"
    split = make_splits(y, SETTINGS["val_size"], 1.0, SETTINGS["seed"]).train
    if args.batch_size > len(split):
        raise ConfigError(
            f"--batch-size {args.batch_size} exceeds the {len(split):,} training images: lower it"
        )
    held_out = f"{SETTINGS['val_size']:,} held out for validation"
    return x[split], y[split], f"{source}; the training split: {len(split):,} images ({held_out})"


def report(args: argparse.Namespace, rows: list[tuple[str, str, float, float]]) -> str:
    """The Markdown header and table."""
    cuda, load = args.device.type == "cuda", args.load
    host = f"; host: {os.cpu_count()} CPU cores" if cuda else ""
    busy = load >= 0.5 * (os.cpu_count() or 1)
    busy_note = " (other work was running: timings are not clean)" if busy else ""
    speed = {(m, p): ips for m, p, ips, _ in rows}
    lines = output.header(
        f"Data pipeline: ours vs the usual, {hardware()}",
        args.command,
        f"hardware: {hardware()}{host}; 1-min load average at start {load:.2f}{busy_note}",
        f"software: {output.software()}, torchvision {torchvision.__version__}, "
        f"Python {sys.version.split()[0]}",
        f"data: {args.data_line}",
        f"settings: device {args.device}, {args.warmup} warm-up + {args.steps} timed steps per "
        f"row, batch {args.batch_size}, image size {args.image_size}, {args.stem} stem, random "
        f"initial weights (seed {SETTINGS['seed']}), SGD lr {SETTINGS['lr']:g} Nesterov "
        f"momentum {SETTINGS['momentum']:g}, weight decay {SETTINGS['weight_decay']:g}, label "
        f"smoothing {SETTINGS['label_smoothing']:g}, "
        + ("bf16 autocast + channels_last" if cuda else "fp32")
        + f"; usual: DataLoader workers {args.workers}"
        + (", pin_memory, non_blocking copies" if cuda else ""),
        "ours: uint8 split resident on the device, batched crop + flip + normalize"
        + (" + resize" if args.image_size != 32 else "")
        + " there (`common.data.Batches`)",
        "usual: PIL images + torchvision.transforms per image + DataLoader, batch copied to the "
        "device",
        "data wait: time blocked in next(iterator), host->device copy included, over total time"
        + ("; our GPU-side augmentation counts as step time" if cuda else ""),
        output.measured(),
    ) + [
        "| model | pipeline | image size | batch | images/s | data wait % | ours / usual |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for model, pipeline, ips, wait in rows:
        ratio = f"{ips / speed[model, 'usual']:.2f}" if pipeline == "ours" else "–"
        lines.append(
            f"| {model} | {pipeline} | {args.image_size} | {args.batch_size} "
            f"| {ips:,.1f} | {wait:.1f} | {ratio} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> str:
    """Measure every (model, pipeline), print the table and write it to `--out`."""
    with output.one_line_errors("pipeline.py"):
        args = parse_args(argv)
        x, y, args.data_line = load_split(args)
    rows = []
    try:
        for model in args.models:
            for pipeline, stream in (("ours", ours), ("usual", usual)):
                batches = stream(x, y, args)
                print(f"{model} {pipeline} ...", file=sys.stderr, flush=True)
                rows.append((model, pipeline, *measure(model, batches, args)))
                del batches  # stops the DataLoader workers before the next measurement
    except torch.OutOfMemoryError:
        raise SystemExit(
            f"pipeline.py: error: out of GPU memory at batch {args.batch_size}, image size "
            f"{args.image_size}: lower --batch-size or --image-size"
        ) from None
    text = report(args, rows)
    output.write_result(args.out, text)
    return text


if __name__ == "__main__":
    main()
