"""One Optuna trial, as `study.optimize` calls it: the trial's parameters become a Hydra
job, the job trains one run folder per seed, and the runs' records become the values and
constraint the study is told.

The first seed's job is linked to its trial (`hydra.job.optuna_trial`), so it reports
each epoch and can be pruned; further seeds are ordinary runs of the same design, spent
only while they can change the design's verdict (search/seeds.py). Each worker thread
launches through a launcher of its own, one job at a time, so n_jobs workers keep
n_jobs trainings running.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, Trial, TrialState

from mnist_sweep.errors import first_line, interruption
from mnist_sweep.run import record
from mnist_sweep.run.record import RunRecord, RunStatus
from mnist_sweep.schema.sweeper import Goal, Sweeper
from mnist_sweep.search import stacking
from mnist_sweep.search.pruning import reported_accuracy, selection_accuracy, selection_split
from mnist_sweep.search.seeds import Verdict, verdict
from mnist_sweep.search.trial_result import TrialResult

log = logging.getLogger(__name__)

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


class TrialFailed(Exception):
    """A trial's job failed; its reason is the trial's `fail_reason`. The sweep goes on."""


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def taken(study: optuna.Study) -> list[FrozenTrial]:
    """Finished trials, and running ones: in a shared study other workers' count too."""
    return study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING))


@dataclass
class Seed:
    """One finished run of a trial's design."""

    seed: int
    run_dir: Path
    record: RunRecord

    @property
    def selection_acc(self) -> float:
        if self.record.status is not RunStatus.COMPLETED:
            return 0.0  # a stacked copy that diverged: the design failed on this seed
        return selection_accuracy(self.record.to_dict())


@dataclass
class TrialJobs:
    """The objective `study.optimize` calls: one trial, as one job per seed."""

    settings: Sweeper
    configure: Callable[[Trial], Sequence[str]]
    new_launcher: Callable[[], Launcher]
    sweep_dir: Path
    target: float
    metric: str | None
    place: stacking.Placement = stacking.Placement(workers=1)
    default_seed: int = 0
    started: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self._local = threading.local()
        self._idx_lock = threading.Lock()
        self._next_idx = self._next_gpu = 0
        self._running: set[int] = set()

    def running(self) -> list[int]:
        """The trials this sweep's workers are running now."""
        with self._idx_lock:
            return sorted(self._running)

    def time_left(self) -> float | None:
        """Seconds until the sweep's timeout, after which no new trial starts (None: none)."""
        if self.settings.timeout is None:
            return None
        return self.settings.timeout - (time.monotonic() - self.started)

    def spare_workers(self, study: optuna.Study) -> int:
        """Workers with no trial left to start, free to train a running trial's seeds."""
        left = self.time_left()
        if (left is None or left > 0) and len(taken(study)) < self.settings.n_trials:
            return 0
        return max(self.place.workers - len(self.running()), 0)

    # -- jobs ----------------------------------------------------------------------------

    def _worker(self) -> tuple[Launcher, list[str]]:
        """This worker thread's launcher, and on a machine with several GPUs its own GPU."""
        local, gpus = self._local, self.place.gpus
        if not hasattr(local, "launcher"):
            with self._idx_lock:
                gpu, self._next_gpu = self._next_gpu, self._next_gpu + 1
            local.launcher = self.new_launcher()
            local.device = [f"trainer.device=cuda:{gpu % gpus}"] if gpus > 1 else []
        return local.launcher, local.device

    def _launch(self, jobs: Sequence[tuple[Sequence[str], str]]) -> list[tuple[JobReturn, Path]]:
        """Run jobs (overrides, subdir) side by side to their end; each one's return and
        run folder. A launcher that lost a job (a killed joblib worker, a cancelled SLURM
        job) raises."""
        with self._idx_lock:
            idx, self._next_idx = self._next_idx, self._next_idx + len(jobs)
        launcher, device = self._worker()
        rets = launcher.launch(
            [[*overrides, *device, f"hydra.sweep.subdir={subdir}"] for overrides, subdir in jobs],
            initial_job_idx=idx,
        )
        return [(ret, self.sweep_dir / subdir) for ret, (_, subdir) in zip(rets, jobs, strict=True)]

    # -- the objective ---------------------------------------------------------------------

    def __call__(self, trial: Trial) -> float | tuple[float, float]:
        study = trial.study
        self._refuse_surplus(study, trial)
        overrides = list(self.configure(trial))
        subdir = f"trial_{trial.number:03d}"
        TrialResult(
            run_dir=str(self.sweep_dir / subdir),
            worker=worker_id(),
            retry_of=RetryHeartbeatStaleTrialCallback.retried_trial_number(
                study.get_trials(deepcopy=False)[trial.number]
            ),
        ).save(trial)
        with self._idx_lock:
            self._running.add(trial.number)
        try:
            # The job's one link to its trial: an override in Hydra's own job settings,
            # read by __main__ (and kept in the run's .hydra/hydra.yaml).
            link = f"++hydra.job.{record.SWEEP_TRIAL}={trial.number}"
            if self.place.stack:
                seeds = self._run_stacked(trial, [*overrides, link], subdir)
            else:
                seeds = self._run(trial, [([*overrides, link], subdir)])
            while self._wants_another(trial, seeds):
                seeds += self._next_seeds(trial, overrides, subdir, seeds)
        except KeyboardInterrupt as e:  # SIGINT, or SIGTERM: Optuna records the trial failed
            TrialResult(fail_reason=f"interrupted by {interruption(e).signal_name}").save(trial)
            raise
        finally:
            with self._idx_lock:
                self._running.discard(trial.number)
        return self._tell(trial, seeds)

    def _refuse_surplus(self, study: optuna.Study, trial: Trial) -> None:
        """Workers racing for a shared study's last trials may ask one too many: the later
        trial number yields, so the study never holds more than n_trials."""
        if sum(t.number < trial.number for t in taken(study)) >= self.settings.n_trials:
            reason = "surplus: other workers took the study's last trials"
            TrialResult(fail_reason=reason).save(trial)
            study.stop()
            raise TrialFailed(reason)

    def _run(self, trial: Trial, jobs: Sequence[tuple[Sequence[str], str]]) -> list[Seed]:
        seeds = []
        for ret, run_dir in self._launch(jobs):
            self._check(trial, ret, run_dir)
            seeds.append(Seed(int(ret.cfg.trainer.seed), run_dir, RunRecord.load(run_dir)))
        return seeds

    def _run_stacked(self, trial: Trial, overrides: Sequence[str], subdir: str) -> list[Seed]:
        """Every seed of the trial in one stacked job, pruned on their mean; a seed folder
        each (stack/train.py). A copy that diverged counts as a seed at 0%."""
        first = stacking.first_seed(overrides, self.default_seed)
        numbers = [first + i for i in range(self.settings.seeds)]
        job = stacking.stacked_overrides(overrides, numbers)
        ((ret, run_dir),) = self._launch([(job, subdir)])
        folders = [record.seed_dir(run_dir, n) for n in numbers]
        self._check(trial, ret, folders[0])
        return [Seed(n, d, RunRecord.load(d)) for n, d in zip(numbers, folders, strict=True)]

    def _check(self, trial: Trial, ret: JobReturn, run_dir: Path) -> None:
        """Raise what the job raised: TrialPruned as is, anything else as TrialFailed."""
        try:
            ret.return_value  # noqa: B018 - raises the job's own exception
        except optuna.TrialPruned as e:
            self._pruned(trial, run_dir)
            log.info("trial %d: %s", trial.number, e)
            raise
        except Exception as e:
            reason = f"{type(e).__name__}: {first_line(e)}"
            TrialResult(fail_reason=reason).save(trial)
            log.warning("trial %d failed: %s", trial.number, reason)
            raise TrialFailed(reason) from None

    def _pruned(self, trial: Trial, run_dir: Path) -> None:
        """A pruned trial counts as below target at the accuracy it stopped with."""
        result = TrialResult(params=RunRecord.load(run_dir).params)
        reported = trial.study.get_trials(deepcopy=False)[trial.number].intermediate_values
        if reported and self.settings.goal is Goal.SMALLEST:
            result.selection_acc = reported_accuracy(trial.study, reported[max(reported)])
            trial.set_constraint("accuracy", self.target - result.selection_acc)
        result.save(trial)

    def _verdict(self, seeds: Sequence[Seed]) -> Verdict:
        return verdict([s.selection_acc for s in seeds], self.target, self.settings.seeds)

    def _wants_another(self, trial: Trial, seeds: Sequence[Seed]) -> bool:
        if len(seeds) >= self.settings.seeds:
            return False
        if self.settings.goal is not Goal.SMALLEST:
            return True  # an accuracy is a mean over every seed
        if not self._verdict(seeds).worth_another(self.settings.seed_margin):
            return False
        rival = self._smallest_held(trial.study)
        if rival is not None and rival[1] <= seeds[0].record.params:
            log.info(
                "trial %d: no more seeds; trial %d already holds with %s params",
                trial.number,
                rival[0],
                f"{rival[1]:,}",
            )
            return False
        return True

    @staticmethod
    def _smallest_held(study: optuna.Study) -> tuple[int, int] | None:
        """The smallest design of the study that holds, (trial, params): a design no
        smaller cannot change the sweep's answer, so its verdict is not worth a seed."""
        held = [
            (t.number, r.params)
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if (r := TrialResult.of(t)).holds and r.params is not None
        ]
        return min(held, key=lambda h: h[1], default=None)

    def _next_seeds(
        self, trial: Trial, overrides: Sequence[str], subdir: str, seeds: Sequence[Seed]
    ) -> list[Seed]:
        """The design's next seed, and one more for each worker that has no trial left
        to run (after the timeout, or once the study has its trials): a verdict's seeds
        then use every core instead of one."""
        left = self.settings.seeds - len(seeds)
        count = max(1, min(left, 1 + self.spare_workers(trial.study)))
        new = [seeds[0].seed + len(seeds) + i for i in range(count)]
        log.info(
            "trial %d: %s so far; training seed %s",
            trial.number,
            " / ".join(f"{s.selection_acc:.2f}" for s in seeds),
            ", ".join(map(str, new)),
        )
        kept = [o for o in overrides if not o.startswith("trainer.seed=")]
        label = f"++hydra.job.{record.SEED_OF}={trial.number}"
        jobs = [([*kept, f"trainer.seed={s}", label], f"{subdir}_seed{s}") for s in new]
        return self._run(trial, jobs)

    def _tell(self, trial: Trial, seeds: Sequence[Seed]) -> float | tuple[float, float]:
        first, held = seeds[0].record, self._verdict(seeds)
        selection = selection_split({"val_acc": first.val_acc})
        TrialResult(
            params=first.params,
            test_acc=_mean([s.record.test_acc for s in seeds]),
            val_acc=_mean([s.record.val_acc for s in seeds]),
            best_test_acc=first.best_test_acc,
            selection=selection,
            selection_acc=held.mean,
            seeds=[s.seed for s in seeds],
            seed_accs=[s.selection_acc for s in seeds],
            seed_test_accs=[s.record.test_acc for s in seeds],
            seed_run_dirs=[str(s.run_dir) for s in seeds],
            holds=held.holds,
        ).save(trial)
        log.info(
            "trial %d: %s params, %s%% %s accuracy (%s; target %.2f%%: %s)",
            trial.number,
            f"{first.params:,}",
            " / ".join(f"{a:.2f}" for a in held.accs),
            selection,
            f"mean {held.mean:.2f}% over {len(seeds)} seeds" if len(seeds) > 1 else "one seed",
            self.target,
            "holds" if held.holds else "does not hold",
        )
        if self.settings.goal is Goal.SMALLEST:
            trial.set_constraint("accuracy", held.shortfall())
            return float(first.params)
        accuracy = self._metric_value(seeds)
        if self.settings.goal is Goal.ACCURACY:
            return accuracy
        return float(first.params), accuracy

    def _metric_value(self, seeds: Sequence[Seed]) -> float:
        """The figure an accuracy sweep maximises: `optimized_metric` when set, else the
        selection accuracy; a mean over the trial's seeds."""
        name = self.metric
        values = [s.selection_acc if name is None else getattr(s.record, name) for s in seeds]
        if None in values:
            raise TrialFailed(f"optimized_metric={name}: the run recorded no such figure")
        return sum(values) / len(values)


def _mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present and len(present) == len(values) else None
