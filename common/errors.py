"""Errors that carry a one-line message telling the user what to do."""

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
