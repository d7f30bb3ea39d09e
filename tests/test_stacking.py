"""Where a sweep's seeds train: stacked on a GPU, one by one on a CPU; one worker per GPU."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from mnist_sweep.run.record import RunRecord, RunStatus
from mnist_sweep.search.stacking import Placement, first_seed, place, stacked_overrides
from mnist_sweep.search.trial_result import TrialResult
from tests.conftest import run_sweep
from tests.test_sweep import _study


def test_seeds_stack_on_a_gpu_and_go_one_by_one_on_a_cpu():
    assert place("auto", 1, 10, None, gpus=1).stack
    assert place("cuda", 1, 10, None, gpus=1).stack
    assert not place("auto", 1, 10, None, gpus=0).stack  # a CPU: the lazy verdict
    assert not place("cpu", 1, 10, None, gpus=2).stack
    assert not place("cuda", 1, 1, None, gpus=1).stack  # one seed: nothing to stack
    assert place("cpu", 1, 3, True, gpus=0).stack  # hydra.sweeper.stack_seeds
    assert not place("cuda", 1, 3, False, gpus=1).stack
    assert place("cpu", 2, 3, None) == Placement(workers=2)  # torch is not asked


def test_a_worker_owns_a_whole_gpu():
    assert place("cuda", 2, 1, None, gpus=1) == Placement(workers=1, gpus=1)
    assert place("auto", 4, 1, None, gpus=2) == Placement(workers=2, gpus=2)
    assert place("auto", 2, 1, None, gpus=0).workers == 2  # CPU workers: one per core
    assert place("cpu", 2, 1, None, gpus=1).workers == 2
    assert place("cuda:1", 2, 1, None, gpus=2) == Placement(workers=1)  # one GPU named


def test_a_stacked_trial_job_names_all_its_seeds():
    overrides = ["model.w1=3", "trainer.seed=7", "++hydra.job.optuna_trial=0"]
    assert first_seed(overrides, default=0) == 7 and first_seed(["model.w1=3"], default=5) == 5
    assert stacked_overrides(overrides, [7, 8, 9]) == [
        "model.w1=3",
        "++hydra.job.optuna_trial=0",
        "trainer.seed=7",
        "trainer.seeds=[7,8,9]",
    ]


@pytest.mark.slow
def test_a_sweep_with_stacked_seeds_trains_each_trial_as_one_job(tmp_path, lean):
    run_sweep(
        tmp_path,
        "hydra.sweeper.n_trials=1",
        "hydra.sweeper.seeds=3",
        "hydra.sweeper.stack_seeds=true",
        "hydra.sweeper.seed_margin=100",
        "hydra/sweeper/pruner=none",
        "trainer.seed=4",
        "target_acc=1",
    )
    trials = _study(tmp_path).trials
    assert len(trials) == 1
    for trial in trials:
        res = TrialResult.of(trial)
        assert res.seeds == [4, 5, 6] and res.holds
        # Pruned on the seeds' mean: one report per epoch.
        assert sorted(trial.intermediate_values) == [1, 2]
        for seed, acc, run_dir in zip(res.seeds, res.seed_accs, res.seed_run_dirs, strict=True):
            run = RunRecord.load(tmp_path / run_dir)
            assert run_dir.endswith(f"trial_{trial.number:03d}/seed_{seed}")  # one job
            assert (run.seed, run.test_acc, run.status) == (seed, acc, RunStatus.COMPLETED)
            saved = OmegaConf.load(tmp_path / run_dir / ".hydra" / "config.yaml")
            assert saved.trainer.seed == seed
        mean = sum(res.seed_accs) / 3
        assert 100 - trial.intermediate_values[2] == pytest.approx(mean)
