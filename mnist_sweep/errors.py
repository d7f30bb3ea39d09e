"""Errors caused by the user's input, data or machine, reported as one line without a traceback.

`UserError` is the one channel: code that finds something the user can fix
raises a subclass of it, and the boundary of each command (`exit_on_user_error`,
or `fail` where nothing can be raised to a boundary) prints its message as
`error: <message>` on stderr and exits with status 1.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
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


# --- signals that stop a run -----------------------------------------------------------


class Interrupted(KeyboardInterrupt):
    """A stop asked for by a signal: SIGINT (Ctrl-C) or SIGTERM (`timeout`, `kill`, SLURM
    preemption, Kubernetes, `docker stop`). A KeyboardInterrupt, so that every path that
    ends a run or a sweep cleanly on Ctrl-C ends it cleanly on SIGTERM too."""

    def __init__(self, signum: int = signal.SIGINT, continue_with: str | None = None) -> None:
        self.signum = int(signum)
        # How to pick up where it stopped: a sweep continues by being run again.
        self.continue_with = continue_with or "re-run the same command to continue"
        super().__init__(self.signal_name)

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_status(self) -> int:
        """The shell's status for a process ended by this signal: 130 for SIGINT, 143 for
        SIGTERM."""
        return 128 + self.signum

    def line(self) -> str:
        """The one line a command stopped by this signal prints on stderr."""
        return f"interrupted by {self.signal_name}: finished results are kept; {self.continue_with}"

    def __reduce__(self) -> tuple[type, tuple[int, str]]:
        return type(self), (self.signum, self.continue_with)


def interruption(error: BaseException) -> Interrupted:
    """The Interrupted a KeyboardInterrupt stands for: Python raises a plain one on SIGINT."""
    return error if isinstance(error, Interrupted) else Interrupted(signal.SIGINT)


def _raise_interrupted(signum: int, frame: object) -> None:
    # One graceful stop: a second SIGTERM while the first is being handled ends the
    # process at once, as one would expect from repeating it.
    signal.signal(signum, signal.SIG_DFL)
    # A launcher's workers first: once this process unwinds, joblib kills them outright,
    # before they could record their runs interrupted. This project's sweeper stops its
    # own workers, after it has recorded their trials (search/workers.py).
    if _forward_to_children:
        stop_child_processes()
    raise Interrupted(signum)


_forward_to_children = True


def forward_sigterm_to_children(on: bool) -> None:
    """Whether SIGTERM is passed on to this process's children before it interrupts."""
    global _forward_to_children
    _forward_to_children = on


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """Within the block, SIGTERM raises Interrupted in the main thread as Ctrl-C raises
    KeyboardInterrupt. Left alone where it cannot work (another thread) and where someone
    else handles SIGTERM already (submitit's job bypasses it and checkpoints on USR2)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous is not signal.SIG_DFL:  # ours already (an enclosing block), or another's
        yield
        return
    signal.signal(signal.SIGTERM, _raise_interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def stop_child_processes(grace: float = 10.0) -> None:
    """Pass SIGTERM on to this process's children (a launcher's joblib workers), and give
    them `grace` seconds to record their runs interrupted: left alone, they would be killed
    at exit with their runs still marked running. A child that ignores SIGTERM (Python's
    multiprocessing resource tracker) is not waited for: it ends when this process does."""
    import os
    import time

    me = str(os.getpid())
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[1] == me and not _ignores_sigterm(stat.parent):  # the parent pid
            children.append(int(stat.parent.name))
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while children and time.monotonic() < deadline:
        children = [pid for pid in children if Path(f"/proc/{pid}").exists() and not _zombie(pid)]
        time.sleep(0.1)


def _ignores_sigterm(proc: Path) -> bool:
    try:
        status = (proc / "status").read_text()
    except OSError:
        return False
    ignored = next(
        (line.split()[1] for line in status.splitlines() if line.startswith("SigIgn:")), "0"
    )
    return bool(int(ignored, 16) & (1 << (signal.SIGTERM - 1)))


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False
