"""Continuing an interrupted run from its last epoch checkpoint (`trainer.resume=true`).

Besides the weights, every epoch's checkpoint holds what the rest of the run
depends on: optimizer and schedule state, the RNG states (dropout and the data
order and augmentation), and the metrics so far. Restoring all of it makes a
resumed CPU run end with the same metrics as an uninterrupted one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from mnist_sweep.errors import UserError
from mnist_sweep.run import record
from mnist_sweep.run.averaging import WeightAverage

# Settings that may differ between the interrupted run and its resumption: they
# change how a run is executed, not what it computes.
MAY_CHANGE = {
    "trainer.resume", "trainer.progress", "trainer.device", "trainer.threads",
    "data.root", "data.download", "data.verify", "data.eval_batch_size",
}  # fmt: skip


def training_state(
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    generator: torch.Generator,
    metrics: dict[str, Any],
    model: nn.Module,
    average: WeightAverage | None = None,
) -> dict[str, Any]:
    """What a checkpoint needs beyond the shipped weights to continue exactly where it stopped.

    With weight averaging the checkpoint's weights are the average; the live
    weights that training goes on from are kept here, beside the average's state.
    """
    live = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return {
        "model": live,
        "average": average.state_dict() if average is not None else None,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "generator": generator.get_state(),
        "metrics": metrics,
    }


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict):
        return {prefix: tree}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


# What resuming reads: from every checkpoint, from its training state, from its metrics.
SAVED_KEYS = {"state_dict", "config", "epoch"}
STATE_KEYS = {"optimizer", "scheduler", "torch_rng", "cuda_rng", "generator", "metrics"}
METRICS_KEYS = {"epochs", "wall_seconds"}


def _has(value: Any, keys: set[str]) -> bool:
    return isinstance(value, dict) and keys <= value.keys()


def _read(path: Path) -> dict[str, Any]:
    """The checkpoint at `path`, or UserError saying why it cannot be resumed from."""
    start_over = "run again without trainer.resume=true to start this run over"
    try:
        checkpoint = record.load_checkpoint(path)
    except Exception as e:  # torch's unpickler and zip reader fail in many ways on a damaged file
        raise UserError(
            f"{path} is damaged (torch cannot read it: {type(e).__name__}); {start_over}"
        ) from None
    if _has(checkpoint, SAVED_KEYS) and "resume" not in checkpoint:
        raise UserError(f"{path} holds weights only, no training state to resume from")
    state = checkpoint.get("resume") if isinstance(checkpoint, dict) else None
    if not (
        _has(checkpoint, SAVED_KEYS)
        and _has(state, STATE_KEYS)
        and _has(state["metrics"], METRICS_KEYS)
    ):
        raise UserError(f"{path} is not a checkpoint this project wrote; {start_over}")
    return checkpoint


def load_resumable(run_dir: Path, config: dict[str, Any]) -> dict[str, Any]:
    """The run folder's checkpoint, checked to belong to this very configuration."""
    path = run_dir / record.CHECKPOINT
    if not path.is_file():
        raise UserError(
            f"trainer.resume=true but there is no {path}; "
            "pass hydra.run.dir=<the interrupted run's folder>"
        )
    checkpoint = _read(path)
    before, now = _flatten(checkpoint["config"]), _flatten(config)
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


def restore(
    checkpoint: dict[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    generator: torch.Generator,
    average: WeightAverage | None = None,
) -> int:
    """Load every saved state into the freshly built objects; returns the next epoch to run."""
    state = checkpoint["resume"]
    model.load_state_dict(state.get("model") or checkpoint["state_dict"])
    if average is not None and state.get("average") is not None:
        average.load_state_dict(state["average"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    generator.set_state(state["generator"])
    return int(checkpoint["epoch"]) + 1
