"""Opening a study's storage as users type it: a URL in, an Optuna RDBStorage out, or one
line saying which storage (password masked), why not, and what to do."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import optuna

from mnist_sweep.errors import UserError, first_line
from mnist_sweep.secrets import display_url, mask_secrets

log = logging.getLogger(__name__)


class StorageError(UserError):
    """A study's storage that cannot be opened: a bad URL, a missing driver, no server."""


SWEEP_SETTING = "hydra.sweeper.storage (or MNIST_SWEEP_STORAGE)"


def refuse(url: str, error: BaseException, setting: str = SWEEP_SETTING) -> NoReturn:
    """Raise StorageError: one line on why storage `url` cannot be used; `setting` is
    where the user names another."""
    from sqlalchemy.exc import ArgumentError, DatabaseError, NoSuchModuleError, OperationalError

    shown = display_url(url)
    why = mask_secrets(first_line(getattr(error, "orig", None) or error), url)
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
