"""URLs with passwords (a study's storage, an MLflow tracking store) as logs may show them:
the password masked, in the URL and wherever a driver's message echoes it."""

from __future__ import annotations

import re

_PASSWORD = re.compile(r"(://[^:/@]*:)([^@]*)@")
_CONNINFO_PASSWORD = re.compile(r"(password\s*=\s*)('[^']*'|\S+)", re.IGNORECASE)


def display_url(url: str | None) -> str:
    """A URL fit for logs: the password masked."""
    if not url:
        return "in memory"
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(str(url)).render_as_string(hide_password=True)
    except ArgumentError:  # not a URL SQLAlchemy can parse: mask where a password would be
        return _PASSWORD.sub(r"\1***@", str(url))


def mask_secrets(text: str, url: str) -> str:
    """A driver's message with the password masked where drivers echo it (the URL itself,
    a `password=` conninfo pair), and nowhere else: a short password must not mangle
    ordinary words."""
    if url:
        text = text.replace(url, display_url(url))
    text = _PASSWORD.sub(r"\1***@", text)
    return _CONNINFO_PASSWORD.sub(r"\1***", text)
