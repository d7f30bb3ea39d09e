"""The table of runs: one row per run, the keys that differ as columns, fitted to the
terminal (rich) or written as Markdown."""

from __future__ import annotations

from collections.abc import Sequence

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from mnist_sweep.compare.runs import RunRow, override_value
from mnist_sweep.compare.verdict import (
    BELOW,
    FAILED,
    INCOMPLETE,
    INTERRUPTED,
    MET,
    PRUNED,
    RUNNING,
)

NUMERIC = ("params", "test acc", "best-epoch acc", "epochs", "wall")  # right-aligned columns


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def short_names(keys: Sequence[str]) -> dict[str, str]:
    """Each key's shortest dotted suffix that no other key ends with: `model.w1` is
    `w1`, but `model.p` beside `dropout.p` stays whole."""
    names = {}
    for key in keys:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            name = ".".join(parts[-n:])
            if not any(other != key and f".{other}".endswith(f".{name}") for other in keys):
                break
        names[key] = name
    return names


def short_value(text: str) -> str:
    """A long float to 3 significant digits (0.01456519136895919: 0.0146); anything else,
    and a float a user typed short (0.9995), as is."""
    if text.lstrip("+-").isdigit():
        return text  # an integer: every digit is meaningful
    try:
        value = float(text)
    except ValueError:
        return text
    # A short value was typed on purpose; rounding it could show 0.9995 as 1.
    return text if len(text) <= 7 else f"{value:.3g}"


def table_rows(rows: Sequence[RunRow], keys: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    """Header and formatted cells shared by the rich and Markdown tables: swept keys by
    their short names, their values rounded (comparison.csv keeps both whole)."""
    names = short_names(keys)
    header = ["run", *(names[k] for k in keys), "params", "test acc", "best-epoch acc"]
    header += ["epochs", "wall", "status"]
    cells = [
        [
            r.label,
            *(short_value(override_value(r, k)) for k in keys),
            "" if r.params is None else f"{r.params:,}",
            "" if r.test_acc is None else f"{r.test_acc:.2f}",
            "" if r.best_test_acc is None else f"{r.best_test_acc:.2f} (ep {r.best_epoch})",
            f"{len(r.curve)}/{r.epochs_planned or '?'}",
            _duration(r.wall_seconds),
            r.verdict,
        ]
        for r in rows
    ]
    return header, cells


KEY_COLUMNS = ("run", "params", "test acc", "status")  # always shown, never cut
GAP = 2  # characters between two columns of the terminal table


def _two_lines(name: str) -> str:
    """A long header split after the underscore that best halves it (label_/smoothing),
    so that a column is as wide as its values, not its name."""
    cuts = [i + 1 for i, c in enumerate(name) if c == "_" and 0 < i < len(name) - 1]
    if len(name) <= 8 or not cuts:
        return name
    cut = min(cuts, key=lambda i: max(i, len(name) - i))
    return f"{name[:cut]}\n{name[cut:]}"


def fit_columns(
    header: Sequence[str], cells: Sequence[Sequence[str]], width: int
) -> tuple[list[int], int]:
    """The columns that fit in `width` characters, and the width they take: the key
    columns always, then the others left to right, each if it fits whole (a cut
    value cannot be read)."""
    natural = [
        max(len(line) for text in (h, *(row[i] for row in cells)) for line in text.split("\n"))
        for i, h in enumerate(header)
    ]
    shown = {i for i, h in enumerate(header) if h in KEY_COLUMNS}
    used = sum(natural[i] for i in shown) + GAP * (len(shown) - 1)
    for i in range(len(header)):
        if i not in shown and used + GAP + natural[i] <= width:
            shown.add(i)
            used += GAP + natural[i]
    return sorted(shown), used


def render_table(rows: Sequence[RunRow], keys: Sequence[str], width: int) -> list[str]:
    """Print the table within `width` characters (wider only if the key columns alone
    are: they are never cut); returns the names of the columns left out for lack of room."""
    header, cells = table_rows(rows, keys)
    wrapped = [_two_lines(h) if 1 <= i <= len(keys) else h for i, h in enumerate(header)]
    shown, used = fit_columns(wrapped, cells, width)
    table = Table(
        title=f"{len(rows)} runs",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
    )
    for i in shown:
        justify = "right" if header[i] in NUMERIC else "left"
        table.add_column(wrapped[i], justify=justify, no_wrap=True)
    styles = {
        MET: "green",
        BELOW: "yellow",
        PRUNED: "dim",
        FAILED: "red",
        INTERRUPTED: "magenta",
        RUNNING: "cyan",
        INCOMPLETE: "magenta",
    }
    for row, line in zip(rows, cells, strict=True):
        # Text, not markup: a value such as [8,16] is not a style.
        table.add_row(*(Text(line[i]) for i in shown), style=styles[row.verdict])
    Console(width=max(width, used)).print(table)
    return [header[i] for i in range(len(header)) if i not in shown]


def render_markdown(rows: Sequence[RunRow], keys: Sequence[str]) -> str:
    header, cells = table_rows(rows, keys)
    # `|` inside a cell (e.g. an override value) would split the Markdown row.
    lines = [header, ["---:" if h in NUMERIC else "---" for h in header], *cells]
    return "\n".join(
        "| " + " | ".join(c.replace("|", "\\|") for c in line) + " |" for line in lines
    )
