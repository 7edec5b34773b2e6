"""The grid's progress as a command line shows it: one bar over the runs on a terminal, plain
numbered lines where the output goes to a file or a pipe (a bar's carriage returns would glue
the result lines together there)."""

from __future__ import annotations

import sys
from collections.abc import Generator

from tqdm import tqdm

from .config import RunConfig
from .data import fraction_title
from .grid import Run
from .report import load_metrics, summary_line
from .sweep import Outcome


def follow(
    outcomes: Generator[Outcome, None, None], total: int, configs: dict[Run, RunConfig], resume: str
) -> list[tuple[Run, str]]:
    """Show the runs' outcomes as they end; return the failures. On Ctrl-C, close `outcomes`
    (no further run starts; on Ray the tasks are cancelled) and raise KeyboardInterrupt saying
    what becomes of the unfinished runs (`resume`): the caller stops what still runs here."""
    failures: list[tuple[Run, str]] = []
    if not total:
        return failures
    terminal = sys.stderr.isatty()
    bar = tqdm(total=total, desc="grid", unit="run", dynamic_ncols=True, disable=not terminal)
    try:
        for done, outcome in enumerate(outcomes, 1):
            run = outcome.run
            if outcome.ok:
                line = summary_line(load_metrics(configs[run].output_dir))
            else:
                line = (
                    f"FAILED {run.setting} {run.name} "
                    f"({fraction_title(run.fraction)}): {outcome.message}"
                )
                failures.append((run, outcome.message))
            bar.write(line if terminal else f"[{done}/{total}] {line}", file=sys.stdout)
            bar.update()
    except KeyboardInterrupt:
        outcomes.close()  # the generator's cleanup runs now
        raise KeyboardInterrupt(f"finished runs are kept and {resume}") from None
    finally:
        bar.close()
    return failures
