"""Compare run folders: one row per run, with comparison.csv, pareto.png and curves.png.

`python -m mnist_sweep.compare PATH [PATH ...]` (or `mnist-sweep-compare`).

Reads every run folder under the given paths (`.hydra/overrides.yaml`,
`.hydra/config.yaml`, `metrics.json`), prints one row per run, and writes
`comparison.csv`, `pareto.png` and `curves.png` next to them.
"""

from __future__ import annotations

import argparse
import csv
import glob
import os
import shutil
import sys
import textwrap
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from mnist_sweep import plots
from mnist_sweep.errors import RunRecordError
from mnist_sweep.run import record
from mnist_sweep.run.record import METRICS, RunRecord, RunStatus

OVERRIDES, CONFIG, HYDRA = record.HYDRA_OVERRIDES, record.HYDRA_CONFIG, record.HYDRA_RUNTIME
CSV, PARETO, CURVES = "comparison.csv", "pareto.png", "curves.png"  # what compare writes

# A run's verdict, the table's "status": the record's status, with a completed
# run judged against the target, and a "running" run whose process is gone
# shown as failed (when its sweep says why) or incomplete.
MET, BELOW = "target met", "below target"
PRUNED, FAILED, RUNNING = RunStatus.PRUNED.value, RunStatus.FAILED.value, RunStatus.RUNNING.value
INCOMPLETE = "incomplete"
STATUSES = (MET, BELOW, PRUNED, FAILED, RUNNING, INCOMPLETE)
STATUS_ARGS = ", ".join(s.replace(" ", "-") for s in STATUSES)
NUMERIC = ("params", "test acc", "best-epoch acc", "epochs", "wall")  # right-aligned columns
MAX_CURVES = 8  # runs drawn in colour and named; beyond this, colours cannot be told apart


@dataclass
class RunRow:
    path: Path
    overrides: list[str]
    config: dict[str, Any]
    choices: dict[str, Any]  # Hydra's group choices, e.g. {"model": "small"}
    record_status: RunStatus | None = None  # metrics.json's status; None before it exists
    alive: bool = False  # for a "running" record: whether its process is still at work
    reason: str | None = None  # why it failed: its error, or for a dead run its sweep's reason
    params: int | None = None
    test_acc: float | None = None
    best_test_acc: float | None = None
    best_epoch: int | None = None
    epochs_planned: int | None = None
    wall_seconds: float | None = None
    target_acc: float | None = None
    curve: list[tuple[int, float]] = field(default_factory=list)
    label: str = ""
    verdict: str = INCOMPLETE  # set by sort_and_filter, against the target in force


def is_run_dir(path: Path) -> bool:
    return (path / METRICS).is_file() or (path / OVERRIDES).is_file()


def find_runs(paths: Iterable[str | Path]) -> tuple[list[Path], list[str]]:
    """Run folders under each path (a folder, a run, or a glob), and a warning per dud path."""
    found: dict[Path, None] = {}  # a dict keeps first-seen order and drops duplicates
    warnings = []
    for raw in paths:
        matches = (
            [Path(raw)]
            if Path(raw).exists()
            else [Path(p) for p in sorted(glob.glob(str(raw), recursive=True))]
        )
        if not matches:
            warnings.append(f"warning: {raw}: no such file or directory")
        for top in (m for m in matches if m.is_dir()):
            for root, dirs, _ in os.walk(top):
                here = Path(root)
                if is_run_dir(here):
                    found[here.resolve()] = None
                    dirs.clear()  # a run's own subfolders hold no runs
                else:
                    dirs.sort()
    return list(found), warnings


class Unreadable(Exception):
    """A run folder file that is missing, unreadable, or not what Hydra / train.py write."""


def _read(run: Path, name: Path | str, kind: type, parse: Callable[[str], Any]) -> Any:
    try:
        data = parse((run / name).read_text())
    except FileNotFoundError:
        raise Unreadable(f"{name} is missing") from None
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as e:
        raise Unreadable(f"{name} is unreadable or corrupt ({str(e).splitlines()[0]})") from None
    if not isinstance(data, kind):
        raise Unreadable(f"{name} holds {type(data).__name__}, expected {kind.__name__}")
    return data


def load_run(path: Path) -> RunRow | str:
    """One run folder as a row, or a one-line warning saying why it cannot be read."""
    try:
        # Hydra writes .hydra/ before the job starts, so it is there even for a
        # run killed at once; metrics.json only comes after the first epoch.
        overrides = _read(path, OVERRIDES, list, yaml.safe_load)
        config = _read(path, CONFIG, dict, yaml.safe_load)
        try:  # only for naming the default option of a config group, and a sweep's trial
            hydra = _read(path, HYDRA, dict, yaml.safe_load)
        except Unreadable:
            hydra = {}
        try:
            choices = dict(hydra["hydra"]["runtime"]["choices"])
        except (KeyError, TypeError, ValueError):
            choices = {}
        row = RunRow(path, [str(o) for o in overrides], config, choices)
        row.target_acc = config.get("target_acc")
        row.epochs_planned = (config.get("trainer") or {}).get("epochs")
        if not (path / METRICS).exists():
            return row
        m = RunRecord.load(path)
    except Unreadable as e:
        return f"warning: skipping {path}: {e}"
    except RunRecordError as e:
        return f"warning: skipping {path}: {Path(e.path).name} {e.problem}"
    row.record_status, row.reason = m.status, m.error
    if m.status is RunStatus.RUNNING:
        row.alive = m.still_running(path)
        if not row.alive:  # killed: its sweep, if any, may have recorded why
            row.reason = _sweep_fail_reason(path, record.sweep_trial(hydra))
    row.params, row.test_acc = m.params, m.test_acc
    row.best_test_acc, row.best_epoch = m.best_test_acc, m.best_epoch
    row.epochs_planned, row.wall_seconds = m.epochs_planned, m.wall_seconds
    row.target_acc = m.target_acc
    row.curve = [(e.epoch, float(e.test_acc)) for e in m.epochs]
    return row


def _sweep_fail_reason(run_dir: Path, trial: int | None) -> str | None:
    """Why the sweep failed this run's trial, from the report in the sweep folder around it.

    Only the process that trains a run writes its record: a trial whose process
    was killed says "running" for good, and its reason is in the sweep's study.
    """
    if trial is None:
        return None
    from mnist_sweep.search.report import fail_reasons  # optuna: only for runs of a sweep

    return fail_reasons(run_dir.parent).get(trial)


def _split(override: str) -> tuple[str, str]:
    key, _, value = override.partition("=")
    return key.lstrip("+~"), value


def differing_overrides(rows: Sequence[RunRow]) -> list[str]:
    """Overridden keys whose value is not the same in every row, in first-seen order."""
    keys = dict.fromkeys(_split(o)[0] for r in rows for o in r.overrides)
    # Compared by the value each run ran with, so `model=small` next to a run
    # that took the default small model is no difference.
    return [k for k in keys if len({override_value(r, k) for r in rows}) > 1]


def override_value(row: RunRow, key: str) -> str:
    """The run's override for key, else the value it ran with (a run may use the default)."""
    value = dict(map(_split, row.overrides)).get(key)
    if value is not None:
        return value
    if key in row.choices:
        return str(row.choices[key])
    node: Any = row.config
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return "" if node is None or isinstance(node, dict | list) else str(node)


def classify(row: RunRow, target: float | None) -> str:
    """The run's verdict: how its record stands, a completed run judged against the target."""
    if row.record_status is None:
        return INCOMPLETE  # no record: killed at once, or stopped by its config
    if row.record_status is RunStatus.RUNNING:
        if row.alive:
            return RUNNING
        return FAILED if row.reason else INCOMPLETE  # killed
    if row.record_status is not RunStatus.COMPLETED:
        return row.record_status.value  # pruned or failed
    if row.test_acc is None:
        return INCOMPLETE
    goal = target if target is not None else row.target_acc
    return MET if goal is not None and row.test_acc >= goal else BELOW


def sort_and_filter(
    rows: Sequence[RunRow],
    sort: str = "params",
    target: float | None = None,
    statuses: Sequence[str] | None = None,
    top: int | None = None,
) -> list[RunRow]:
    """Set each row's verdict, then keep, order and cut the rows the options ask for
    (`statuses`: the verdicts to keep)."""
    for row in rows:
        row.verdict = classify(row, target)
    kept = [
        r
        for r in rows
        if (target is None or (r.test_acc is not None and r.test_acc >= target))
        and (not statuses or r.verdict in statuses)
    ]
    inf = float("inf")
    keys = {  # unknown values sort last; ties go to the more accurate run
        "params": lambda r: (r.params is None, r.params or 0, -(r.test_acc or -inf)),
        "acc": lambda r: (r.test_acc is None, -(r.test_acc or 0), r.params or inf),
        "time": lambda r: (r.wall_seconds is None, r.wall_seconds or 0, r.params or inf),
    }
    kept.sort(key=keys[sort])
    return kept[:top] if top is not None else kept


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
        title=f"{len(rows)} runs", title_justify="left", box=box.SIMPLE_HEAD,
        show_edge=False, pad_edge=False, collapse_padding=True,
    )  # fmt: skip
    for i in shown:
        justify = "right" if header[i] in NUMERIC else "left"
        table.add_column(wrapped[i], justify=justify, no_wrap=True)
    styles = {
        MET: "green", BELOW: "yellow", PRUNED: "dim", FAILED: "red",
        RUNNING: "cyan", INCOMPLETE: "magenta",
    }  # fmt: skip
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


def _round(value: float | None) -> float | None:
    # metrics.json holds float32 accuracies: 99.4 is stored as 99.40000152587891.
    return None if value is None else round(value, 4)


def write_csv(rows: Sequence[RunRow], keys: Sequence[str], path: Path) -> None:
    fields = ["run", *keys, "params", "test_acc", "best_epoch_test_acc", "best_epoch"]
    fields += ["epochs_run", "epochs_planned", "wall_seconds", "target_acc", "status"]
    fields += ["overrides", "run_dir"]
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(fields)
        for r in rows:
            writer.writerow(
                [r.label, *(override_value(r, k) for k in keys), r.params, _round(r.test_acc)]
                + [_round(r.best_test_acc), r.best_epoch, len(r.curve), r.epochs_planned]
                + [r.wall_seconds, r.target_acc, r.verdict, " ".join(r.overrides), str(r.path)]
            )


def failure_notes(rows: Sequence[RunRow]) -> list[str]:
    """Why each failed run failed, where its record or its sweep says."""
    return [f"{r.label} failed: {r.reason}" for r in rows if r.verdict == FAILED and r.reason]


def completed(rows: Sequence[RunRow]) -> list[RunRow]:
    """The runs that may enter a Pareto front: a pruned or running run's accuracy
    is not a final one."""
    return [r for r in rows if r.verdict in (MET, BELOW) and r.params is not None]


def size_and_accuracy(row: RunRow) -> plots.Point:
    return (row.params or 0, row.test_acc or 0.0)


PARETO_TITLE = "accuracy vs size: fewer params and higher accuracy is better"


def pareto_results(rows: Sequence[RunRow], keys: Sequence[str]) -> list[plots.Result]:
    """The rows with a size and an accuracy, for pareto.png; the front's runs labelled."""
    front = {id(r) for r in plots.pareto_front(completed(rows), key=size_and_accuracy)}
    kinds = {MET: "target met", BELOW: "below target"}

    def label(row: RunRow) -> str | None:
        if id(row) not in front:
            return None
        # Labels with several overrides run into each other: then the run's name
        # only, which the table and comparison.csv resolve.
        return (
            f"{row.label} {keys[0]}={override_value(row, keys[0])}" if len(keys) == 1 else row.label
        )

    return [
        plots.Result(r.params, r.test_acc, kinds.get(r.verdict, "not completed"), label(r))
        for r in rows
        if r.params is not None and r.test_acc is not None
    ]


def accuracy_curves(rows: Sequence[RunRow]) -> list[plots.Curve]:
    """The first MAX_CURVES rows in the table's order in colour, named in the legend;
    the rest in grey. Pruned runs end in a cross where they stopped."""
    return [
        plots.Curve(
            r.curve,
            "highlight" if i < MAX_CURVES else "other runs",
            label=(f"{r.label} ({r.params:,} params)" if r.params else r.label)
            if i < MAX_CURVES
            else None,
            cut=r.verdict == PRUNED,
        )
        for i, r in enumerate([r for r in rows if r.curve])
    ]


def write_plots(
    rows: Sequence[RunRow], keys: Sequence[str], target: float | None, out: Path
) -> None:
    """pareto.png and curves.png of the rows, drawn by plots."""
    plots.pareto(out / PARETO, pareto_results(rows, keys), target, PARETO_TITLE)
    curves = accuracy_curves(rows)
    # The floor follows the runs that finished: a pruned or failed run stopped
    # low would squash the region where finished runs differ.
    finals = [r.test_acc for r in rows if r.verdict in (MET, BELOW) and r.test_acc is not None]
    title = "test accuracy per epoch"
    if len(curves) > MAX_CURVES:
        title += f" (the table's first {MAX_CURVES} of {len(curves)} runs in colour)"
    plots.curves(
        out / CURVES, title, curves, target=target,
        floor=plots.accuracy_floor(finals) if finals else None,
    )  # fmt: skip


def _status(text: str) -> str:
    # Accepted as target-met as well as "target met": no quoting needed in a shell.
    if text.replace("-", " ") not in STATUSES:
        raise argparse.ArgumentTypeError(f"invalid status {text!r} (choose from {STATUS_ARGS})")
    return text.replace("-", " ")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m mnist_sweep.compare", description=__doc__.splitlines()[0]
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="multirun folder, run folder or glob")
    p.add_argument(
        "--sort",
        choices=("params", "acc", "time"),
        default="params",
        help="params and time ascending, acc descending (default: params)",
    )
    p.add_argument(
        "--target",
        type=float,
        metavar="ACC",
        help="keep runs with final test acc >= ACC; also the target for status "
        "(default: each run's own target_acc)",
    )
    p.add_argument(
        "--status",
        nargs="+",
        action="extend",
        type=_status,
        metavar="STATUS",
        help=f"keep only these statuses: {STATUS_ARGS}",
    )
    p.add_argument("--top", type=int, metavar="N", help="keep the first N runs after sorting")
    p.add_argument(
        "--keys",
        nargs="+",
        action="extend",
        metavar="KEY",
        help="the table shows only these of the keys that differ (short or full names, e.g. "
        f"lr optimizer.weight_decay); {CSV} keeps them all",
    )
    p.add_argument(
        "--format", choices=("table", "md"), default="table", help="rich table or Markdown"
    )
    p.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help=f"where {CSV}, {PARETO}, {CURVES} go (default: the first PATH if a folder, else"
        " .); DIR/compare/ if DIR holds plots of its own",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.top is not None and args.top < 1:
        parser.error("--top must be at least 1")
    out = args.out or (Path(args.paths[0]) if Path(args.paths[0]).is_dir() else Path.cwd())
    if not (out / CSV).exists() and any((out / f).exists() for f in (PARETO, CURVES)):
        out = out / "compare"  # not ours: a run's own curves.png, the sweep report's pareto.png
    paths, warnings = find_runs(args.paths)
    rows = []
    for path in paths:
        loaded = load_run(path)
        if isinstance(loaded, str):
            warnings.append(loaded)
        else:
            rows.append(loaded)
    for warning in warnings:
        print(warning, file=sys.stderr)
    if not rows:
        what = "readable run folders" if paths else "run folders found"
        print(f"error: no {what} under {' '.join(args.paths)}", file=sys.stderr)
        return 1
    # Short names: each run relative to the deepest folder holding all of them.
    base = Path(os.path.commonpath([r.path.parent for r in rows]))
    for r in rows:
        r.label = r.path.relative_to(base).as_posix()
    shown = sort_and_filter(rows, args.sort, args.target, args.status, args.top)
    if not shown:
        print(f"error: all {len(rows)} runs were filtered out (--target/--status)", file=sys.stderr)
        return 1
    keys = differing_overrides(shown)
    table_keys = keys
    if args.keys:  # the table's choice only: comparison.csv keeps every key
        names = short_names(keys)
        unknown = [k for k in args.keys if k not in keys and k not in names.values()]
        if unknown:
            parser.error(
                f"--keys: {', '.join(unknown)} is not a key that differs between these runs "
                f"(those are: {', '.join(names.values()) or 'none'})"
            )
        table_keys = [k for k in keys if k in args.keys or names[k] in args.keys]
    if args.format == "md":
        print(render_markdown(shown, table_keys))
    else:
        # The terminal's width ($COLUMNS first); piped output gets 120 columns.
        width = shutil.get_terminal_size((120, 24)).columns
        left_out = render_table(shown, table_keys, width)
        if left_out:
            note = f"not shown for lack of room: {', '.join(left_out)} (all in {CSV}; --keys picks)"
            print(textwrap.fill(note, width))
        for note in failure_notes(shown):
            print(textwrap.fill(note, width, subsequent_indent="  "))
    # One line on the plots: the --target, else the target most runs were given.
    targets = Counter(r.target_acc for r in shown if r.target_acc is not None).most_common(1)
    target = args.target if args.target is not None else (targets[0][0] if targets else None)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(shown, keys, out / CSV)
    write_plots(shown, keys, target, out)
    print(f"wrote {CSV}, {PARETO}, {CURVES} to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
