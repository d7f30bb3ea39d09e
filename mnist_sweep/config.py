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


def check_group_choices(overrides: Sequence[str]) -> None:
    """Refuse, as one line, a command-line choice of a project config group (`model=`,
    `experiment=`, ...) that has no YAML file: Hydra's own message spans ten lines.

    Groups of Hydra and its plugins (`hydra/...`) and anything that is not a plain
    group choice are left to Hydra.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from mnist_sweep.errors import ConfigError

    parser = OverridesParser.create()
    for text in overrides:
        try:
            (override,) = parser.parse_overrides([str(text)])
        except Exception:  # not an override (a flag's value), or one Hydra will report
            continue
        group = override.key_or_group
        folder = CONF_DIR / group
        if group.startswith("hydra") or not folder.is_dir() or override.is_delete():
            continue
        values = (
            override.sweep_string_iterator()
            if override.is_sweep_override()
            else ([override.get_value_element_as_str()])
        )
        options = sorted(p.stem for p in folder.glob("*.yaml"))
        for value in values:
            if value not in options and value != "null":
                raise ConfigError(
                    f"Could not find '{group}/{value}'; the options in '{group}' are: "
                    + ", ".join(options)
                )
