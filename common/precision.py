"""Arithmetic of a run: mixed precision and memory layout, chosen per device and per model.

One code path serves every device: `Arithmetic` wraps the autocast context, the gradient scaler
and the memory format, and the training loop uses them whatever the device. `precision='auto'`
picks, on a GPU, bf16 where it is native (compute capability 8.0 and up), fp16 with a gradient
scaler on the tensor-core GPUs before that (7.x), fp32 below. On a CPU nothing is assumed: the
run's own model is timed for a few training steps in fp32 and in bf16 + channels-last, the faster
wins, and the verdict is cached per CPU model, thread count, torch version and configuration.
Also here: the machine's name as the benchmarks and results state it, and whether torch can use
its GPU.
"""

from __future__ import annotations

import contextlib
import copy
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .files import read_json, write_json

PRECISIONS = ("auto", "bf16", "fp16", "fp32")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
# The CPU probe: untimed steps first (allocator, oneDNN kernel choice), then timed ones.
PROBE_WARMUP_STEPS = 1
PROBE_STEPS = 2
# At most this batch in the probe: bf16 without native support runs many times slower than fp32
# (benchmarks/results/precision-cpu-amd-epyc.md), so a probe at the full recipe's batch 512
# would cost minutes.
PROBE_MAX_BATCH = 32
NVIDIA_DRIVER = Path("/proc/driver/nvidia/version")  # there while an NVIDIA driver is loaded
_reported: set[str] = set()  # the reasons already printed by this process


@dataclass(frozen=True)
class Arithmetic:
    """How a run computes: autocast dtype (fp32: none), memory format, gradient scaling."""

    precision: str  # bf16 | fp16 | fp32
    channels_last: bool
    device_type: str  # cpu | cuda

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def autocast(self) -> contextlib.AbstractContextManager:
        """The forward pass's context: autocast to bf16/fp16, or nothing for fp32."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=DTYPES[self.precision])

    def scaler(self) -> torch.amp.GradScaler:
        """A gradient scaler, active for fp16 only (bf16 has fp32's exponent range). Its
        overflow check waits for the device once per step: fp16's price on pre-bf16 GPUs."""
        return torch.amp.GradScaler(self.device_type, enabled=self.precision == "fp16")

    def describe(self) -> str:
        layout = " + channels-last" if self.channels_last else ""
        return ("fp32" if self.precision == "fp32" else f"{self.precision} autocast") + layout


def gpu_precision(device: torch.device) -> str:
    """bf16 where the GPU computes it natively, fp16 (+ scaler) on tensor cores, else fp32."""
    major, _ = torch.cuda.get_device_capability(device)
    return "bf16" if major >= 8 else "fp16" if major >= 7 else "fp32"


def train_throughput(
    model: nn.Module,
    arithmetic: Arithmetic,
    batch_size: int,
    image_size: int,
    steps: int,
    give_up_after: float | None = None,
) -> float:
    """Training images/s of a copy of `model` on random data, after PROBE_WARMUP_STEPS untimed
    steps; 0.0 when the warm-up alone takes more than `give_up_after` seconds. The model, the
    global RNG and the caller's gradients are left untouched."""
    device = next(model.parameters()).device
    probe = copy.deepcopy(model).to(memory_format=arithmetic.memory_format).train()
    opt = torch.optim.SGD(probe.parameters(), lr=1e-3, momentum=0.9)
    scaler = arithmetic.scaler()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch_size, 3, image_size, image_size, generator=gen).to(device)
    x = x.contiguous(memory_format=arithmetic.memory_format)
    y = torch.randint(0, 10, (batch_size,), generator=gen).to(device)
    begun = start = time.perf_counter()
    for i in range(PROBE_WARMUP_STEPS + steps):
        if i == PROBE_WARMUP_STEPS:
            _sync(device)
            start = time.perf_counter()
            if give_up_after is not None and start - begun > give_up_after:
                return 0.0
        with arithmetic.autocast():
            loss = F.cross_entropy(probe(x).float(), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    _sync(device)
    return steps * batch_size / (time.perf_counter() - start)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cache_file() -> Path:
    """Where the CPU verdicts are kept: $XDG_CACHE_HOME/big-vs-small/precision.json."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "big-vs-small" / "precision.json"


def cpu_name() -> str:
    """The CPU model as /proc/cpuinfo names it (the machine type where it does not)."""
    import platform

    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def driver_version() -> str | None:
    """The version of the loaded NVIDIA driver, as /proc names it."""
    with contextlib.suppress(OSError):
        found = re.search(r"\s(\d+\.\d+(?:\.\d+)?)\s", NVIDIA_DRIVER.read_text())
        return found[1] if found else None
    return None


def unusable_gpu() -> str | None:
    """Why torch cannot use this machine's NVIDIA GPU, in one line; None where it can, where
    there is none, or where CUDA_VISIBLE_DEVICES hides them on purpose."""
    if torch.cuda.is_available() or os.environ.get("CUDA_VISIBLE_DEVICES") in ("", "-1"):
        return None
    if not NVIDIA_DRIVER.exists() and shutil.which("nvidia-smi") is None:
        return None
    build = f"torch {torch.__version__} is built "
    if torch.version.cuda is None:
        why = build + "without CUDA"
    else:
        driver = driver_version() or "(version unknown)"
        why = build + f"for CUDA {torch.version.cuda}, which NVIDIA driver {driver} does not run"
    return (
        f"an NVIDIA GPU is here but torch cannot use it: {why}; install torch's build for the "
        "CUDA version nvidia-smi shows (pip install torch torchvision --index-url "
        "https://download.pytorch.org/whl/cuXXX, see README) or a newer driver. Using the CPU."
    )


def cuda_usable() -> bool:
    """torch.cuda.is_available(); where an NVIDIA GPU is there all the same, says once why not."""
    if torch.cuda.is_available():
        return True
    reason = unusable_gpu()
    if reason and reason not in _reported:
        _reported.add(reason)
        print(reason, file=sys.stderr)
    return False


def machine_slug(device: torch.device) -> str:
    """The GPU's or the CPU's model as a file-name part: 'amd-epyc', 'nvidia-h100-80gb-hbm3'."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def cpu_precision(model: nn.Module, what: str, batch_size: int, image_size: int) -> str:
    """'bf16' or 'fp32', whichever trains `model` faster on this CPU, measured once per CPU
    model, thread count, torch version and configuration (`what` names the model and stem)."""
    key = (
        f"{cpu_name()} | {torch.get_num_threads()} threads | torch {torch.__version__} | "
        f"{what} | {image_size} px | batch {batch_size}"
    )
    path = cache_file()
    cache: dict[str, Any] = read_json(path) or {}
    if key in cache and cache[key].get("precision") in ("bf16", "fp32"):
        return cache[key]["precision"]
    # fp32 first; bf16 is given up on once its warm-up alone outlasts all of fp32's steps
    batch = min(batch_size, PROBE_MAX_BATCH)
    fp32 = train_throughput(model, Arithmetic("fp32", False, "cpu"), batch, image_size, PROBE_STEPS)
    fp32_seconds = (PROBE_WARMUP_STEPS + PROBE_STEPS) * batch / fp32
    bf16 = train_throughput(
        model, Arithmetic("bf16", True, "cpu"), batch, image_size, PROBE_STEPS, fp32_seconds
    )
    speeds = {"fp32": fp32, "bf16": bf16}
    choice = max(speeds, key=speeds.get)
    cache[key] = {
        "precision": choice,
        **{f"{k}_images_per_s": round(v, 1) for k, v in speeds.items()},
    }
    with contextlib.suppress(OSError):  # a read-only home only costs the next run a probe
        write_json(path, cache)
    tqdm.write(
        f"precision auto on this CPU ({what}, {image_size} px, batch {batch_size}): fp32 "
        f"{fp32:.0f} images/s, bf16 + channels-last "
        f"{f'{bf16:.0f}' if bf16 else 'gave up (far slower)'} -> {choice}"
    )
    return choice


def choose_arithmetic(
    precision: str,
    channels_last: bool | None,
    device: torch.device,
    model: nn.Module,
    what: str,
    batch_size: int,
    image_size: int,
) -> Arithmetic:
    """Resolve a run's `precision` and `channels_last` settings on `device` (see the module
    docstring); `channels_last` None follows the precision: on with bf16/fp16, off with fp32."""
    if precision == "auto":
        if device.type == "cuda":
            precision = gpu_precision(device)
        else:
            precision = cpu_precision(model, what, batch_size, image_size)
    if channels_last is None:
        channels_last = precision != "fp32"
    return Arithmetic(precision, bool(channels_last), device.type)
