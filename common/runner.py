"""Running the grid: its runs and their folders (state, lock, failures), one run trained from a
notebook or directly, notebooks executed by papermill in child processes, parallel jobs on this
machine's devices, and the progress a command line shows."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Generator, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from enum import StrEnum
from itertools import product
from pathlib import Path
from typing import Any, NamedTuple

import torch
from tqdm import tqdm

from . import report
from .config import LIFT, SETTINGS, RunConfig, make_config, run_name
from .data import fraction_label, fraction_title, load_cifar10
from .errors import ConfigError, UserError, one_line_in_jupyter
from .files import read_json, write_json, write_text
from .models import build_model, check_model, flops_per_image
from .training import LATEST, PREVIOUS, prune_checkpoints, resolve_device, train

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
KERNEL = "big-vs-small"  # the project's Jupyter kernel, which the README's set-up registers
SEED_FRACTIONS = (1 / 16, 0.5, 1.0)  # the sizes the six notebooks are named for
BASE_MODELS = ("resnet18", "resnet50")  # every fraction and setting; each has named notebooks
EXTRA_MODEL = "resnext50_32x4d"  # the seed's extra run: pretrained, on 100% only
# The run notebooks' parameters cell; any other RunConfig field goes into its `overrides`.
NOTEBOOK_PARAMETERS = ["model", "data_fraction", "pretrained", "seed", "epochs", "data_dir"]
NOTEBOOK_PARAMETERS += ["weights", "profile", "output_dir", "device"]
FAILED, LOCK = "failed.json", ".lock"
KERNEL_TRIES = 3  # a kernel that dies or fails to start is started again
STOP_GRACE_S = 3.0  # a stopped notebook's time to end on SIGTERM before SIGKILL
NOISE = (  # kernel log lines that are not the run's
    # jupyter_client 8 interrupts a kernel before shutting it down (_async_shutdown_kernel)
    "KeyboardInterrupt caught in kernel",
    "Kernel is running over TCP without encryption",  # ipykernel 7, on the loopback
)
EPOCH = re.compile(r" epoch (\d+/\d+): ")  # training's line after each evaluated epoch


def notebook_setup() -> None:
    """A notebook's first call: a UserError shows as its one line, and the kernel's log drops
    the line jupyter_client's interrupt before every shutdown makes it write."""
    one_line_in_jupyter()
    from IPython import get_ipython

    if kernel := getattr(get_ipython(), "kernel", None):
        kernel.log.addFilter(lambda record: NOISE[0] not in record.getMessage())


@dataclass(frozen=True)
class Run:
    """One cell of the grid for one seed."""

    setting: str
    model: str
    fraction: float
    seed: int

    @property
    def pretrained(self) -> bool:
        return self.setting == "pretrained"

    @property
    def name(self) -> str:
        return run_name(self.model, self.fraction, self.seed)

    @property
    def condition(self) -> tuple[str, str, float]:
        return (self.setting, self.model, self.fraction)

    @property
    def cost(self) -> float:
        """A relative training time, to start the longest runs first."""
        return self.fraction * flops_per_image(self.model) / flops_per_image("resnet18")

    @property
    def notebook(self) -> Path:
        """Its model's notebook at the nearest seed size, or model.ipynb for other models."""
        if self.model not in BASE_MODELS:
            return NOTEBOOKS / "model.ipynb"
        nearest = min(SEED_FRACTIONS, key=lambda f: abs(f - self.fraction))
        return NOTEBOOKS / f"{self.model}_data-{fraction_label(nearest)}.ipynb"


def build_grid(
    settings: list[str], models: list[str] | None, fractions: list[float], seeds: list[int]
) -> list[Run]:
    """All runs; without `models`, the seed's 13: ResNet-18 and -50 everywhere, ResNeXt50
    pretrained on 100%."""
    for s in settings:
        if s not in SETTINGS:
            raise ConfigError(f"unknown setting {s!r}: choose from {', '.join(SETTINGS)}")
    for m in models or []:
        check_model(m)
    runs = [Run(*cell) for cell in product(settings, models or BASE_MODELS, fractions, seeds)]
    if models is None and "pretrained" in settings and 1.0 in fractions:
        runs += [Run("pretrained", EXTRA_MODEL, 1.0, seed) for seed in seeds]
    return list(dict.fromkeys(runs))


def run_config(run: Run, output_dir: str | Path, **overrides: Any) -> RunConfig:
    """The run's configuration, in its folder under `output_dir`."""
    folder = str(Path(output_dir) / run.setting / run.name)
    return make_config(
        run.model, run.fraction, run.pretrained, run.seed, output_dir=folder, **overrides
    )


def notebook_parameters(cfg: RunConfig, extra_keys: list[str] = ()) -> dict[str, Any]:
    """What papermill injects: the parameters cell's values, `extra_keys` and a local weights
    file in `overrides`."""
    params = {k: getattr(cfg, k) for k in NOTEBOOK_PARAMETERS}
    extra = [k for k in extra_keys if k not in NOTEBOOK_PARAMETERS]
    extra += ["weights_path"] if cfg.weights_path and "weights_path" not in extra else []
    # a lifted cap must stay lifted: None there means the recipe's value
    params["overrides"] = {k: LIFT if getattr(cfg, k) is None else getattr(cfg, k) for k in extra}
    return params


def notebook_config(
    own_model: str | None, model: str, overrides: dict[str, Any] | None = None, **params: Any
) -> RunConfig:
    """A notebook's configuration from its parameters; a named notebook (`own_model`) trains
    its own model only, and `overrides` may not repeat a parameter."""
    overrides = dict(overrides or {})
    asked = overrides.get("model", model)
    if own_model is not None and asked != own_model:
        raise ConfigError(
            f"this notebook trains {own_model}: run {asked} in notebooks/model.ipynb "
            f'(model = "{asked}")'
        )
    if twice := sorted(set(overrides) & {"model", *params}):
        raise ConfigError(
            f"overrides {', '.join(twice)}: set the notebook's parameter of that name instead"
        )
    return make_config(model=model, **params, **overrides)


class State(StrEnum):
    DONE = "done"  # its metrics.json, for the same training, data and weights files
    FAILED = "failed"  # its last attempt failed: failed.json says why
    TODO = "todo"
    NOT_POSSIBLE = "not possible"  # it needs ImageNet weights this machine cannot have


class Busy(Exception):
    """Another process holds the run folder's lock."""


def same_run(metrics: dict[str, Any], cfg: RunConfig) -> bool:
    """Whether `metrics` records the run `cfg` describes: the same training, and no input file
    known on both sides changed."""
    key, saved = cfg.training_key(), metrics["config"]
    files, now = metrics["inputs"] or {}, report.input_identity(cfg.data_dir, cfg.weights_path)
    same_files = all(files.get(k) is None or now[k] is None or files[k] == now[k] for k in now)
    return {k: saved.get(k) for k in key} == key and same_files


def state(cfg: RunConfig) -> State:
    metrics = report.load_metrics(cfg.output_dir)
    if metrics and same_run(metrics, cfg):
        return State.DONE
    return State.FAILED if (Path(cfg.output_dir) / FAILED).exists() else State.TODO


def resume_epoch(cfg: RunConfig) -> int | None:
    """The epoch a run resumes from, from the checkpoint training would pick; None: none."""
    folder = Path(cfg.output_dir)
    for path in (folder / LATEST, folder / PREVIOUS):  # no LATEST while it is being replaced
        with contextlib.suppress(Exception):  # absent or unreadable: the next one
            saved = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            return len(saved["history"]) if saved.get("key") == cfg.training_key() else None
    return None


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """An exclusive lock on the run folder, released when the process dies; its file goes with
    it, so a finished run leaves none."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK
    while True:
        f = open(path, "a")  # noqa: SIM115 - held open while locked
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            raise Busy(f"{run_dir} is being run by another process") from None
        # the holder before us may have removed the file we opened: lock the one there now
        with contextlib.suppress(FileNotFoundError):
            if os.stat(path).st_ino == os.fstat(f.fileno()).st_ino:
                break
        f.close()
    try:
        yield
    finally:
        path.unlink(missing_ok=True)  # still held: no one can lock this file anew
        f.close()


def failure_reason(run_dir: str | Path) -> str | None:
    return (read_json(Path(run_dir) / FAILED) or {}).get("error")


def record_failure(run_dir: Path, reason: str, notebook: Path) -> None:
    at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    write_json(run_dir / FAILED, {"error": reason, "notebook": str(notebook), "at": at})


def mark_finished(run_dir: Path) -> None:
    """Forget an earlier failure and drop the resumable checkpoints."""
    (run_dir / FAILED).unlink(missing_ok=True)
    prune_checkpoints(run_dir)


def train_or_reuse(cfg: RunConfig) -> dict[str, Any]:
    """A notebook's run: trained in `cfg.output_dir`, or read back where that folder holds it
    finished; a one-line ConfigError where it holds another configuration's finished run or
    another process runs it. run_all.py's kernels train: run_all.py locked and checked."""
    if os.environ.get(report.EXECUTED) == "papermill":
        return train_and_save(cfg)
    folder = Path(cfg.output_dir)
    try:
        with run_lock(folder):
            metrics = report.load_metrics(folder)
            if metrics is None:
                return train_and_save(cfg)
    except Busy:
        raise ConfigError(
            f"{folder} is being run by another process: wait for it, or set output_dir to "
            "another folder"
        ) from None
    if not same_run(metrics, cfg):
        raise ConfigError(
            f"{folder} holds a finished run of another configuration: set output_dir to another "
            "folder, or delete that folder to replace its run"
        )
    print(f"{folder} already holds this run (finished {metrics['finished_at']}): reusing it")
    return metrics


def train_and_save(cfg: RunConfig, direct: bool = False) -> dict:
    """Build the model, load the data, train (resuming from a checkpoint) and save the run;
    `direct`: in run_all.py's own process, which fetched the data, with no progress bars."""
    model = build_model(
        cfg.model, cfg.pretrained, cfg.stem, cfg.weights_path, seed=cfg.seed, weights=cfg.weights
    )
    data = load_cifar10(cfg.data_dir, download=not direct)
    result = train(model, data, cfg, run_dir=cfg.output_dir, progress=not direct)
    return save_run(cfg, result, "direct" if direct else None)


def save_run(cfg: RunConfig, result: dict[str, Any], executed: str | None = None) -> dict:
    """Write the run's curves, then its metrics.json (it marks the run done), then prune."""
    metrics = report.make_metrics(cfg, result, executed)
    for metric in ("acc", "loss"):
        figure = report.plot_curves([metrics], metric)
        report.save_figure(figure, Path(cfg.output_dir) / f"{metric}.png")
    report.save_metrics(cfg.output_dir, metrics)
    prune_checkpoints(cfg.output_dir)
    return metrics


def show_run(metrics: dict[str, Any]) -> None:
    """Draw the run's accuracy and loss curves inline, and say how it went in one line."""
    import matplotlib.pyplot as plt

    for metric in ("acc", "loss"):
        report.plot_curves([metrics], metric)
    plt.show()
    print(report.summary_line(metrics))


def check_kernel(name: str) -> None:
    """A one-line UserError unless Jupyter has the kernel `name` and its Python exists."""
    from jupyter_client.kernelspec import KernelSpecManager

    specs = KernelSpecManager().find_kernel_specs()
    register = (
        f"register this environment's with `{sys.executable} -m ipykernel install --sys-prefix "
        f'--name {name} --display-name "Python ({name})"`'
    )
    if name not in specs:
        raise UserError(
            f"Jupyter has no kernel named {name!r} (it has: {', '.join(sorted(specs))}): "
            f"{register}, or pick one with --kernel"
        )
    program = Path(KernelSpecManager().get_kernel_spec(name).argv[0])
    if program.is_absolute() and not program.exists():
        raise UserError(f"the Jupyter kernel {name!r} runs {program}, which is gone: {register}")


_CHILDREN: set[subprocess.Popen] = set()  # the notebooks running now, stopped on Ctrl-C
_CHILDREN_LOCK = threading.Lock()
_STOPPED = threading.Event()


class NotebookFailed(Exception):
    """A notebook's cell raised, or its kernel could not run it: the message is one line."""


def run_notebook(
    notebook: Path, output: Path, params: dict[str, Any], kernel: str, env: dict[str, str]
) -> None:
    """Execute `notebook` into `output` with papermill in a child process whose kernel gets `env`
    (e.g. the one GPU a job owns), then export it to HTML; a kernel that dies is started again."""
    import yaml  # papermill reads -y as YAML, where JSON's 5e-05 would be a string

    command = [sys.executable, "-m", "papermill", str(notebook), str(output), "-k", kernel]
    command += ["-y", yaml.safe_dump(params), "--cwd", str(notebook.parent), "--no-progress-bar"]
    command += ["--log-level", "ERROR"]
    env = os.environ | env
    for attempt in range(1, KERNEL_TRIES + 1):
        with _CHILDREN_LOCK:
            if _STOPPED.is_set():
                raise KeyboardInterrupt
            child = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
            _CHILDREN.add(child)
        try:
            _, err = child.communicate()
        finally:
            with _CHILDREN_LOCK:
                _CHILDREN.discard(child)
        lines = [x for x in err.splitlines() if not any(n in x for n in NOISE)]
        if child.returncode == 0:
            sys.stderr.write("".join(f"{line}\n" for line in lines))
            break
        if error := cell_error(output):
            raise NotebookFailed(error)
        if attempt == KERNEL_TRIES or _STOPPED.is_set():
            raise NotebookFailed(
                next((x for x in reversed(lines) if x.strip()), "papermill failed")
            )
        time.sleep(attempt)
    export_html(output)


def cell_error(notebook: Path) -> str | None:
    """`Type: message` of the error a cell of the executed notebook raised, if one did."""
    cells = (read_json(notebook) or {}).get("cells", [])
    errors = [o for c in cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    return next((f"{o['ename']}: {o['evalue']}".strip().splitlines()[0] for o in errors), None)


def export_html(notebook: Path) -> None:
    from nbconvert import HTMLExporter

    write_text(notebook.with_suffix(".html"), HTMLExporter().from_filename(str(notebook))[0])


def stop_notebooks(final: bool = True) -> None:
    """End every notebook this process runs, its kernel first (left alone, it trains on until
    its poller notices); each keeps its last checkpoint. `final`: none starts afterwards."""
    with _CHILDREN_LOCK:
        children = list(_CHILDREN)
        if final:
            _STOPPED.set()
    for child in children:
        for stat in Path("/proc").glob("[0-9]*/stat"):  # its kernel: the process it is parent of
            with contextlib.suppress(OSError, ValueError, IndexError):
                if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == child.pid:
                    os.kill(int(stat.parent.name), signal.SIGKILL)  # checkpoints are atomic
        child.terminate()
    deadline = time.monotonic() + STOP_GRACE_S
    for child in children:
        try:
            child.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()


class Outcome(NamedTuple):
    run: Run
    ok: bool
    message: str


def execute(
    run: Run,
    cfg: RunConfig,
    *,
    direct: bool = False,
    kernel: str = KERNEL,
    extra_keys: list[str] = (),
    env: dict[str, str] | None = None,
    force: bool = False,
) -> Outcome:
    """Execute one run in its locked folder: skip it if done (`force`: retrain it), else train
    it through its notebook or `direct`ly, resuming from its checkpoint; record a failure."""
    run_dir = Path(cfg.output_dir)
    output = run_dir / f"{run.name}.ipynb"
    try:
        with run_lock(run_dir):
            if state(cfg) == State.DONE:
                if not force:
                    return Outcome(run, True, "done by another process")
                prune_checkpoints(run_dir)  # --force retrains, never resumes the finished run
            if (epoch := resume_epoch(cfg)) is not None:
                tqdm.write(f"resuming {run.setting}/{run.name} from epoch {epoch} of {cfg.epochs}")
            if direct:
                train_and_save(cfg, direct=True)
            else:
                env = (env or {}) | {report.EXECUTED: "papermill"}  # the record says how it ran
                params = notebook_parameters(cfg, extra_keys)
                run_notebook(run.notebook, output, params, kernel, env)
            if not report.load_metrics(run_dir):
                raise RuntimeError("the run finished without writing metrics.json")
            mark_finished(run_dir)
            return Outcome(run, True, "done")
    except Busy as e:
        return Outcome(run, False, str(e))
    except Exception as e:
        reason = str(e) if isinstance(e, NotebookFailed) else f"{type(e).__name__}: {e}"
        reason = reason.strip().splitlines()[0]
        if output.exists():
            with contextlib.suppress(Exception):  # the failure matters more than its HTML
                export_html(output)
        record_failure(run_dir, reason, output)
        return Outcome(run, False, reason)


def execute_scaling(
    output_dir: str, images_dir: str, results_dir: str, profile: str, kernel: str
) -> tuple[list[Path], str | None]:
    """Run the scaling notebook into `results_dir`; the figures it drew and, if it failed, why."""
    output = Path(results_dir) / "scaling.ipynb"
    output.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(images_dir) / "scaling"
    before = {f: f.stat().st_mtime_ns for f in folder.glob("*.png")}
    params = {"output_dir": output_dir, "images_dir": images_dir, "profile": profile}
    try:
        run_notebook(NOTEBOOKS / "scaling.ipynb", output, params, kernel, {})
        error = None
    except NotebookFailed as e:
        error = str(e)
    return [f for f in sorted(folder.glob("*.png")) if before.get(f) != f.stat().st_mtime_ns], error


def gpu_ids() -> list[str]:
    """The GPUs as CUDA_VISIBLE_DEVICES names them, in order."""
    if visible := os.environ.get("CUDA_VISIBLE_DEVICES"):
        return [v.strip() for v in visible.split(",") if v.strip()][: torch.cuda.device_count()]
    return [str(i) for i in range(torch.cuda.device_count())]


def job_slots(device: str, jobs: int | None) -> tuple[list[str], str | None]:
    """One slot per parallel job (None: one per usable GPU, else one): the GPU its kernels see,
    or "" for none; and a note when jobs share a GPU."""
    resolved = resolve_device(device)
    if resolved.type != "cuda":
        return [""] * (jobs or 1), None
    ids = gpu_ids() if device in ("auto", "cuda") else [gpu_ids()[resolved.index or 0]]
    slots = [ids[i % len(ids)] for i in range(jobs or len(ids))]
    if len(set(slots)) == len(slots):
        return slots, None
    return slots, f"{len(slots)} jobs on {len(set(slots))} GPU(s): runs share GPUs, each slower"


def run_locally(
    todo: list[Run], configs: dict[Run, RunConfig], slots: list[str], options: dict
) -> Iterator[Outcome]:
    """Execute `todo` here, one run per slot at a time, yielding outcomes as runs end; parallel
    CPU runs share out the cores (more threads than cores is several times slower)."""
    left, mine = list(slots), threading.local()  # each of the pool's threads owns one slot
    share = {}
    if len(slots) > 1 and not slots[0] and "OMP_NUM_THREADS" not in os.environ:
        share = {"OMP_NUM_THREADS": str(max(1, len(os.sched_getaffinity(0)) // len(slots)))}

    def job(run: Run) -> Outcome:
        gpu = mine.gpu
        device = "cuda" if gpu else "cpu"
        if options.get("direct") and gpu:  # in this process: its GPU by index
            device = f"cuda:{gpu_ids().index(gpu)}"
        cfg = dataclasses.replace(configs[run], device=device)  # not in its training_key
        return execute(run, cfg, env={"CUDA_VISIBLE_DEVICES": gpu} | share, **options)

    pool = ThreadPoolExecutor(len(slots), initializer=lambda: setattr(mine, "gpu", left.pop()))
    try:
        yield from (f.result() for f in as_completed([pool.submit(job, run) for run in todo]))
    finally:  # on Ctrl-C too: no further run starts; the caller stops those in flight
        pool.shutdown(wait=False, cancel_futures=True)


def follow(
    outcomes: Generator[Outcome, None, None],
    todo: list[Run],
    configs: dict[Run, RunConfig],
    ray_note: str | None = None,
) -> list[tuple[Run, str]]:
    """Show the runs' outcomes as they end (a bar on a terminal, with the epochs of the runs in
    flight; numbered lines elsewhere); return the failures. On Ctrl-C, stop and say what resumes
    (`ray_note` on Ray, whose checkpoints stay on its nodes)."""
    failures: list[tuple[Run, str]] = []
    terminal, total, ended, since = sys.stderr.isatty(), len(todo), set(), time.time()
    bar = tqdm(total=total, desc="grid", unit="run", dynamic_ncols=True, disable=not terminal)
    stop = threading.Event()

    def show_epochs() -> None:
        while not stop.wait(5):
            bar.set_postfix_str(in_flight([r for r in todo if r not in ended], configs, since))

    if terminal:
        threading.Thread(target=show_epochs, daemon=True).start()
    try:
        for done, outcome in enumerate(outcomes, 1):
            run = outcome.run
            ended.add(run)
            if outcome.ok:
                line = report.summary_line(report.load_metrics(configs[run].output_dir))
            else:
                line = f"FAILED {run.setting} {run.name} ({fraction_title(run.fraction)}): "
                line += outcome.message
                failures.append((run, outcome.message))
            bar.write(line if terminal else f"[{done}/{total}] {line}", file=sys.stdout)
            bar.update()
    except KeyboardInterrupt:
        outcomes.close()  # no further run starts; on Ray the tasks are cancelled
        left = [r for r in todo if r not in ended]
        raise KeyboardInterrupt(ray_note or resume_note(left, configs)) from None
    finally:
        stop.set()
        bar.close()
    return failures


def in_flight(runs: list[Run], configs: dict[Run, RunConfig], since: float) -> str:
    """The epoch each notebook run in flight has reached, as its executed notebook (which
    papermill saves every 30 s) shows it."""
    shown = []
    for run in runs:
        notebook = Path(configs[run].output_dir) / f"{run.name}.ipynb"
        with contextlib.suppress(OSError):
            if notebook.stat().st_mtime > since and (epochs := EPOCH.findall(notebook.read_text())):
                shown.append(f"{run.name} epoch {epochs[-1]}")
    return ", ".join(shown)


def resume_note(left: list[Run], configs: dict[Run, RunConfig]) -> str:
    """What the next call does with the unfinished runs `left`, as their checkpoints say."""
    epochs = {r: resume_epoch(configs[r]) for r in left}
    resumes = [f"{r.setting}/{r.name} at epoch {e}" for r, e in epochs.items() if e is not None]
    fresh = [r for r, e in epochs.items() if e is None]
    notes = ["finished runs are kept"]
    notes += [f"the next call resumes {', '.join(resumes)}"] if resumes else []
    notes += [f"{len(fresh)} unfinished run(s) start over (no checkpoint yet)"] if fresh else []
    return "; ".join(notes)
