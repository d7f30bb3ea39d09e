"""`python -m mnist_sweep [overrides]`: compose the config with Hydra and train once per job."""

from __future__ import annotations

import sys
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from mnist_sweep.config import CONF_DIR
from mnist_sweep.errors import UserError, fail, out_of_memory
from mnist_sweep.run.train import train
from mnist_sweep.schema import validate
from mnist_sweep.search.pruning import trial_reporter


def objective_values(metrics: dict[str, Any]) -> dict[str, Any]:
    """What a sweeper needs from a finished run."""
    return {key: metrics[key] for key in ("params", "test_acc", "val_acc", "best_test_acc")}


@hydra.main(config_path=str(CONF_DIR), config_name="config")
def task(cfg: DictConfig) -> dict[str, Any]:
    hydra_cfg = HydraConfig.get()
    try:
        validate(cfg)  # before any data is read or net built
        metrics = train(cfg, hydra_cfg.runtime.output_dir, on_epoch_end=trial_reporter(hydra_cfg))
    except (UserError, MemoryError, RuntimeError) as e:
        error = e if isinstance(e, UserError) else out_of_memory(e)
        if error is None:
            raise  # a bug: its traceback is what to report
        if hydra_cfg.mode == RunMode.MULTIRUN:
            raise error from None  # the sweeper records the trial as failed, with this reason
        fail(str(error))
    return objective_values(metrics)


def main() -> None:
    try:
        task()
    except KeyboardInterrupt:
        # Finished epochs and trials are already on disk; say so instead of a traceback.
        print(
            "interrupted: finished results are kept; re-run the same command to continue",
            file=sys.stderr,
        )
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
