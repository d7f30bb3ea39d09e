"""Errors caused by the user's input or data, reported as one line without a traceback."""

from __future__ import annotations

from pathlib import Path


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


class RunFolderError(UserError):
    """A folder that is not a finished run's, or whose files do not describe one trained net."""


class RunRecordError(UserError):
    """A run folder's file is missing, unreadable, or not what training writes.

    `problem` reads after the file's name ("is missing"), so that a caller
    that names the run folder itself can say `<file name> <problem>`.
    """

    def __init__(self, path: Path, problem: str) -> None:
        self.path, self.problem = path, problem
        super().__init__(f"{path} {problem}")

    def __reduce__(self) -> tuple[type, tuple[Path, str]]:
        # A job's exception crosses processes (joblib, submitit) pickled.
        return type(self), (self.path, self.problem)


def first_line(error: BaseException) -> str:
    """An exception as one line (`Type: first line of its message`): for a log line or a
    trial's fail_reason, where a driver's multi-line message would spill."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def one_line_exit(error: UserError) -> SystemExit:
    """The exit a command's boundary raises for a UserError: `error: <message>` on stderr,
    exit code 1. SystemExit passes through Hydra's and instantiate's `except Exception`."""
    return SystemExit(f"error: {error}")
