"""The epoch loop: train one pass, check the loss is finite, evaluate, tell the callbacks.

`fit` writes nothing itself: whatever should happen after an epoch (the run
folder's record and checkpoint, a sweep trial's pruning report, a log line) is
a callback, called with the epoch's figures in the order given. A callback may
raise to stop the run (optuna's TrialPruned does).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from mnist_sweep.errors import TrainingDiverged
from mnist_sweep.run.build import Run
from mnist_sweep.run.data import DeviceData, augment_batch, augmentation
from mnist_sweep.run.distill import distillation_loss
from mnist_sweep.run.optim import steps_per_epoch
from mnist_sweep.run.record import EpochRow

Callback = Callable[[EpochRow], None]


def sync(device: torch.device) -> None:
    """Wait for the device, so that a timer reads finished work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_epoch(
    run: Run, data: DeviceData | None = None, description: str = ""
) -> tuple[float, float]:
    """One pass over the training tensor (the run's, or `data`) in shuffled batches;
    returns (mean loss, accuracy %)."""
    data = run.data if data is None else data
    cfg, model, optimizer, scheduler, average = (
        run.cfg,
        run.model,
        run.optimizer,
        run.scheduler,
        run.average,
    )
    model.train()
    n, batch_size = data.n_train, cfg.data.batch_size
    # Read once: config lookups cost more than they look, and these are per-step.
    augment = augmentation(cfg.data.augment, cfg.data.mean, cfg.data.std)
    label_smoothing = float(cfg.trainer.get("label_smoothing", 0.0))
    teacher = run.teacher
    if teacher is not None:
        alpha, temperature = float(cfg.distill.alpha), float(cfg.distill.temperature)
    perm = torch.randperm(n, device=data.train_x.device, generator=run.generator)
    # Sums stay on the device: reading them every step would stall a GPU.
    loss_sum = torch.zeros((), device=data.train_x.device)
    correct = torch.zeros((), device=data.train_x.device, dtype=torch.long)
    steps = steps_per_epoch(n, batch_size)
    bar = tqdm(
        range(steps), desc=description, leave=False, disable=None if cfg.trainer.progress else True
    )
    for i in bar:
        idx = perm[i * batch_size : (i + 1) * batch_size]
        x, y = data.train_x[idx], data.train_y[idx]
        if augment is not None:
            x = augment_batch(x, data.background, run.generator, **augment)
        with run.autocast():
            logits = model(x)
            if teacher is None:
                loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
            else:
                with torch.no_grad():
                    teacher_logits = teacher(x)
                loss = distillation_loss(
                    logits, y, teacher_logits, alpha, temperature, label_smoothing
                )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if average is not None:
            average.update(model)
        loss_sum += loss.detach() * y.shape[0]
        correct += (logits.argmax(1) == y).sum()
    return (loss_sum / n).item(), correct.item() * 100.0 / n  # exact, from the integer count


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    batch_size: int,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy (%) over a whole split, in large batches."""
    model.eval()
    loss_sum = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device, dtype=torch.long)
    for start in range(0, x.shape[0], batch_size):
        xb, yb = x[start : start + batch_size], y[start : start + batch_size]
        with autocast():
            logits = model(xb)
        loss_sum += F.cross_entropy(logits.float(), yb, reduction="sum")
        correct += (logits.argmax(1) == yb).sum()
    return (loss_sum / x.shape[0]).item(), correct.item() * 100.0 / x.shape[0]


def fit_epoch(run: Run, epoch: int) -> EpochRow:
    """Train epoch `epoch` of the run and evaluate the weights it ships."""
    sync(run.device)
    t0 = time.perf_counter()
    train_loss, train_acc = train_epoch(run, description=f"epoch {epoch}/{run.epochs}")
    sync(run.device)
    seconds = time.perf_counter() - t0
    if not torch.isfinite(torch.tensor(train_loss)):
        raise TrainingDiverged(
            f"training diverged in epoch {epoch} (train loss is {train_loss}); "
            f"lower optimizer.lr (now {run.cfg.optimizer.lr}) or change optimizer/scheduler"
        )
    shipped, data, bs = run.shipped(), run.data, run.eval_batch_size
    test_loss, test_acc = evaluate(shipped, data.test_x, data.test_y, bs, run.autocast)
    val_loss = val_acc = None
    if data.val_x is not None:
        val_loss, val_acc = evaluate(shipped, data.val_x, data.val_y, bs, run.autocast)
    return EpochRow(
        epoch=epoch,
        train_loss=train_loss,
        train_acc=train_acc,
        test_loss=test_loss,
        test_acc=test_acc,
        lr=run.scheduler.get_last_lr()[0],
        seconds=round(seconds, 3),
        eval_seconds=round(time.perf_counter() - t0 - seconds, 3),
        val_loss=val_loss,
        val_acc=val_acc,
    )


def fit(run: Run, epochs: Iterable[int], callbacks: Sequence[Callback] = ()) -> list[EpochRow]:
    """Train the given epochs of the run (e.g. range(1, run.epochs + 1)), calling every
    callback after each; returns the epochs' figures."""
    rows = []
    for epoch in epochs:
        rows.append(fit_epoch(run, epoch))
        for callback in callbacks:
            callback(rows[-1])
    return rows
