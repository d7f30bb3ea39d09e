"""Continuing an interrupted run from its last epoch checkpoint (`trainer.resume=true`).

Besides the weights, every epoch's checkpoint holds what the rest of the run
depends on: optimizer and schedule state, the RNG states (dropout and the data
order and augmentation), and the record so far. Restoring all of it makes a
resumed CPU run end with the same metrics as an uninterrupted one. What the
file holds is `record.Checkpoint`; this module moves it from and into the live
torch objects of a `Run`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mnist_sweep.errors import UserError
from mnist_sweep.run import record
from mnist_sweep.run.build import Run

# Settings that may differ between the interrupted run and its resumption: they
# change how a run is executed, not what it computes.
MAY_CHANGE = {
    "trainer.resume",
    "trainer.progress",
    "trainer.device",
    "trainer.threads",
    "trainer.cuda_graph",
    "data.root",
    "data.download",
    "data.verify",
    "data.eval_batch_size",
}


def _on_cpu(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def training_state(run: Run, metrics: record.RunRecord) -> record.TrainingState:
    """What a checkpoint needs beyond the shipped weights to continue exactly where it stopped.

    With weight averaging the checkpoint's weights are the average; the live
    weights that training goes on from are kept here, beside the average's state.
    """
    return record.TrainingState(
        model=_on_cpu(run.model),
        average=run.average.state_dict() if run.average is not None else None,
        optimizer=run.optimizer.state_dict(),
        scheduler=run.scheduler.state_dict(),
        torch_rng=torch.get_rng_state(),
        cuda_rng=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        generator=run.generator.get_state(),
        metrics=metrics,
    )


def snapshot(
    run: Run, config: dict[str, Any], epoch: int, metrics: record.RunRecord
) -> record.Checkpoint:
    """The checkpoint of the run after `epoch`: its shipped weights, and all it needs to go on."""
    return record.Checkpoint(
        state_dict=_on_cpu(run.shipped()),
        config=config,
        epoch=epoch,
        resume=training_state(run, metrics),
    )


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict):
        return {prefix: tree}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def requeued(run_dir: Path) -> bool:
    """Whether to resume this run folder although trainer.resume is off: this is a SLURM
    job requeued after preemption or timeout, and its earlier attempt left a checkpoint.

    On SLURM's preemption (or timeout) signal, submitit asks Hydra's submitit launcher for
    its `checkpoint()`, which requeues the job with its very command line; SLURM counts the
    restarts in SLURM_RESTART_COUNT. The same command in the same folder is this run.
    """
    restarts = os.environ.get("SLURM_RESTART_COUNT", "0")
    return restarts.isdigit() and int(restarts) > 0 and (run_dir / record.CHECKPOINT).is_file()


def load_resumable(run_dir: Path, config: dict[str, Any]) -> record.Checkpoint:
    """The run folder's checkpoint, checked to belong to this very configuration."""
    path = run_dir / record.CHECKPOINT
    if not path.is_file():
        raise UserError(
            f"trainer.resume=true but there is no {path}; "
            "pass hydra.run.dir=<the interrupted run's folder>"
        )
    try:
        checkpoint = record.load_checkpoint(run_dir)
    except record.RunRecordError as e:
        raise UserError(
            f"{e}; run again without trainer.resume=true to start this run over"
        ) from None
    if checkpoint.resume is None:
        raise UserError(f"{path} holds weights only, no training state to resume from")
    before, now = _flatten(checkpoint.config), _flatten(config)
    changed = sorted(
        key
        for key in before.keys() | now.keys()
        if key not in MAY_CHANGE and before.get(key) != now.get(key)
    )
    if changed:
        raise UserError(
            f"cannot resume {path}: the config differs in {', '.join(changed)}; "
            "resume with the interrupted run's own overrides"
        )
    return checkpoint


def restore(checkpoint: record.Checkpoint, run: Run) -> int:
    """Load every saved state into the freshly built run; returns the next epoch to run."""
    state = checkpoint.resume
    if state is None:
        raise UserError("the checkpoint holds weights only, no training state to resume from")
    run.model.load_state_dict(state.model or checkpoint.state_dict)
    if run.average is not None and state.average is not None:
        run.average.load_state_dict(state.average)
    run.optimizer.load_state_dict(state.optimizer)
    run.scheduler.load_state_dict(state.scheduler)
    torch.set_rng_state(state.torch_rng)
    if state.cuda_rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state.cuda_rng)
    run.generator.set_state(state.generator)
    return checkpoint.epoch + 1
