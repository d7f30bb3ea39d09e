"""Compare run folders: one row per run, with comparison.csv, pareto.png and curves.png.

`python -m mnist_sweep.compare PATH [PATH ...]` (or `mnist-sweep-compare`).

Reads every run folder under the given paths (`.hydra/overrides.yaml`,
`.hydra/config.yaml`, `metrics.json`), prints one row per run, and writes
`comparison.csv`, `pareto.png` and `curves.png` next to them.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import textwrap
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from mnist_sweep.compare import figures
from mnist_sweep.compare.discover import find_runs
from mnist_sweep.compare.export import CSV, write_csv
from mnist_sweep.compare.figures import CURVES, PARETO
from mnist_sweep.compare.layout import render_markdown, render_table, short_names
from mnist_sweep.compare.runs import RunRow, differing_overrides, load_run
from mnist_sweep.compare.verdict import STATUSES, failure_notes, sort_and_filter
from mnist_sweep.errors import UserError, report

STATUS_ARGS = ", ".join(s.replace(" ", "-") for s in STATUSES)


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


def load_rows(paths: Sequence[str]) -> list[RunRow]:
    """Every readable run under the paths, each labelled by its path relative to the
    deepest folder holding all of them; a warning on stderr for each one skipped."""
    found, warnings = find_runs(paths)
    rows = []
    for path in found:
        loaded = load_run(path)
        if isinstance(loaded, str):
            warnings.append(loaded)
        else:
            rows.append(loaded)
    for warning in warnings:
        print(warning, file=sys.stderr)
    if not rows:
        what = "readable run folders" if found else "run folders found"
        raise UserError(f"no {what} under {' '.join(paths)}")
    base = Path(os.path.commonpath([r.path.parent for r in rows]))
    for r in rows:
        r.label = r.path.relative_to(base).as_posix()
    return rows


def show(rows: Sequence[RunRow], keys: Sequence[str], markdown: bool) -> None:
    """The table on stdout, with what it leaves out and why each failed run failed."""
    if markdown:
        print(render_markdown(rows, keys))
        return
    # The terminal's width ($COLUMNS first); piped output gets 120 columns.
    width = shutil.get_terminal_size((120, 24)).columns
    left_out = render_table(rows, keys, width)
    if left_out:
        note = f"not shown for lack of room: {', '.join(left_out)} (all in {CSV}; --keys picks)"
        print(textwrap.fill(note, width))
    for note in failure_notes(rows):
        print(textwrap.fill(note, width, subsequent_indent="  "))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.top is not None and args.top < 1:
        parser.error("--top must be at least 1")
    out = args.out or (Path(args.paths[0]) if Path(args.paths[0]).is_dir() else Path.cwd())
    if not (out / CSV).exists() and any((out / f).exists() for f in (PARETO, CURVES)):
        out = out / "compare"  # not ours: a run's own curves.png, the sweep report's pareto.png
    try:
        rows = load_rows(args.paths)
        shown = sort_and_filter(rows, args.sort, args.target, args.status, args.top)
        if not shown:
            raise UserError(f"all {len(rows)} runs were filtered out (--target/--status)")
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
        show(shown, table_keys, args.format == "md")
        # One line on the plots: the --target, else the target most runs were given.
        targets = Counter(r.target_acc for r in shown if r.target_acc is not None).most_common(1)
        target = args.target if args.target is not None else (targets[0][0] if targets else None)
        write_csv(shown, keys, out / CSV)
        figures.write_plots(shown, keys, target, out)
    except UserError as e:
        return report(str(e))
    print(f"wrote {CSV}, {PARETO}, {CURVES} to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
