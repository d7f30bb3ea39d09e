"""A sweep's space checked against the schema before its first trial starts.

A bad value in a sweep (`data.batch_size=choice(64,-1)`, an lr interval below
zero) would otherwise fail one trial after another, each after the data has
loaded. Here the base config, with the sweep's fixed values, is validated once,
and then each swept value on its own: every choice and both ends of a range.
Swept config groups (`average=choice(none,ema)`) are left to the trials, since
a group choice swaps a whole subtree that only Hydra can compose.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides
from omegaconf import DictConfig, OmegaConf, open_dict
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from mnist_sweep.errors import ConfigError
from mnist_sweep.schema import validate


def parse_space(
    preset: Sequence[str], command_line: Sequence[str]
) -> tuple[dict[str, BaseDistribution], dict[str, Any], list[str]]:
    """The sweep's space: swept dimensions, fixed values and deletions, from the preset's
    `hydra.sweeper.params` and the command line's overrides.

    A key the command line names replaces whatever the preset says for it, fixed value or
    range: `'trainer.epochs=choice(1,2)'` sweeps a key the preset fixes, and
    `model.w1=5` fixes one it sweeps. (Parsed as one list, as the stock plugin does, a
    fixed value would win over any range, wherever it came from.)
    """
    swept, fixed, deleted = create_params_from_overrides(list(preset))
    cl_swept, cl_fixed, cl_deleted = create_params_from_overrides(list(command_line))
    named = {_bare(key) for key in (*cl_swept, *cl_fixed)}
    swept = {k: v for k, v in swept.items() if _bare(k) not in named} | cl_swept
    fixed = {k: v for k, v in fixed.items() if _bare(k) not in named} | cl_fixed
    for name in fixed:  # the same key given twice on one side: its fixed value wins
        swept.pop(name, None)
    return swept, fixed, [*deleted, *cl_deleted]


def _bare(key: str) -> str:
    """A key without its override prefix: `+model.w1` and `model.w1` name one dimension."""
    return key.lstrip("+~")


def _values(distribution: BaseDistribution) -> Iterable[Any]:
    if isinstance(distribution, CategoricalDistribution):
        return distribution.choices
    if isinstance(distribution, (FloatDistribution, IntDistribution)):
        return (distribution.low, distribution.high)
    return ()


def _typed(key: str, value: Any) -> Any:
    """A value as a trial's override will carry it: the sweeper hands fixed values and
    choices over as override text ("64", "true"), which Hydra's grammar types."""
    if not isinstance(value, str):
        return value
    return OverridesParser.create().parse_override(f"{key}={value}").value()


def _with(config: DictConfig, key: str, value: Any) -> DictConfig:
    value = _typed(key, value)
    changed = OmegaConf.masked_copy(config, [k for k in config if k != "hydra"])
    with open_dict(changed):
        OmegaConf.update(changed, key.lstrip("+~"), value, merge=False, force_add=True)
    return changed


def _is_leaf(config: DictConfig, key: str) -> bool:
    """A key naming a value in the config (not a config group, not a new subtree)."""
    node = OmegaConf.select(config, key.lstrip("+~"), throw_on_missing=False)
    return node is None or not OmegaConf.is_config(node)


def check_space(
    config: DictConfig,
    distributions: Mapping[str, BaseDistribution],
    fixed: Mapping[str, Any],
) -> None:
    """Raise ConfigError naming the swept key and value that no trial could train with."""
    base = config
    for key, value in fixed.items():
        if key in config and not _is_leaf(config, key):
            continue
        if "." in key or key in config:
            base = _with(base, key, value)
    try:
        validate(base)
    except ConfigError as e:
        raise ConfigError(f"the sweep's base config: {e}") from None
    for key, distribution in distributions.items():
        if "." not in key or not _is_leaf(base, key):
            continue  # a config group, composed by Hydra per trial
        for value in _values(distribution):
            try:
                validate(_with(base, key, value))
            except ConfigError as e:
                raise ConfigError(f"swept value {key}={value!r}: {e}") from None
