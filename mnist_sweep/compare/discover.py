"""Finding run folders under the paths a user gives: folders, runs, globs."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from pathlib import Path

from mnist_sweep.run import record


def is_run_dir(path: Path) -> bool:
    if (path / record.STACK).is_file():  # a stacked run's folder: Hydra's files, its runs inside
        return False
    return (path / record.METRICS).is_file() or (path / record.HYDRA_OVERRIDES).is_file()


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
