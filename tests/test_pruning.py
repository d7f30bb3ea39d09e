"""Pruners measured on finished curves: no training, fast."""

from __future__ import annotations

from pathlib import Path

import pytest

from mnist_sweep.bench.prune_replay import _finished_runs, main, replay
from tests.conftest import make_record


def write_run(folder: Path, curve: list[float], params: int = 3000) -> Path:
    make_record(curve, params=params).save(folder)
    return folder


# Completed curves in a sweep's shape: a steady winner, two that fall short, one
# that dips under the high lr and recovers but misses (the trial 4), then
# a small net that is points behind early and ends on target (what the old
# default threw away), and one that never gets close.
STEADY = [98.0, 98.8, 99.0, 99.1, 99.2, 99.3, 99.35, 99.45]
SHORT = [97.0, 97.5, 98.0, 98.3, 98.5, 98.6, 98.7, 98.8]
DIP = [97.0, 92.9, 96.5, 98.0, 98.6, 98.9, 99.0, 99.13]
LATE = [96.0, 93.0, 97.5, 98.6, 99.0, 99.2, 99.38, 99.42]
HOPELESS = [90.0, 91.0, 92.0, 92.5, 93.0, 93.0, 93.1, 93.2]


def sweep_of_curves(tmp_path: Path) -> list[Path]:
    curves = [STEADY, SHORT, DIP, SHORT, LATE, HOPELESS]
    return [write_run(tmp_path / f"run{i}", c) for i, c in enumerate(curves)]


def test_target_pruner_throws_away_the_late_starter(tmp_path):
    result = replay("target", _finished_runs(sweep_of_curves(tmp_path)), target=99.4)
    assert result["met_target"] == 2
    assert result["missed"] == 1 and result["miss_rate"] == 0.5


def test_reachable_pruner_keeps_it_and_still_prunes_the_hopeless(tmp_path):
    runs = _finished_runs(sweep_of_curves(tmp_path))
    assert [r.epochs[1].test_acc for r in runs][4] == 93.0  # the late starter is 5th
    result = replay("reachable", runs, target=99.4)
    assert result["met_target"] == 2 and result["missed"] == 0
    assert result["pruned"] == 1  # the hopeless one, after the 5-epoch warm-up
    assert result["epochs_saved"] == pytest.approx((8 - 5) / (6 * 8))


def test_replay_cli_prints_a_row_per_pruner_and_refuses_empty_input(tmp_path, capsys):
    dirs = sweep_of_curves(tmp_path)
    assert main([*map(str, dirs), "--pruner", "target", "--pruner", "reachable"]) == 0
    out = capsys.readouterr().out
    assert "| target |" in out and "| reachable |" in out
    assert main([str(tmp_path / "nothing"), "--pruner", "target"]) == 1
    assert "completed run" in capsys.readouterr().err
