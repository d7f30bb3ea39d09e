"""A sweep's space is checked against the schema before its first trial: the shipped
presets pass, a bad swept or fixed value is named in one line. No training."""

from __future__ import annotations

import pytest
from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides

from mnist_sweep.config import compose_config
from mnist_sweep.errors import ConfigError
from mnist_sweep.search.space import check_space


def _check(preset: str, *changes: str) -> None:
    """check_space as the sweeper calls it, on `preset`'s params with `changes` on top."""
    config = compose_config([f"hparams_search={preset}"], return_hydra_config=True)
    params = [f"{k}={v}" for k, v in config.hydra.sweeper.params.items()]
    distributions, fixed, _ = create_params_from_overrides([*params, *changes])
    for name in fixed:
        distributions.pop(name, None)
    check_space(config, distributions, fixed)


@pytest.mark.parametrize("preset", ["smallest", "screen"])
def test_the_shipped_search_spaces_pass(preset):
    _check(preset)


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ("data.batch_size=choice(64,-1)", "swept value data.batch_size=-1: data.batch_size="),
        ("optimizer.lr=interval(-0.1,0.1)", "swept value optimizer.lr=-0.1: optimizer.lr="),
        ("model.w1=range(0,4)", "swept value model.w1=0: "),
        ("trainer.epochs=0", "the sweep's base config: trainer.epochs=0"),
    ],
)
def test_a_value_no_trial_could_train_with_is_named(change, says):
    with pytest.raises(ConfigError) as error:
        _check("smallest", change)
    assert str(error.value).startswith(says), str(error.value)
    assert "\n" not in str(error.value)
