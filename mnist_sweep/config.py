"""Where the Hydra configs live, and composing them outside a Hydra app."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

# Absolute, so that the `mnist-sweep` console script (where __main__ is not
# the running module) finds the same configs as `python -m mnist_sweep`.
CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


def compose_config(overrides: Sequence[str] = (), return_hydra_config: bool = False) -> DictConfig:
    """The real config groups, composed as `python -m mnist_sweep OVERRIDES` would."""
    with initialize_config_dir(config_dir=str(CONF_DIR)):
        return compose(
            config_name="config", overrides=list(overrides), return_hydra_config=return_hydra_config
        )
