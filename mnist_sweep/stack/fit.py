"""The stacked epoch: K copies trained one step at a time together, each as its solo run.

Per step each copy takes its own batch (its own permutation), its own
augmentation (its own generator) and its own dropout masks; the K batches go
through the stacked net as one. The loss minimised is the sum of the copies'
mean losses, so each copy's gradient is its solo gradient, unscaled. A copy
that diverged (its epoch's loss not finite, as a solo run checks) is masked
out: its loss and gradients are zero from then on, and it is no longer written.
Losses and accuracies stay on the device until the epoch ends.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import vmap

from mnist_sweep.run.data import augment_batch, augmentation
from mnist_sweep.run.fit import sync
from mnist_sweep.run.optim import steps_per_epoch
from mnist_sweep.run.record import EpochRow
from mnist_sweep.stack.build import StackedRun
from mnist_sweep.stack.dropout import draw
from mnist_sweep.stack.graph import GraphedTraining, uses_cuda_graph
from mnist_sweep.stack.loss import loss_function, teacher_logits
from mnist_sweep.stack.net import StackedNet


def augmented(run: StackedRun, x: Tensor, augment: dict[str, float] | None) -> Tensor:
    """Each copy's batch augmented as its solo run does, from its own generator."""
    if augment is None:
        return x
    background = run.data.background
    return torch.stack(
        [augment_batch(x[k], background, c.generator, **augment) for k, c in enumerate(run.copies)]
    )


def train_epoch_stacked(run: StackedRun) -> tuple[list[float], list[float]]:
    """One pass of every copy over the training tensor; each copy's (mean loss, accuracy %)."""
    cfg, data, net = run.cfg, run.data, run.net
    net.train()
    n, batch_size, device = data.n_train, cfg.data.batch_size, data.train_x.device
    augment = augmentation(cfg.data.augment, cfg.data.mean, cfg.data.std)
    loss_of = loss_function(run)
    alive = run.alive()
    some_dead = not all(c.alive for c in run.copies)  # fixed for the epoch
    dropout_streams = [c.dropout for c in run.copies]
    channels_last = bool(cfg.trainer.get("channels_last", False))
    perms = torch.stack(
        [torch.randperm(n, device=device, generator=c.generator) for c in run.copies]
    )
    loss_sum = torch.zeros(len(run.copies), device=device)
    correct = torch.zeros(len(run.copies), device=device, dtype=torch.long)
    for i in range(steps_per_epoch(n, batch_size)):
        idx = perms[:, i * batch_size : (i + 1) * batch_size]
        x, y = augmented(run, data.train_x[idx], augment), data.train_y[idx]
        masks = draw(
            run.dropout_layers, idx.shape[1], dropout_streams, x.dtype, device, channels_last
        )
        with run.autocast():
            logits = net(x, masks)
            losses = loss_of(logits, y, teacher_logits(run, x))
        # A diverged copy adds nothing: where(), not a product, since 0 * nan is nan.
        total = torch.where(alive, losses, 0).sum()
        run.optimizer.zero_grad(set_to_none=True)
        total.backward()
        if some_dead:
            _drop_dead_gradients(net, alive)
        run.optimizer.step()
        run.scheduler.step()
        if run.average is not None:
            run.average.update(net)
        loss_sum += losses.detach() * y.shape[1]
        correct += (logits.argmax(-1) == y).sum(1)
    return (loss_sum / n).tolist(), _percent(correct, n)


def _drop_dead_gradients(net: StackedNet, alive: Tensor) -> None:
    """Zero the gradients of diverged copies (nan there would reach their own weights only,
    but an optimizer should see nothing of them)."""
    for p in net.parameters():
        if p.grad is not None:
            keep = alive.view(-1, *([1] * (p.dim() - 1)))
            p.grad = torch.where(keep, p.grad, 0)


@torch.inference_mode()
def evaluate_stacked(
    net: StackedNet,
    x: Tensor,
    y: Tensor,
    batch_size: int,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> tuple[list[float], list[float]]:
    """Every copy's mean cross-entropy and accuracy % over one split."""
    net.eval()
    loss_sum = torch.zeros(net.copies, device=x.device)
    correct = torch.zeros(net.copies, device=x.device, dtype=torch.long)
    for start in range(0, x.shape[0], batch_size):
        xb, yb = x[start : start + batch_size], y[start : start + batch_size]
        with autocast():
            logits = net(xb, shared_input=True)
        loss_sum += vmap(F.cross_entropy, in_dims=(0, None))(logits.float(), yb, reduction="sum")
        correct += (logits.argmax(-1) == yb).sum(1)
    return (loss_sum / x.shape[0]).tolist(), _percent(correct, x.shape[0])


def _percent(correct: Tensor, total: int) -> list[float]:
    # From the integer counts, as the solo run computes it.
    return [c * 100.0 / total for c in correct.tolist()]


def fit_epoch_stacked(run: StackedRun, epoch: int) -> tuple[list[EpochRow | None], list[float]]:
    """Train epoch `epoch` of every live copy and evaluate what each ships: a row per copy,
    None for a copy that had diverged before or diverges now (its `alive` turns False),
    and each copy's train loss (a diverged copy's says how)."""
    sync(run.device)
    t0 = time.perf_counter()
    if uses_cuda_graph(run.cfg, run.device):
        if run.graphed is None:
            run.graphed = GraphedTraining(run)
        train_loss, train_acc = run.graphed.train_epoch(run)
    else:
        train_loss, train_acc = train_epoch_stacked(run)
    sync(run.device)
    seconds = time.perf_counter() - t0
    shipped, data, bs = run.shipped(), run.data, run.eval_batch_size
    test_loss, test_acc = evaluate_stacked(shipped, data.test_x, data.test_y, bs, run.autocast)
    val_loss = val_acc = None
    if data.val_x is not None:
        val_loss, val_acc = evaluate_stacked(shipped, data.val_x, data.val_y, bs, run.autocast)
    lr = run.scheduler.get_last_lr()[0]
    figures = {
        "train_loss": train_loss,
        "train_acc": train_acc,
        "test_loss": test_loss,
        "test_acc": test_acc,
        "val_loss": val_loss,
        "val_acc": val_acc,
    }
    eval_seconds = round(time.perf_counter() - t0 - seconds, 3)
    rows: list[EpochRow | None] = []
    for k, c in enumerate(run.copies):
        if c.alive and not math.isfinite(train_loss[k]):
            c.alive = False  # the caller records why
        if not c.alive:
            rows.append(None)
            continue
        one = {name: None if v is None else v[k] for name, v in figures.items()}
        rows.append(
            EpochRow(
                epoch=epoch, lr=lr, seconds=round(seconds, 3), eval_seconds=eval_seconds, **one
            )
        )
    return rows, train_loss
