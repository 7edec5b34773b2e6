"""The benchmarks, each run as `python benchmarks/<name>.py` from the repository's root, and what
their result files share: where they go, the machine's name, the header lines, the timing."""

import os
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from common.files import write_text
from common.report import hardware
from common.training import machine_slug, resolve_device

RESULTS = Path(__file__).resolve().parent / "results"
LOAD = os.getloadavg()[0]  # read at import: the load before this benchmark's own work


def machine(device: str) -> str:
    """The device as result files name it: 'cpu-amd-epyc', 'cuda-nvidia-h200'."""
    resolved = resolve_device(device)
    return f"{resolved.type}-{machine_slug(resolved)}"


def header(title: str, script: str, argv: list[str] | None, *lines: str) -> list[str]:
    """A result file's title, its command, then one bullet per line."""
    args = sys.argv[1:] if argv is None else argv
    command = shlex.join(["python", f"benchmarks/{Path(script).name}", *args])
    return [f"# {title}", "", f"- command: `{command}`", *(f"- {x}" for x in lines), ""]


def where() -> list[str]:
    """The header lines of a measurement: hardware, software, load and date."""
    return [
        f"hardware: {hardware()}; torch {torch.__version__}, {torch.get_num_threads()} threads",
        f"1-min load average at start: {LOAD:.2f}",
        f"measured: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
    ]


def timed(device: torch.device, work: Callable[[], object], times: int = 1) -> float:
    """Seconds that `times` calls of `work` take, the device's queued work included."""
    sync = torch.cuda.synchronize if device.type == "cuda" else lambda _: None
    sync(device)
    start = time.perf_counter()
    for _ in range(times):
        work()
    sync(device)
    return time.perf_counter() - start


def write(out: str | Path, text: str) -> None:
    """Write the result file (atomically) and print it."""
    write_text(out, text)
    print(f"{text}\nwritten to {out}")
