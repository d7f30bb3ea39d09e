"""`python -m mnist_sweep.bench --sweep-utilisation`: how busy a sweep keeps its workers.

Runs one small pruned sweep through the joblib launcher, its trials alternating
between a learning rate that trains for every epoch and a learning rate of 0 that
the threshold pruner stops after the first, so that they differ in length as a real
search's pruned and unpruned trials do. Its figures come from its throughput.json:
utilisation is job seconds over workers x wall time, so 1.0 means no worker ever
waited. (The scheduler it was once compared with, blocking batches, is gone; its
figure is in docs/BENCHMARKS.md.)
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# Tiny trainings, as the tests run them; a learning rate of 0 stays near 10%
# accuracy, which the threshold pruner (error above 86 points) stops at epoch 1.
SWEEP = [
    "hydra/sweeper=mnist_optuna",
    "hydra/sweeper/pruner=threshold",
    "hydra.sweeper.pruner.upper=86",
    "hydra.sweeper.pruner.n_warmup_steps=1",
    "model=tiny",
    "data.train_subset=1000",
    "data.batch_size=64",
    "data.augment.strength=0",
    "trainer.epochs=4",
    "trainer.device=cpu",
    "trainer.progress=false",
    "optimizer.lr=choice(0.1,0.0)",
    "data.eval_batch_size=range(1000,2000)",
]


def sweep_command(
    sweep_dir: Path, workers: int, trials: int, overrides: Sequence[str] = ()
) -> list[str]:
    """The sweep, with its trials queued in order: a full one, a pruned one, and so on.

    Each point gets its own evaluation batch size, which changes no result: Optuna
    queues a point only once, and the trials must be these, in this order.
    """
    points = ",".join(
        f"{{optimizer.lr:{0.1 if i % 2 == 0 else 0.0},data.eval_batch_size:{1000 + i}}}"
        for i in range(trials)
    )
    return [
        sys.executable,
        "-m",
        "mnist_sweep",
        "-m",
        *SWEEP,
        "hydra/launcher=joblib",
        f"hydra.launcher.n_jobs={workers}",
        f"hydra.sweeper.n_jobs={workers}",
        f"hydra.sweeper.n_trials={trials}",
        f"hydra.sweeper.enqueue=[{points}]",
        f"hydra.sweeper.storage=sqlite:///{sweep_dir.parent}/optuna.db",
        f"hydra.sweeper.study_name={sweep_dir.name}",
        f"hydra.sweep.dir={sweep_dir}",
        *overrides,
    ]


def run_sweep(sweep_dir: Path, command: list[str]) -> dict[str, Any]:
    """Run one sweep; its throughput.json, with the trial counts of its winner.json."""
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"the sweep failed:\n{result.stderr[-3000:]}")
    throughput = json.loads((sweep_dir / "throughput.json").read_text())
    throughput["states"] = json.loads((sweep_dir / "winner.json").read_text())["trials"]
    return throughput


def run_sweep_utilisation(
    workers: int = 2, trials: int = 12, overrides: Sequence[str] = ()
) -> dict[str, Any]:
    """The sweep, once; prints and returns its throughput record."""
    with tempfile.TemporaryDirectory(prefix="sweep_bench_") as tmp:
        sweep_dir = Path(tmp) / "asynchronous"
        record = run_sweep(sweep_dir, sweep_command(sweep_dir, workers, trials, overrides))
    states = record["states"]
    print(
        f"{record['launcher']}: {record['workers']} workers, {record['trials']} trials "
        f"({states['complete']} complete, {states['pruned']} pruned) in "
        f"{record['wall_seconds']:.1f} s wall, {record['trial_seconds']:.1f} s of "
        f"trials, utilisation {record['utilisation']:.2f}, "
        f"{record['trials_per_hour']:.0f} trials/h",
        flush=True,
    )
    return record
