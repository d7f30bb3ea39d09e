"""A sweep's settings and space are checked before its first trial: the shipped presets
pass, a bad setting or a bad swept or fixed value is named in one line. No training."""

from __future__ import annotations

import re

import pytest
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, IntDistribution

from mnist_sweep.config import compose_config
from mnist_sweep.errors import ConfigError
from mnist_sweep.schema.sweeper import Sweeper, validate_sweeper
from mnist_sweep.search.space import check_space, parse_space

# The architecture searches (accuracy tunes a fixed net's recipe; its own sweep test runs it).
PRESETS = ["smallest", "screen", "holds", "floor", "floor_distilled"]


def _check(preset: str, *changes: str) -> None:
    """check_space as the sweeper calls it, on `preset`'s params with `changes` on top."""
    config = compose_config([f"hparams_search={preset}"], return_hydra_config=True)
    params = [f"{k}={v}" for k, v in config.hydra.sweeper.params.items()]
    distributions, fixed, _ = parse_space(params, changes)
    check_space(config, distributions, fixed)


def _preset_params(preset: str) -> list[str]:
    config = compose_config([f"hparams_search={preset}"], return_hydra_config=True)
    return [f"{k}={v}" for k, v in config.hydra.sweeper.params.items()]


def test_the_command_line_replaces_the_presets_entry_for_its_key():
    params = _preset_params("smallest")
    assert "trainer.epochs=15" in params and "model.w1=range(3, 9)" in params
    swept, fixed, _ = parse_space(
        params, ["trainer.epochs=choice(1,2)", "model.w1=5", "+model.w2=range(2,4)"]
    )
    # A range where the preset fixes a value, a value where it sweeps, and with a prefix.
    assert swept["trainer.epochs"] == CategoricalDistribution([1, 2])
    assert "trainer.epochs" not in fixed
    assert fixed["model.w1"] == "5" and "model.w1" not in swept
    assert swept["+model.w2"] == IntDistribution(2, 3) and "model.w2" not in swept
    # Every other entry of the preset stands.
    assert fixed["model"] == "three_blocks" and fixed["model.pad3"] == "1"
    assert swept["model.w3"] == IntDistribution(4, 16)


@pytest.mark.parametrize("preset", PRESETS)
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


def _settings(preset: str, *overrides: str) -> dict:
    config = compose_config([f"hparams_search={preset}", *overrides], return_hydra_config=True)
    sweeper = OmegaConf.to_container(config.hydra.sweeper, resolve=True)
    return {key: sweeper[key] for key in Sweeper.model_fields}


@pytest.mark.parametrize("preset", PRESETS)
def test_the_shipped_sweeper_settings_pass(preset):
    validate_sweeper(_settings(preset))


@pytest.mark.parametrize(
    ("override", "says"),
    [
        ("hydra.sweeper.n_trials=0", "hydra.sweeper.n_trials=0: must be >= 1"),
        (
            "hydra.sweeper.max_failure_rate=1.5",
            "hydra.sweeper.max_failure_rate=1.5: must be in [0, 1]",
        ),
        ("hydra.sweeper.n_jobs=two", "hydra.sweeper.n_jobs='two': must be an integer"),
        ("hydra.sweeper.promote.top=0", "hydra.sweeper.promote.top=0: must be >= 1"),
        ("hydra.sweeper.retry_failed=-1", "hydra.sweeper.retry_failed=-1: must be >= 0"),
    ],
)
def test_a_bad_sweeper_setting_is_named(override, says):
    with pytest.raises(ConfigError, match=f"^{re.escape(says)}$"):
        validate_sweeper(_settings("smallest", override))
