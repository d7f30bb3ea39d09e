"""Retrain a sweep's winner on fresh seeds.

    python -m mnist_sweep.search.confirm SWEEP_DIR --seeds 3

A sweep picks its winner from one seed per configuration, so a 99.4% can be a
lucky draw. This reruns the winner's exact overrides with seeds it was not
selected on (as an ordinary multirun, one run folder per seed under
SWEEP_DIR/confirm/, through the launcher the sweep used: joblib runs the seeds
side by side, SLURM on the cluster) and reports each seed's final-epoch test accuracy, their
mean and minimum, and on how many seeds the target held.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from rich.console import Console
from rich.table import Table

from mnist_sweep.errors import RunRecordError, UserError, exit_on_user_error, first_line
from mnist_sweep.run import record
from mnist_sweep.run.record import RunRecord, RunStatus
from mnist_sweep.search.seeds import verdict
from mnist_sweep.search.winner import Winner

CONFIRM = "confirm.json"
MISSING = "missing"  # a seed's status when its run left no readable metrics.json
# Overrides that belong to the search, not to the winning configuration.
SEARCH_ONLY = ("hparams_search=", "trainer.seed=", "hydra.")
# The sweep's own settings that the confirmation runs keep: where and how jobs run.
LAUNCHER = ("hydra/launcher=", "hydra.launcher.")


def _winner(sweep_dir: Path) -> Winner:
    winner = Winner.load(sweep_dir)  # one with params names its overrides and run_dir
    if winner.params is None:
        raise UserError(f"{sweep_dir} has no winner to confirm: {winner.message}")
    return winner


def launcher_overrides(run_dir: str | Path) -> list[str]:
    """The launcher settings of the sweep that trained this run (none: Hydra's basic
    launcher), from its .hydra/hydra.yaml."""
    try:
        saved = OmegaConf.load(Path(run_dir) / record.HYDRA_RUNTIME).hydra.overrides.hydra
    except (OSError, yaml.YAMLError, OmegaConfBaseException) as e:
        raise UserError(
            f"the winner's run folder {run_dir} is missing or damaged ({first_line(e)}); "
            "confirm reads its .hydra/hydra.yaml"
        ) from None
    return [str(o) for o in saved if str(o).startswith(LAUNCHER)]


def confirm(sweep_dir: str | Path, n_seeds: int = 3, extra: Sequence[str] = ()) -> dict[str, Any]:
    """Retrain the winner with `n_seeds` fresh seeds, through the sweep's launcher (`extra`
    Hydra overrides come last); writes and returns confirm.json's content."""
    sweep_dir = Path(sweep_dir)
    winner = _winner(sweep_dir)
    overrides = [o for o in winner.overrides or [] if not o.startswith(SEARCH_ONLY)]
    launcher = launcher_overrides(str(winner.run_dir))
    first = max(winner.seeds or [0]) + 1  # fresh: past every seed the sweep trained it on
    seeds = [first + i for i in range(n_seeds)]
    out = sweep_dir / "confirm"
    command = [
        sys.executable,
        "-m",
        "mnist_sweep",
        "-m",
        *overrides,
        f"trainer.seed={','.join(map(str, seeds))}",
        f"hydra.sweep.dir={out}",
        "hydra.sweep.subdir=seed_${trainer.seed}",
        *launcher,
        *extra,
    ]
    subprocess.run(command, check=False)

    runs = []
    for seed in seeds:
        run_dir = out / f"seed_{seed}"
        try:
            metrics = RunRecord.load(run_dir)
            test_acc, status = metrics.test_acc, metrics.status.value
        except RunRecordError:
            test_acc, status = None, MISSING
        runs.append({"seed": seed, "test_acc": test_acc, "status": status, "run_dir": str(run_dir)})
    accs = [r["test_acc"] for r in runs if r["status"] == RunStatus.COMPLETED]
    target = winner.target_acc
    result = {
        "params": winner.params,
        "target_acc": target,
        "overrides": overrides,
        "seeds": runs,
        "mean_test_acc": statistics.fmean(accs) if accs else None,
        "min_test_acc": min(accs) if accs else None,
        "reached_target": sum(a >= target for a in accs),
        "n_seeds": n_seeds,
        # The holds rule over every requested seed: a seed that did not finish counts against.
        "holds": len(accs) == n_seeds and verdict(accs, target, n_seeds).holds,
    }
    record.write_json(sweep_dir / CONFIRM, result)
    _print(result)
    return result


def _print(result: dict[str, Any]) -> None:
    table = Table(
        title=f"winner ({result['params']:,} params) on fresh seeds: final-epoch test accuracy"
    )
    for column in ("seed", "test acc (%)", "status"):
        table.add_column(column)
    for run in result["seeds"]:
        acc = "-" if run["test_acc"] is None else f"{run['test_acc']:.2f}"
        table.add_row(str(run["seed"]), acc, run["status"])
    console = Console()
    console.print(table)
    if result["mean_test_acc"] is not None:
        console.print(
            f"mean {result['mean_test_acc']:.2f}%, min {result['min_test_acc']:.2f}%; "
            f"target {result['target_acc']}% held on "
            f"{result['reached_target']} of {result['n_seeds']} seeds"
        )


@exit_on_user_error()
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mnist_sweep.search.confirm", description=__doc__.splitlines()[0]
    )
    parser.add_argument("sweep_dir", type=Path, help="a sweep folder holding winner.json")
    parser.add_argument("--seeds", type=int, default=3, help="how many fresh seeds (default 3)")
    parser.add_argument(
        "overrides",
        nargs="*",
        help="Hydra overrides for the runs, e.g. hydra/launcher=joblib hydra.launcher.n_jobs=3 "
        "(default: the sweep's own launcher settings)",
    )
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    confirm(args.sweep_dir, args.seeds, args.overrides)
    return 0  # the verdict is printed and in confirm.json


if __name__ == "__main__":
    sys.exit(main())
