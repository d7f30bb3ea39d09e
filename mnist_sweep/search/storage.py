"""Opening a study's storage as users type it: a URL in, an Optuna RDBStorage out, or one
line saying which storage (password masked), why not, and what to do."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import optuna

from mnist_sweep.errors import UserError, first_line

log = logging.getLogger(__name__)

_PASSWORD = re.compile(r"(://[^:/@]*:)([^@]*)@")


class StorageError(UserError):
    """A study's storage that cannot be opened: a bad URL, a missing driver, no server."""


def display_url(url: str | None) -> str:
    """A storage URL fit for logs: the password masked."""
    if not url:
        return "in memory"
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(str(url)).render_as_string(hide_password=True)
    except ArgumentError:  # not a URL SQLAlchemy can parse: mask where a password would be
        return _PASSWORD.sub(r"\1***@", str(url))


SWEEP_SETTING = "hydra.sweeper.storage (or MNIST_SWEEP_STORAGE)"

_CONNINFO_PASSWORD = re.compile(r"(password\s*=\s*)('[^']*'|\S+)", re.IGNORECASE)


def _mask_secrets(text: str, url: str) -> str:
    """A driver's message with the password masked where drivers echo it (the URL itself,
    a `password=` conninfo pair), and nowhere else: a short password must not mangle
    ordinary words."""
    if url:
        text = text.replace(url, display_url(url))
    text = _PASSWORD.sub(r"\1***@", text)
    return _CONNINFO_PASSWORD.sub(r"\1***", text)


def refuse(url: str, error: BaseException, setting: str = SWEEP_SETTING) -> NoReturn:
    """Raise StorageError: one line on why storage `url` cannot be used; `setting` is
    where the user names another."""
    from sqlalchemy.exc import ArgumentError, DatabaseError, NoSuchModuleError, OperationalError

    shown = display_url(url)
    why = _mask_secrets(first_line(getattr(error, "orig", None) or error), url)
    if isinstance(error, (ImportError, NoSuchModuleError)):
        raise StorageError(
            f"cannot open storage {shown}: its database driver is missing ({why}); for "
            "postgresql:// run pip install -e '.[postgres]', else check the URL's dialect+driver"
        )
    if isinstance(error, ArgumentError):
        raise StorageError(
            f"storage {shown} is not a database URL ({why}); "
            "use e.g. sqlite:///outputs/optuna.db or postgresql://user:password@host/db"
        )
    if isinstance(error, DatabaseError) and not isinstance(error, OperationalError):
        raise StorageError(
            f"storage {shown} is damaged or not an Optuna database ({why}); "
            f"restore it or name another with {setting}"
        )
    raise StorageError(
        f"cannot reach storage {shown} ({why}); check that the server is running and the host, "
        f"port, user and password, or set {setting}"
    )


def open_storage(
    url: str,
    heartbeat_interval: int,
    grace_period: int,
    on_stale: Callable[[optuna.Study, optuna.trial.FrozenTrial], None] | None = None,
    attempts: int = 5,
) -> optuna.storages.RDBStorage:
    """An RDBStorage with Optuna's heartbeat, after one plain connection: a wrong URL, a
    missing driver or a server that is not there ends the command with one line."""
    from sqlalchemy import create_engine
    from sqlalchemy.exc import SQLAlchemyError

    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs = {"connect_args": {"timeout": 60}}  # workers share the file
    try:
        probe = create_engine(url, **engine_kwargs)
        with probe.connect():
            pass
        probe.dispose()
    except (ImportError, SQLAlchemyError) as e:
        refuse(url, e)
    for attempt in range(1, attempts + 1):
        try:
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                # Heartbeats let any worker tell a trial whose process died from a slow one.
                heartbeat_interval=heartbeat_interval,
                grace_period=grace_period,
                heartbeat_stale_trial_callback=on_stale,
            )
        except SQLAlchemyError as e:
            # Workers starting together on a fresh database race to create
            # Optuna's tables; a loser finds them made when it tries again.
            if attempt == attempts:
                refuse(url, e)
            log.info("storage not ready (attempt %d of %d), retrying", attempt, attempts)
            time.sleep(attempt)
    raise AssertionError("unreachable")
