"""What every benchmark shares: the machine's name in result files, where a result file goes,
the command line and header lines it states, the device defaults and lower bounds of its counts,
timing work on the device, writing the file, and a bad input's one line."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from common.config import REPO
from common.errors import ConfigError, UserError
from common.files import write_text
from common.training import machine_slug

RESULTS = REPO / "benchmarks" / "results"


def machine_name(device: torch.device) -> str:
    """The device as result files name it: 'cpu-amd-epyc', 'cuda-nvidia-h200'."""
    return f"{device.type}-{machine_slug(device)}"


def default_out(stem: str, device: torch.device) -> Path:
    """benchmarks/results/<stem>-<machine>.md."""
    return RESULTS / f"{stem}-{machine_name(device)}.md"


def command_line(script: str, argv: list[str] | None) -> str:
    """The command a result file states: `python benchmarks/<script>` and its arguments."""
    return shlex.join(["python", f"benchmarks/{script}", *(sys.argv[1:] if argv is None else argv)])


def header(title: str, command: str, *lines: str) -> list[str]:
    """A result file's title, its command, then one bullet per line."""
    return [f"# {title}", "", f"- command: `{command}`", *(f"- {line}" for line in lines), ""]


def software() -> str:
    return f"torch {torch.__version__}, {torch.get_num_threads()} intra-op threads"


def load_average() -> str:
    return f"1-min load average at start: {os.getloadavg()[0]:.2f}"


def measured() -> str:
    return f"measured: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"


def sync(device: torch.device) -> None:
    """Wait for the device's queued work, so that a clock read after it times that work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def settle(args: argparse.Namespace, defaults: dict[str, Any], lows: dict[str, int]) -> None:
    """Fill each option left unset from `defaults`; one below its low in `lows` is one line."""
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    for key, low in lows.items():
        if (value := getattr(args, key)) is not None and value < low:
            raise ConfigError(f"--{key.replace('_', '-')} must be at least {low}, got {value}")


def timed(device: torch.device, work: Callable[[], object], times: int = 1) -> float:
    """Seconds that `times` calls of `work` take, the device's queued work waited for."""
    sync(device)
    start = time.perf_counter()
    for _ in range(times):
        work()
    sync(device)
    return time.perf_counter() - start


def write_result(out: str | Path, text: str) -> None:
    """Write the result file (atomically) and print it."""
    write_text(out, text)
    print(text + f"\nwritten to {out}")


@contextmanager
def one_line_errors(script: str) -> Iterator[None]:
    """A bad input (UserError) ends the benchmark with its one line, not a traceback."""
    try:
        yield
    except UserError as e:
        raise SystemExit(f"{script}: error: {e}") from None
