"""Errors caused by the user's input, data or machine, reported as one line without a traceback.

`UserError` is the one channel: code that finds something the user can fix
raises a subclass of it, and the boundary of each command (`exit_on_user_error`,
or `fail` where nothing can be raised to a boundary) prints its message as
`error: <message>` on stderr and exits with status 1.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn


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


class WriteError(UserError):
    """A file cannot be written: the disk is full or read-only, or the folder is not ours."""


class OutOfMemory(UserError):
    """The device ran out of memory for the net and its batch."""


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
    """What a one-line report quotes of an exception raised by a library: the first
    non-blank line of its message, else the name of its type."""
    for line in str(error).splitlines():
        if line.strip():
            return line.strip()
    return type(error).__name__


def cannot_write(path: str | Path, error: OSError) -> WriteError:
    """The WriteError for an OSError met writing `path`, with the system's reason
    ("No space left on device", "Read-only file system", "Permission denied")."""
    return WriteError(f"cannot write {path}: {error.strerror or first_line(error)}")


# The messages of allocators that could not find the memory asked for: torch's
# CPU allocator raises a RuntimeError, CUDA's a torch.OutOfMemoryError (a RuntimeError).
_ALLOCATION_FAILED = ("can't allocate memory", "out of memory")


def out_of_memory(error: BaseException) -> OutOfMemory | None:
    """The OutOfMemory an exception from torch stands for, or None if it is another error."""
    if not isinstance(error, MemoryError | RuntimeError):
        return None
    text = first_line(error)
    if not isinstance(error, MemoryError) and not any(s in text for s in _ALLOCATION_FAILED):
        return None
    return OutOfMemory(f"out of memory ({text}); lower the model's widths or data.batch_size")


def report(message: str) -> int:
    """Print `error: <message>` on stderr; returns 1, the exit status that goes with it
    (for a command's main() that returns its status)."""
    print(f"error: {message}", file=sys.stderr)
    return 1


def fail(message: str) -> NoReturn:
    """Print `error: <message>` on stderr and exit with status 1.

    For code that runs where a raised UserError would reach no boundary of ours:
    Hydra prints a traceback for any exception a sweeper or launcher raises, but
    lets SystemExit through.
    """
    raise SystemExit(report(message))


@contextlib.contextmanager
def exit_on_user_error() -> Iterator[None]:
    """The boundary of a command (as a `with` block or a decorator): a UserError raised
    inside ends the process through `fail`, with its one line and exit status 1."""
    try:
        yield
    except UserError as e:
        fail(str(e))
