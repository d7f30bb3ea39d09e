"""Errors caused by the user's input or data, reported as one line without a traceback."""


class UserError(Exception):
    """Something the user can fix; its message says what and how."""


class ArchitectureError(UserError):
    """The model config describes a net that cannot be built."""


class DataError(UserError):
    """MNIST is missing, truncated or corrupt."""


class TrainingDiverged(UserError):
    """The loss became NaN or infinite."""


class ConfigError(UserError):
    """A config value of the wrong type or out of its range (mnist_sweep/schema/)."""
