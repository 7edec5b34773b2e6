"""Errors whose one line tells the user what to do, shown as that line in commands and Jupyter."""

import re
from collections.abc import Iterator
from contextlib import contextmanager


class UserError(Exception):
    """Bad input or a missing resource. Parameters named in backticks (`data_dir`) become a
    command line's options through `with_options`."""


class ConfigError(UserError):
    """A parameter is out of range or unknown."""


class DataError(UserError):
    """CIFAR-10 is missing, malformed, or cannot be split as asked."""


class WeightsError(UserError):
    """ImageNet weights are unavailable or do not fit the model."""


class TrainingError(UserError):
    """Training diverged or ran out of memory."""


def with_options(message: str, options: dict[str, str]) -> str:
    return re.sub(r"`(\w+)`", lambda m: options.get(m.group(1), m.group(0)), message)


@contextmanager
def one_line_exit(prog: str) -> Iterator[None]:
    """A command's UserError ends it with `prog: error: <message>`, not a traceback."""
    try:
        yield
    except UserError as e:
        raise SystemExit(f"{prog}: error: {e}") from None


def one_line_in_jupyter() -> None:
    """In IPython or Jupyter, show a UserError as its one line, not a traceback."""
    from IPython import get_ipython  # jupyter's, a requirement

    if (shell := get_ipython()) is None:
        return

    def show(shell: object, etype: type, value: BaseException, tb: object, tb_offset=None):
        line = [f"{etype.__name__}: {value}"]
        shell._showtraceback(etype, value, line)  # the hook IPython and ipykernel display through
        return line

    shell.set_custom_exc((UserError,), show)
