"""Errors that carry a one-line message telling the user what to do."""


class UserError(Exception):
    """Bad input or a missing resource: its message is the whole story, no traceback needed."""


class ConfigError(UserError):
    """A parameter is out of range or unknown."""


class DataError(UserError):
    """CIFAR-10 is missing, malformed, or cannot be split as asked."""


class WeightsError(UserError):
    """ImageNet weights are unavailable or do not fit the model."""


class TrainingError(UserError):
    """Training diverged (a non-finite loss) or ran out of memory."""
