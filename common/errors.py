"""Errors that carry a one-line message telling the user what to do, and the hook that shows
them as that one line in Jupyter."""

import re


class UserError(Exception):
    """Bad input or a missing resource: its message is the whole story, no traceback needed.
    It names run parameters in backticks (`data_dir`), as a notebook knows them; a command line
    puts its own option in their place (see `with_options`)."""


def with_options(message: str, options: dict[str, str]) -> str:
    """`message` with each backticked parameter that has a command-line option replaced by it."""
    return re.sub(r"`(\w+)`", lambda m: options.get(m.group(1), m.group(0)), message)


class ConfigError(UserError):
    """A parameter is out of range or unknown."""


class DataError(UserError):
    """CIFAR-10 is missing, malformed, or cannot be split as asked."""


class WeightsError(UserError):
    """ImageNet weights are unavailable or do not fit the model."""


class TrainingError(UserError):
    """Training diverged (a non-finite loss) or ran out of memory."""


def one_line_in_jupyter() -> None:
    """In IPython or Jupyter, show a UserError as its one line (what to do) instead of a
    traceback through the library; other errors keep theirs. Elsewhere, do nothing."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None:
        return

    def show(shell: object, etype: type, value: BaseException, tb: object, tb_offset=None):
        line = [f"{etype.__name__}: {value}"]
        shell._showtraceback(etype, value, line)  # the hook IPython and ipykernel display through
        return line

    shell.set_custom_exc((UserError,), show)
