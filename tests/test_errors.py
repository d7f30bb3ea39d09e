"""The one error channel: UserError, its one line, and the boundary that prints it."""

from __future__ import annotations

import errno
import os

import pytest

from mnist_sweep.errors import (
    OutOfMemory,
    UserError,
    cannot_write,
    exit_on_user_error,
    fail,
    first_line,
    out_of_memory,
)


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
