"""Each copy's checkpoint in the solo format, and a stacked run restored from K of them.

A copy's checkpoint.pt is exactly what its solo run would write: the shipped
weights under the net's own names, its live weights, its slice of the
optimizer's and the average's state, the shared schedule's state, and its own
random streams (its dropout stream as `torch_rng`, its data generator as
`generator`). So `load_model`, `evaluate` and `export` read it as any run's,
and even a solo run could resume from it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from mnist_sweep.run import record
from mnist_sweep.stack.build import StackedRun
from mnist_sweep.stack.net import StackedNet


def _slice(value: Any, k: int) -> Any:
    """Copy k's part of a stacked state entry: per-element tensors have the copy axis
    first; 0-d tensors (Adam's step, the average's count) are shared."""
    if isinstance(value, Tensor):
        return value[k].detach().cpu().clone() if value.dim() > 0 else value.detach().cpu().clone()
    if isinstance(value, dict):
        return {key: _slice(v, k) for key, v in value.items()}
    return value


def _stack(values: list[Any], device: torch.device) -> Any:
    """The inverse of _slice over all copies."""
    first = values[0]
    if isinstance(first, Tensor):
        if first.dim() == 0:
            return first.to(device)
        return torch.stack([v.to(device) for v in values])
    if isinstance(first, dict):
        return {key: _stack([v[key] for v in values], device) for key in first}
    return first


def _average_state(run: StackedRun, k: int) -> dict[str, Any] | None:
    if run.average is None:
        return None
    state = run.average.state_dict()
    net = run.net
    averaged = {}
    for key, value in state["averaged"].items():
        if key.startswith("module."):
            key = "module." + net.solo_name(key.removeprefix("module."))
        averaged[key] = _slice(value, k)
    return {"averaged": averaged, "step": state["step"]}


def _load_average(run: StackedRun, states: list[dict[str, Any]]) -> None:
    assert run.average is not None
    flat = {}
    for key in states[0]["averaged"]:
        values = [s["averaged"][key] for s in states]
        if key.startswith("module."):  # every copy's own, 0-d ones too (BatchNorm's count)
            flat["module." + key.removeprefix("module.").replace(".", "__")] = torch.stack(
                [v.to(run.device) for v in values]
            )
        else:  # the count of updates, shared
            flat[key] = _stack(values, run.device)
    run.average.load_state_dict({"averaged": flat, "step": states[0]["step"]})


def snapshot(
    run: StackedRun, k: int, config: dict[str, Any], epoch: int, metrics: record.RunRecord
) -> record.Checkpoint:
    """Copy k's checkpoint after `epoch`, as its solo run would write it."""
    c = run.copies[k]
    shipped: StackedNet = run.shipped()
    cuda = c.dropout.device.type == "cuda"
    return record.Checkpoint(
        state_dict=shipped.copy_state_dict(k),
        config=config,
        epoch=epoch,
        resume=record.TrainingState(
            model=run.net.copy_state_dict(k),
            average=_average_state(run, k),
            optimizer=_slice(run.optimizer.state_dict(), k),
            scheduler=run.scheduler.state_dict(),
            torch_rng=torch.get_rng_state() if cuda else c.dropout.get_state(),
            cuda_rng=[c.dropout.get_state()] if cuda else [],
            generator=c.generator.get_state(),
            metrics=metrics,
        ),
    )


def restore(run: StackedRun, checkpoints: list[record.Checkpoint | None]) -> None:
    """Load each copy's checkpoint (None: a copy that diverged before its first one, left
    as built) into the stacked run."""
    saved = [c for c in checkpoints if c is not None and c.resume is not None]
    for k, checkpoint in enumerate(checkpoints):
        if checkpoint is None or checkpoint.resume is None:
            continue
        state = checkpoint.resume
        run.net.load_copy(k, state.model or checkpoint.state_dict)
        copy = run.copies[k]
        copy.generator.set_state(state.generator)
        cuda = copy.dropout.device.type == "cuda"
        copy.dropout.set_state(state.cuda_rng[0] if cuda and state.cuda_rng else state.torch_rng)
    # The optimizer's, schedule's and average's states are stacked over all copies; a
    # copy without a checkpoint (dead) borrows a live one's, which it never uses.
    states = [
        c.resume if c is not None and c.resume is not None else saved[0].resume for c in checkpoints
    ]
    run.optimizer.load_state_dict(_stack([s.optimizer for s in states], run.device))
    run.scheduler.load_state_dict(saved[0].resume.scheduler)
    if run.average is not None and all(s.average is not None for s in states):
        _load_average(run, [s.average for s in states])
