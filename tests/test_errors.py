"""The one error channel: UserError, its one line, and the boundary that prints it."""

from __future__ import annotations

import errno
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mnist_sweep.errors import (
    Interrupted,
    OutOfMemory,
    UserError,
    _ignores_sigterm,
    cannot_write,
    exit_on_user_error,
    fail,
    first_line,
    interruption,
    out_of_memory,
    sigterm_interrupts,
    stop_child_processes,
)
from tests.conftest import wait_until


def test_first_line_is_the_first_non_blank_line_or_the_type():
    assert first_line(ValueError("\n  bad value\nmore detail")) == "bad value"
    assert first_line(KeyError()) == "KeyError"


def test_an_allocation_failure_is_an_out_of_memory_user_error():
    cpu = RuntimeError(
        "[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: "
        "you tried to allocate 360000000000 bytes. Error code 12\nframe #0 ..."
    )
    error = out_of_memory(cpu)
    assert isinstance(error, OutOfMemory) and isinstance(error, UserError)
    assert "can't allocate memory" in str(error) and "data.batch_size" in str(error)
    assert "\n" not in str(error)
    assert out_of_memory(MemoryError()) is not None
    assert out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied")) is None
    assert out_of_memory(ValueError("out of memory")) is None


def test_cannot_write_gives_the_path_and_the_systems_reason():
    error = cannot_write("/runs/x/metrics.json", OSError(errno.EROFS, os.strerror(errno.EROFS)))
    assert str(error) == "cannot write /runs/x/metrics.json: Read-only file system"


def test_the_boundary_prints_one_line_and_exits_1(capsys):
    with pytest.raises(SystemExit) as exit_info, exit_on_user_error():
        raise UserError("model.w1=0: must be >= 1")
    assert exit_info.value.code == 1
    assert capsys.readouterr().err == "error: model.w1=0: must be >= 1\n"
    with pytest.raises(SystemExit):
        fail("no study 'x'")
    assert capsys.readouterr().err == "error: no study 'x'\n"
    with pytest.raises(KeyError), exit_on_user_error():  # not the user's: a traceback
        raise KeyError("bug")


def test_sigterm_raises_interrupted_within_the_block_only():
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    with pytest.raises(Interrupted) as stop, sigterm_interrupts():
        os.kill(os.getpid(), signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert isinstance(stop.value, KeyboardInterrupt)  # every Ctrl-C path serves it
    assert (stop.value.signal_name, stop.value.exit_status) == ("SIGTERM", 143)
    assert pickle.loads(pickle.dumps(stop.value)).signum == signal.SIGTERM  # crosses processes
    assert interruption(KeyboardInterrupt()).signal_name == "SIGINT"  # Python's own Ctrl-C
    assert interruption(KeyboardInterrupt()).exit_status == 130


def test_a_sigterm_handler_someone_else_set_is_left_alone():
    # A submitit job ignores SIGTERM, checkpointing on SIGUSR2 instead.
    def bypass(signum, frame):
        pass

    previous = signal.signal(signal.SIGTERM, bypass)
    try:
        with sigterm_interrupts():
            assert signal.getsignal(signal.SIGTERM) is bypass
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_stopping_children_passes_sigterm_on_and_leaves_those_that_ignore_it():
    # A child that ignores SIGTERM (as multiprocessing's resource tracker does) ends with
    # its parent: waiting for it would spend the whole grace period of a SLURM stop.
    ignores = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
    stubborn = subprocess.Popen([sys.executable, "-c", ignores])
    plain = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        wait_until(
            lambda: _ignores_sigterm(Path(f"/proc/{stubborn.pid}")),
            "SIGTERM ignored",
            lambda: stubborn.poll() is None,
        )
        started = time.monotonic()
        stop_child_processes(grace=120)
        assert time.monotonic() - started < 120  # the grace was not waited out
        assert plain.wait(timeout=5) == -signal.SIGTERM
        assert stubborn.poll() is None
    finally:
        stubborn.kill()
        plain.kill()
        stubborn.wait()
        plain.wait()
