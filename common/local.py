"""Executing the grid on this machine: as many runs at once as there are jobs, each job on its
own device. On a machine with GPUs a job owns one GPU, and its notebooks' kernels see that GPU
alone (CUDA_VISIBLE_DEVICES), so nothing lands on GPU 0 by accident (direct runs get it by
index); more jobs than GPUs share them, only when asked for. On a CPU the jobs share the cores."""

from __future__ import annotations

import os
import queue
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field

from .config import RunConfig
from .grid import Run
from .sweep import Outcome, execute
from .training import resolve_device


@dataclass(frozen=True)
class Slot:
    """Where one job runs its notebooks: the `device` parameter they get, and the environment
    their kernels start with (which GPU they see)."""

    device: str
    env: dict[str, str] = field(default_factory=dict)


def gpu_ids() -> list[str]:
    """The machine's GPUs as CUDA_VISIBLE_DEVICES names them: this process's visible ones,
    in order (indices or UUIDs)."""
    import torch

    if visible := os.environ.get("CUDA_VISIBLE_DEVICES"):
        return [v.strip() for v in visible.split(",") if v.strip()][: torch.cuda.device_count()]
    return [str(i) for i in range(torch.cuda.device_count())]


def job_slots(device: str, jobs: int | None) -> tuple[list[Slot], str | None]:
    """One slot per parallel job, and a note when jobs share a GPU.

    `jobs` None: one job per GPU that `device` (auto or cuda) can use, else one. `cuda:N` pins
    every job to GPU N; `cpu` hides the GPUs from the kernels (a CPU run, labelled so)."""
    resolved = resolve_device(device)
    if resolved.type != "cuda":
        return [Slot("cpu", {"CUDA_VISIBLE_DEVICES": ""})] * (jobs or 1), None
    ids = gpu_ids()
    if device in ("auto", "cuda"):
        jobs = jobs or len(ids)
        chosen = [ids[i % len(ids)] for i in range(jobs)]
    else:  # cuda:N
        jobs = jobs or 1
        chosen = [ids[resolved.index or 0]] * jobs
    slots = [Slot("cuda", {"CUDA_VISIBLE_DEVICES": gpu}) for gpu in chosen]
    gpus = len(set(chosen))
    if gpus == jobs:
        return slots, None
    return slots, (
        f"{jobs} jobs on {gpus} GPU{'s' * (gpus != 1)}: runs share GPUs, so each is slower and "
        "the summary leaves them out of its time estimates"
    )


def run_locally(
    todo: list[Run], configs: dict[Run, RunConfig], slots: list[Slot], options: dict
) -> Iterator[Outcome]:
    """Execute `todo` here, one run per slot at a time; yield outcomes as runs end.

    Parallel CPU runs share the cores: each kernel gets its share as torch threads, unless
    OMP_NUM_THREADS is set (more threads than cores makes every run several times slower). CPU
    results change with the thread count (float rounding, grown over training). Interrupted, it
    starts no further run and leaves those in flight to the caller, which stops their kernels
    (`sweep.stop_kernels`) or ends the process (direct runs)."""
    free: queue.Queue[Slot] = queue.Queue()
    for slot in slots:
        free.put(slot)
    cpu_share = {}
    if len(slots) > 1 and slots[0].device == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        cpu_share = {"OMP_NUM_THREADS": str(max(1, len(os.sched_getaffinity(0)) // len(slots)))}

    def job(run: Run) -> Outcome:
        slot = free.get()
        device = slot.device
        if options.get("direct") and device == "cuda":  # in this process: its GPU by index
            device = f"cuda:{gpu_ids().index(slot.env['CUDA_VISIBLE_DEVICES'])}"
        try:
            return execute(run, configs[run], device=device, env=slot.env | cpu_share, **options)
        finally:
            free.put(slot)

    pool = ThreadPoolExecutor(max_workers=len(slots))
    try:
        yield from (f.result() for f in as_completed([pool.submit(job, run) for run in todo]))
    finally:  # on Ctrl-C too, where waiting for the runs in flight would wait for their end
        pool.shutdown(wait=False, cancel_futures=True)
