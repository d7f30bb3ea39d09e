"""K seeds of one design trained as one stacked run, each into an ordinary run folder.

`train_seeds(cfg, seeds, run_dir)` is the stacked counterpart of run/train.py's
`train`: it writes `<run_dir>/seed_<s>/` for every seed, each a complete run
folder of the solo run with `trainer.seed=s` (metrics.json after every epoch,
checkpoint.pt, curves.png, model_summary.txt and .hydra/ with that seed's
config), so compare, evaluate, export, load_model and the trackers read it as
any run's. `<run_dir>/stack.json` lists the seeds' folders: compare descends
into a folder that has one instead of taking it for a run.

A copy that diverges is recorded as failed, with the solo run's message, and
the others go on; the run raises TrainingDiverged only when none is left.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml
from omegaconf import DictConfig, OmegaConf
from optuna.exceptions import TrialPruned

from mnist_sweep.errors import TrainingDiverged, UserError
from mnist_sweep.run import checkpoint, record
from mnist_sweep.run.build import cpu_threads
from mnist_sweep.run.data import prepare_data
from mnist_sweep.run.record import RunRecord, RunStatus
from mnist_sweep.schema import validate
from mnist_sweep.stack import checkpoint as stack_checkpoint
from mnist_sweep.stack.build import StackedRun, assemble, build_copies, check_seeds
from mnist_sweep.stack.fit import fit_epoch_stacked
from mnist_sweep.track import RunLabels, Tracker, open_tracker

log = logging.getLogger(__name__)

DIVERGED = "training diverged"  # how a diverged copy's error begins (the solo run's words)

# Called after every epoch with each live seed's metrics so far; may raise TrialPruned.
StackCallback = Callable[[dict[int, dict[str, Any]]], None]


def _diverged_message(epoch: int, loss: float, lr: Any) -> str:
    # run/fit.py's TrainingDiverged message, word for word.
    return (
        f"{DIVERGED} in epoch {epoch} (train loss is {loss}); "
        f"lower optimizer.lr (now {lr}) or change optimizer/scheduler"
    )


def _write_hydra_files(run_dir: Path, folder: Path, one: DictConfig, seed: int) -> None:
    """The seed folder's .hydra/: its own config, the stacked command's overrides with
    `trainer.seeds=...` as `trainer.seed=<seed>`, and Hydra's settings when there are any."""
    hydra = folder / record.HYDRA_DIR
    hydra.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(one, hydra / "config.yaml")
    overrides: list[str] = []
    parent = run_dir / record.HYDRA_OVERRIDES
    if parent.is_file():
        mine = ("trainer.seeds=", "trainer.seed=")
        overrides = [
            o for o in record.load_overrides(run_dir) if not o.lstrip("+~").startswith(mine)
        ]
    overrides.append(f"trainer.seed={seed}")
    record.atomic_write(hydra / "overrides.yaml", lambda t: t.write_text(yaml.safe_dump(overrides)))
    if (run_dir / record.HYDRA_RUNTIME).is_file():
        shutil.copyfile(run_dir / record.HYDRA_RUNTIME, hydra / "hydra.yaml")


def _resolved(one: DictConfig) -> tuple[dict[str, Any], Any]:
    resolved = OmegaConf.to_container(one, resolve=True)
    assert isinstance(resolved, dict)
    resolved.pop("hydra", None)
    return resolved, resolved.pop("logger", None)  # as train(): tracking is not the recipe


class _Seed:
    """One copy's record, folder and tracker."""

    def __init__(self, folder: Path, metrics: RunRecord, resolved: dict[str, Any]):
        self.folder, self.metrics, self.resolved = folder, metrics, resolved
        self.tracker: Tracker | None = None


def train_seeds(
    cfg: DictConfig,
    seeds: list[int],
    run_dir: str | Path,
    on_epoch_end: StackCallback | None = None,
    labels: RunLabels | None = None,
) -> dict[int, dict[str, Any]]:
    """Train `cfg`'s design once per seed, stacked; returns each seed's metrics.json content.
    Each seed's folder is `record.seed_dir(run_dir, seed)`."""
    validate(cfg)
    seeds = check_seeds(seeds)
    with cpu_threads(cfg.trainer.get("threads")):
        return _train_seeds(cfg, seeds, Path(run_dir), on_epoch_end, labels)


def _train_seeds(
    cfg: DictConfig,
    seeds: list[int],
    run_dir: Path,
    on_epoch_end: StackCallback | None,
    labels: RunLabels | None,
) -> dict[int, dict[str, Any]]:
    started = time.perf_counter()
    stacked = build_copies(cfg, seeds)  # an impossible config stops here, before any record
    runs: list[_Seed] = []
    saved: list[record.Checkpoint | None] = []
    for c in stacked.copies:
        folder = record.seed_dir(run_dir, c.seed)
        resolved, logger_cfg = _resolved(c.cfg)
        metrics = RunRecord(
            model=cfg.model.name,
            params=stacked.params,
            target_acc=cfg.target_acc,
            epochs_planned=cfg.trainer.epochs,
            seed=c.seed,
            device=c.setup.device_name,
            torch=str(torch.__version__),
            host=socket.gethostname(),
            pid=os.getpid(),
        )
        one = _Seed(folder, metrics, resolved)
        saved.append(_resume_one(cfg, one, c) if cfg.trainer.get("resume") else None)
        one.tracker = open_tracker(logger_cfg, resolved, folder, one.metrics, labels)
        runs.append(one)
    _check_same_epoch(run_dir, [s for s, c in zip(saved, stacked.copies, strict=True) if c.alive])
    folders = [r.folder.name for r in runs]
    record.write_json(run_dir / record.STACK, {"seeds": seeds, "folders": folders})
    for r, c in zip(runs, stacked.copies, strict=True):
        _write_hydra_files(run_dir, r.folder, c.cfg, c.seed)
    wall = {id(r): r.metrics.wall_seconds for r in runs}

    def save(r: _Seed, status: RunStatus, error: str | None = None) -> None:
        r.metrics.status, r.metrics.error = status, error
        r.metrics.wall_seconds = round(wall[id(r)] + time.perf_counter() - started, 3)
        r.metrics.save(r.folder)

    def live() -> list[_Seed]:
        return [r for r, c in zip(runs, stacked.copies, strict=True) if c.alive]

    if not live():  # a resumed stack whose every copy had diverged
        raise TrainingDiverged(f"every seed of {run_dir} diverged; there is nothing to resume")
    for r in live():
        save(r, RunStatus.RUNNING)
    try:
        run = assemble(stacked, prepare_data(cfg.data, stacked.device))
        for r, c in zip(runs, run.copies, strict=True):
            record.write_model_summary(r.folder, c.setup.model)
        first_epoch = 1
        if any(s is not None for s in saved):
            stack_checkpoint.restore(run, saved)
            first_epoch = 1 + max(
                s.epoch for s, c in zip(saved, run.copies, strict=True) if s is not None and c.alive
            )
            log.info("resuming %s after epoch %d", run_dir, first_epoch - 1)
        log.info(
            "model %s: %s params | %d copies (seeds %s) | %s train images | %s",
            cfg.model.name,
            f"{run.params:,}",
            len(seeds),
            seeds,
            f"{run.data.n_train:,}",
            runs[0].metrics.device,
        )
        for epoch in range(first_epoch, run.epochs + 1):
            _epoch(run, runs, epoch, save)
            if not live():
                raise TrainingDiverged(
                    f"every copy diverged by epoch {epoch} (seeds {seeds}); "
                    f"lower optimizer.lr (now {cfg.optimizer.lr}) or change optimizer/scheduler"
                )
            if on_epoch_end is not None:
                on_epoch_end({r.metrics.seed: r.metrics.to_dict() for r in live()})
    except TrialPruned:
        for r in live():
            save(r, RunStatus.PRUNED, f"pruned after epoch {len(r.metrics.epochs)}")
        raise
    except BaseException as e:  # KeyboardInterrupt too: the history so far must survive
        for r in live():
            save(r, RunStatus.FAILED, str(e) or type(e).__name__)
        raise
    else:
        for r in live():
            save(r, RunStatus.COMPLETED)
    finally:
        for r in runs:
            if r.metrics.epochs:
                title = f"{cfg.model.name} ({stacked.params:,} params, seed {r.metrics.seed})"
                record.plot_curves(r.folder, [e.to_dict() for e in r.metrics.epochs], title)
            if r.tracker is not None:
                r.tracker.finish(r.metrics)
    for r in runs:
        log.info(
            "seed %d: %s, final test accuracy %s",
            r.metrics.seed,
            r.metrics.status,
            r.metrics.test_acc,
        )
    return {r.metrics.seed: r.metrics.to_dict() for r in runs}


def _epoch(run: StackedRun, runs: list[_Seed], epoch: int, save: Callable[..., None]) -> None:
    """Train one epoch of every live copy; record, checkpoint and report each."""
    was_alive = [c.alive for c in run.copies]
    rows, losses = fit_epoch_stacked(run, epoch)
    for k, (r, row) in enumerate(zip(runs, rows, strict=True)):
        if not was_alive[k]:
            continue
        if row is None:  # diverged in this epoch: the solo run would have stopped here
            message = _diverged_message(epoch, losses[k], run.cfg.optimizer.lr)
            save(r, RunStatus.FAILED, message)
            log.warning("seed %d: %s", r.metrics.seed, message)
            continue
        r.metrics.add_epoch(row)
        save(r, RunStatus.RUNNING)
        record.save_checkpoint(
            r.folder, stack_checkpoint.snapshot(run, k, r.resolved, epoch, r.metrics)
        )
        assert r.tracker is not None
        r.tracker.log_epoch(row)
        log.info(
            "seed %d epoch %d/%d | train loss %.4f acc %.2f%% | test loss %.4f acc %.2f%% | "
            "lr %.3g | %.1fs",
            r.metrics.seed,
            epoch,
            run.epochs,
            row.train_loss,
            row.train_acc,
            row.test_loss,
            row.test_acc,
            row.lr,
            row.seconds,
        )


def _resume_one(cfg: DictConfig, one: _Seed, c: Any) -> record.Checkpoint | None:
    """A copy's checkpoint to resume from; a copy that had diverged stays out (alive False)."""
    try:
        before = RunRecord.load(one.folder)
    except record.RunRecordError:
        before = None
    if before is not None and (before.error or "").startswith(DIVERGED):
        c.alive = False
        one.metrics = before
        if not (one.folder / record.CHECKPOINT).is_file():
            return None
    saved = checkpoint.load_resumable(one.folder, one.resolved)
    if c.alive and saved.resume is not None:
        for row in saved.resume.metrics.epochs:
            one.metrics.add_epoch(row)
        one.metrics.resumed_after_epoch = saved.epoch
        one.metrics.wall_seconds = saved.resume.metrics.wall_seconds
    return saved


def _check_same_epoch(run_dir: Path, saved: list[record.Checkpoint | None]) -> None:
    epochs = {s.epoch for s in saved if s is not None}
    if len(epochs) > 1:
        raise UserError(
            f"cannot resume {run_dir}: its seed folders stopped after different epochs "
            f"({sorted(epochs)}); resume each seed on its own (trainer.seed=<s> "
            "hydra.run.dir=<its seed folder>)"
        )
