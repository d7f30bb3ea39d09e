"""`python -m mnist_sweep [overrides]`: compose the config with Hydra and train once per job."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from mnist_sweep.config import CONF_DIR, check_group_choices
from mnist_sweep.errors import (
    Interrupted,
    UserError,
    fail,
    interruption,
    out_of_memory,
    sigterm_interrupts,
    stop_child_processes,
)
from mnist_sweep.run import record
from mnist_sweep.run.mnist_files import check_mnist
from mnist_sweep.schema import validate
from mnist_sweep.track import run_labels

STOCK_OPTUNA = "hydra_plugins.hydra_optuna_sweeper"
OWN_SWEEPER = "mnist_sweep.search.sweeper.MnistSweeper"


def objective_values(metrics: dict[str, Any], metric: str | None) -> float | dict[str, Any]:
    """What the job returns to its sweeper: the one figure `optimized_metric` names, else
    the run's figures (this project's sweeper reads them from the run folder)."""
    if metric is None:
        return {key: metrics[key] for key in ("params", "test_acc", "val_acc", "best_test_acc")}
    if metrics.get(metric) is None:
        raise UserError(
            f"optimized_metric={metric}: this run has no such figure "
            "(val_acc needs data.val_size > 0)"
        )
    return float(metrics[metric])


def _stock(hydra_cfg: Any) -> bool:
    return str(hydra_cfg.sweeper.get("_target_", "")).startswith(STOCK_OPTUNA)


def _check_sweeper(cfg: DictConfig, hydra_cfg: Any) -> None:
    """The stock Optuna sweeper needs one float back: say so before training, not after."""
    if (
        hydra_cfg.mode == RunMode.MULTIRUN
        and _stock(hydra_cfg)
        and cfg.get("optimized_metric") is None
    ):
        raise UserError(
            "hydra/sweeper=optuna maximises or minimises one figure: add optimized_metric=test_acc "
            "(or val_acc with data.val_size > 0)"
        )


@hydra.main(config_path=str(CONF_DIR), config_name="config")
def task(cfg: DictConfig) -> float | dict[str, Any]:
    hydra_cfg = HydraConfig.get()
    try:
        validate(cfg)  # before any data is read or net built
        _check_sweeper(cfg, hydra_cfg)
        check_mnist(cfg.data.root, cfg.data.download, cfg.data.get("verify", True))
        # Imported once the config is valid: torch's import is slow, and a bad config,
        # or a sweep's parent process, trains nothing.
        from mnist_sweep.run.train import train
        from mnist_sweep.search.pruning import stack_reporter, trial_reporter
        from mnist_sweep.stack.train import train_seeds

        if cfg.trainer.get("seeds") is not None:  # one stacked job, a run folder per seed
            trial_job = hydra_cfg.job.get(record.SWEEP_TRIAL) is not None  # the sweep stacks
            if hydra_cfg.mode == RunMode.MULTIRUN and not trial_job:
                raise UserError(
                    "trainer.seeds trains a single stacked job; "
                    "a sweep gives its seeds through hydra.sweeper.seeds"
                )
            train_seeds(
                cfg,
                list(cfg.trainer.seeds),
                hydra_cfg.runtime.output_dir,
                on_epoch_end=stack_reporter(hydra_cfg),
                labels=run_labels(hydra_cfg),
            )
            return {}
        metrics = train(
            cfg,
            hydra_cfg.runtime.output_dir,
            on_epoch_end=trial_reporter(hydra_cfg),
            labels=run_labels(hydra_cfg),
        )
        return objective_values(metrics, cfg.get("optimized_metric"))
    except KeyboardInterrupt as e:  # SIGINT, or SIGTERM (main)
        if hydra_cfg.mode != RunMode.RUN:
            if os.getpid() != _command_pid:
                # A job in a launcher's worker process (joblib's), which its sweep stops
                # with SIGTERM: its record is written, so end as the signal asked. Raised,
                # the stop would only reach the pool, which keeps the worker alive.
                logging.shutdown()
                os._exit(interruption(e).exit_status)
            raise  # the sweeper ends the sweep
        run_dir = hydra_cfg.runtime.output_dir
        resume = f"to continue, add trainer.resume=true hydra.run.dir={run_dir}"
        raise Interrupted(interruption(e).signum, resume) from None
    except (UserError, MemoryError, RuntimeError) as e:
        error = e if isinstance(e, UserError) else out_of_memory(e)
        if error is None:
            raise  # a bug: its traceback is what to report
        if hydra_cfg.mode == RunMode.MULTIRUN and hydra_cfg.sweeper.get("_target_") == OWN_SWEEPER:
            raise error from None  # this project's sweeper records the trial as failed
        fail(str(error))


_command_pid: int | None = None  # the process main() runs in, where a sweeper runs its loop


def main() -> None:
    global _command_pid
    _command_pid = os.getpid()
    try:
        check_group_choices([a for a in sys.argv[1:] if not a.startswith("-")])
    except UserError as e:
        fail(str(e))
    try:
        with sigterm_interrupts():  # SIGTERM stops a run or a sweep as Ctrl-C does
            task()
    except KeyboardInterrupt as e:
        # Finished epochs and trials are already on disk; say so instead of a traceback.
        stop = interruption(e)
        stop_child_processes()  # a multirun's workers record their runs interrupted too
        print(stop.line(), file=sys.stderr)
        raise SystemExit(stop.exit_status) from None


if __name__ == "__main__":
    main()
