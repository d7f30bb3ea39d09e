"""The storage's one-line refusals: the password masked where a driver echoes it, the rest
of the message intact. No database needed."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import OperationalError

from mnist_sweep.search.storage import StorageError, refuse


def _refusal(url: str, driver_message: str) -> str:
    """The line the command's boundary prints for the refusal."""
    error = OperationalError("connect", {}, Exception(driver_message))
    with pytest.raises(StorageError) as stop:
        refuse(url, error)
    return f"error: {stop.value}"


def test_a_one_letter_password_is_masked_without_mangling_the_message():
    url = "postgresql://optuna:e@db.example:5432/optuna"
    line = _refusal(url, f"connection to {url} failed: password=e refused; server closed")

    shown = "postgresql://optuna:***@db.example:5432/optuna"
    assert line.startswith(f"error: cannot reach storage {shown} (")
    assert f"connection to {shown} failed" in line
    assert "password=*** refused; server closed" in line
    assert ":e@" not in line and "password=e" not in line


def test_a_message_without_the_password_is_shown_unchanged():
    url = "postgresql://optuna:secret@db.example/optuna"
    line = _refusal(url, "could not translate host name db.example to address")
    assert "(could not translate host name db.example to address)" in line
    assert "secret" not in line
