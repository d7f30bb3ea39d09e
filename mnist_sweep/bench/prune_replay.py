"""Measure a pruner on finished runs.

    python -m mnist_sweep.bench.prune_replay RUN_DIR... --pruner NAME

Every run folder given is a training that ran to its last epoch, so its curve
says where a pruned trial would have ended. The runs are fed, in the order of
their finish, to an in-memory study with the named pruner (a config of
conf/hydra/sweeper/pruner/): each run reports its epochs as a sweep trial
would, and is stopped where the pruner would have stopped it (later runs then
see it as pruned, as in a real sweep). Printed per pruner: how many runs met
the target, how many of those it would have pruned (its misses: answers
thrown away), and the share of all epochs it would have saved.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any

import optuna
from omegaconf import OmegaConf

from mnist_sweep.config import CONF_DIR
from mnist_sweep.errors import RunRecordError
from mnist_sweep.run import record
from mnist_sweep.run.record import RunRecord, RunStatus
from mnist_sweep.schema.sweeper import Goal
from mnist_sweep.search.pruning import build_pruner, selection_accuracy, to_reported


def _finished_runs(dirs: list[Path]) -> list[RunRecord]:
    """The completed runs among these folders, in the order they finished."""
    runs = []
    for d in dirs:
        try:
            metrics = RunRecord.load(d)
        except RunRecordError:
            continue
        if metrics.status is RunStatus.COMPLETED and metrics.epochs:
            runs.append(((d / record.METRICS).stat().st_mtime, metrics))
    return [metrics for _, metrics in sorted(runs, key=lambda r: r[0])]


def replay(pruner_name: str, runs: list[RunRecord], target: float) -> dict[str, Any]:
    """Feed the runs to a fresh study with this pruner; what it would have pruned and saved."""
    pruner_cfg = OmegaConf.load(CONF_DIR / "hydra" / "sweeper" / "pruner" / f"{pruner_name}.yaml")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner = build_pruner(pruner_cfg)
    study = optuna.create_study(directions=Goal.SMALLEST.directions, pruner=pruner)
    study.set_user_attr("target_acc", target)
    met = missed = pruned = epochs_run = epochs_all = 0
    for run in runs:
        curve = [selection_accuracy(e.to_dict()) for e in run.epochs]
        final = selection_accuracy(run.to_dict())
        met += final >= target
        epochs_all += len(curve)
        trial = study.ask()
        stopped_at = None
        for epoch, accuracy in enumerate(curve, start=1):
            trial.report(to_reported(study, accuracy), step=epoch)
            if epoch < len(curve) and trial.should_prune():
                stopped_at = epoch
                break
        if stopped_at is None:
            epochs_run += len(curve)
            trial.set_constraint("accuracy", target - final)
            study.tell(trial, float(run.params))
        else:
            epochs_run += stopped_at
            pruned += 1
            missed += final >= target
            trial.set_constraint("accuracy", target - curve[stopped_at - 1])
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    return {
        "pruner": pruner_name,
        "runs": len(runs),
        "met_target": met,
        "pruned": pruned,
        "missed": missed,
        "miss_rate": missed / met if met else None,
        "epochs_saved": 1 - epochs_run / epochs_all if epochs_all else 0.0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mnist_sweep.bench.prune_replay", description=__doc__
    )
    parser.add_argument("run_dirs", nargs="+", type=Path, help="run folders of finished trainings")
    parser.add_argument("--pruner", action="append", required=True, help="pruner config name")
    parser.add_argument("--target", type=float, default=99.4, help="target accuracy (%%)")
    args = parser.parse_args(argv)
    runs = _finished_runs(args.run_dirs)
    if not runs:
        print("error: none of these folders holds a completed run's metrics.json", file=sys.stderr)
        return 1
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    print("| pruner | runs | met target | pruned | missed | miss rate | epochs saved |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in args.pruner:
        if not (CONF_DIR / "hydra" / "sweeper" / "pruner" / f"{name}.yaml").is_file():
            print(
                f"error: no pruner config {name!r} in conf/hydra/sweeper/pruner/", file=sys.stderr
            )
            return 1
        r = replay(name, runs, args.target)
        rate = "n/a" if r["miss_rate"] is None else f"{r['miss_rate']:.0%}"
        print(
            f"| {name} | {r['runs']} | {r['met_target']} | {r['pruned']} | {r['missed']} "
            f"| {rate} | {r['epochs_saved']:.0%} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
