"""The training loop: config in, run folder and metrics out.

`train(cfg, run_dir)` builds data, model, optimizer and schedule from the
composed config, trains for `trainer.epochs`, evaluates after every epoch and
rewrites `metrics.json` each time, so even a run that dies leaves its history.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from optuna.exceptions import TrialPruned
from torch import Tensor, nn
from tqdm import tqdm

from mnist_sweep.errors import TrainingDiverged, UserError
from mnist_sweep.run import checkpoint, record
from mnist_sweep.run.averaging import WeightAverage, build_average
from mnist_sweep.run.data import DeviceData, augment_batch, augmentation, prepare_data
from mnist_sweep.run.model import build_model, count_params
from mnist_sweep.run.optim import build_optimizer, build_scheduler, steps_per_epoch

log = logging.getLogger(__name__)

# Called after every epoch with the metrics so far; may raise optuna's
# TrialPruned to stop the run early.
EpochCallback = Callable[[dict[str, Any]], None]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError(
            "trainer.device=cuda but no CUDA device is available; use trainer.device=cpu"
        )
    if name not in ("cpu", "cuda"):
        raise UserError(f"trainer.device must be auto, cpu or cuda, got {name!r}")
    return torch.device(name)


def autocast_context(
    precision: str, device: torch.device
) -> Callable[[], contextlib.AbstractContextManager]:
    if str(precision) == "32":
        return contextlib.nullcontext
    if str(precision) == "bf16":
        return lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    raise UserError(f'trainer.precision must be "32" or "bf16", got {precision!r}')


def sync(device: torch.device) -> None:
    """Wait for the device, so that a timer reads finished work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _check_positive(value: Any, key: str) -> None:
    """Reject what a key that takes a positive integer or null must not hold."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"{key} must be a positive integer or null, got {value!r}")


@contextlib.contextmanager
def cpu_threads(threads: int | None) -> Iterator[None]:
    """Run the block with `threads` intra-op CPU threads (None: torch's default), then restore.

    On a 2-core machine that others share, one thread trains many times faster
    than two: each op of these small nets ends in a barrier that waits for
    whichever thread the OS has just descheduled (docs/BENCHMARKS.md).
    """
    if threads is None:
        yield
        return
    _check_positive(threads, "trainer.threads")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def prepare_model(model: nn.Module, trainer_cfg: Any, device: torch.device) -> nn.Module:
    """Move the model to the device, in the memory layout the trainer config asks for."""
    model = model.to(device)
    if trainer_cfg.get("channels_last", False):
        # NHWC activations: oneDNN's convolutions and BatchNorm run faster on them
        # than on NCHW. The images have one channel, so they need no conversion.
        model = model.to(memory_format=torch.channels_last)
    return model


def train_epoch(
    model: nn.Module,
    data: DeviceData,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    cfg: DictConfig,
    generator: torch.Generator,
    autocast: Callable[[], contextlib.AbstractContextManager],
    description: str = "",
    average: WeightAverage | None = None,
) -> tuple[float, float]:
    """One pass over the training tensor in shuffled batches; returns (mean loss, accuracy %)."""
    model.train()
    n, batch_size = data.n_train, cfg.data.batch_size
    # Read once: config lookups cost more than they look, and these are per-step.
    augment = augmentation(cfg.data.augment, cfg.data.mean, cfg.data.std)
    label_smoothing = float(cfg.trainer.get("label_smoothing", 0.0))
    perm = torch.randperm(n, device=data.train_x.device, generator=generator)
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
            x = augment_batch(x, data.background, generator, **augment)
        with autocast():
            logits = model(x)
            loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if average is not None:
            average.update(model)
        loss_sum += loss.detach() * y.shape[0]
        correct += (logits.argmax(1) == y).sum()
    return (loss_sum / n).item(), correct.item() * 100.0 / n  # exact, from the integer count


# Evaluation batch when data.eval_batch_size is null. On a CPU, batches past the
# caches run slower: 128 measured 1.8x (small) to 2.8x (era_s6) faster than 2,000
# (docs/BENCHMARKS.md). On a GPU, larger batches keep it busy.
CPU_EVAL_BATCH, GPU_EVAL_BATCH = 128, 2000


def eval_batch_size(data_cfg: Any, device: torch.device) -> int:
    """`data.eval_batch_size`, or the device's default when it is null."""
    size = data_cfg.get("eval_batch_size")
    if size is None:
        return CPU_EVAL_BATCH if device.type == "cpu" else GPU_EVAL_BATCH
    _check_positive(size, "data.eval_batch_size")
    return size


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


def _new_metrics(cfg: DictConfig, params: int, device: torch.device) -> dict[str, Any]:
    return {
        "model": cfg.model.name,
        "params": params,
        "status": "running",
        "test_acc": None,  # final epoch: the headline figure
        "best_test_acc": None,  # best epoch, picked on the test set: not a fair headline
        "best_epoch": None,
        "val_acc": None,  # final epoch, only with data.val_size > 0
        "target_acc": cfg.target_acc,
        "reached_target": False,
        "epochs_planned": cfg.trainer.epochs,
        "seed": cfg.trainer.seed,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": str(torch.__version__),  # a str subclass that weights_only loading refuses
        # Who runs it: a "running" run whose process is gone was killed.
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "wall_seconds": 0.0,
        "train_seconds": 0.0,
        "error": None,
        "epochs": [],
    }


def _record_epoch(metrics: dict[str, Any], row: dict[str, Any]) -> None:
    metrics["epochs"].append(row)
    metrics["test_acc"] = row["test_acc"]
    metrics["val_acc"] = row.get("val_acc")
    metrics["reached_target"] = row["test_acc"] >= metrics["target_acc"]
    best = max(metrics["epochs"], key=lambda e: e["test_acc"])
    metrics["best_test_acc"], metrics["best_epoch"] = best["test_acc"], best["epoch"]
    metrics["train_seconds"] = round(sum(e["seconds"] for e in metrics["epochs"]), 3)


def train(
    cfg: DictConfig, run_dir: str | Path, on_epoch_end: EpochCallback | None = None
) -> dict[str, Any]:
    """Train per the composed config, filling the run folder; returns what metrics.json holds."""
    with cpu_threads(cfg.trainer.get("threads")):
        return _train(cfg, run_dir, on_epoch_end)


def _train(
    cfg: DictConfig, run_dir: str | Path, on_epoch_end: EpochCallback | None
) -> dict[str, Any]:
    started = time.perf_counter()
    run_dir = Path(run_dir)
    device = resolve_device(cfg.trainer.device)
    autocast = autocast_context(cfg.trainer.precision, device)
    torch.manual_seed(cfg.trainer.seed)
    generator = torch.Generator(device=device).manual_seed(cfg.trainer.seed)

    # An impossible architecture stops here.
    model = build_model(cfg.model, cfg.dropout.p, cfg.dropout.get("placement", "unit"))
    params = count_params(model)
    epochs = cfg.trainer.epochs
    if epochs < 1:
        raise UserError(f"trainer.epochs must be at least 1, got {epochs}")
    eval_bs = eval_batch_size(cfg.data, device)
    metrics = _new_metrics(cfg, params, device)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    saved = checkpoint.load_resumable(run_dir, resolved) if cfg.trainer.get("resume") else None
    if saved is not None:  # the history so far, and the time it took
        before = saved["resume"]["metrics"]
        for epoch_row in before["epochs"]:
            _record_epoch(metrics, epoch_row)
        metrics["resumed_after_epoch"] = saved["epoch"]
        started -= before["wall_seconds"]

    def save(status: str, error: str | None = None) -> None:
        metrics["status"], metrics["error"] = status, error
        metrics["wall_seconds"] = round(time.perf_counter() - started, 3)
        record.write_json(run_dir / record.METRICS, metrics)

    save("running")  # from here on, metrics.json tells what became of the run
    try:
        data = prepare_data(cfg.data, device)
        record.write_model_summary(run_dir, model)
        model = prepare_model(model, cfg.trainer, device)
        optimizer = build_optimizer(cfg.optimizer, model)
        steps = steps_per_epoch(data.n_train, cfg.data.batch_size)
        scheduler = build_scheduler(cfg.scheduler, optimizer, steps, epochs)
        average = build_average(cfg.get("average"), model, steps * epochs)
        first_epoch = 1
        if saved is not None:
            first_epoch = checkpoint.restore(saved, model, optimizer, scheduler, generator, average)
            log.info("resuming %s after epoch %d", run_dir, first_epoch - 1)
        log.info(
            "model %s: %s params | %s train / %s test images | %s",
            cfg.model.name, f"{params:,}", f"{data.n_train:,}", f"{data.test_x.shape[0]:,}",
            metrics["device"],
        )  # fmt: skip
        for epoch in range(first_epoch, epochs + 1):
            sync(device)
            t0 = time.perf_counter()
            train_loss, train_acc = train_epoch(
                model,
                data,
                optimizer,
                scheduler,
                cfg,
                generator,
                autocast,
                f"epoch {epoch}/{epochs}",
                average,
            )
            sync(device)
            seconds = time.perf_counter() - t0
            if not torch.isfinite(torch.tensor(train_loss)):
                raise TrainingDiverged(
                    f"training diverged in epoch {epoch} (train loss is {train_loss}); "
                    f"lower optimizer.lr (now {cfg.optimizer.lr}) or change optimizer/scheduler"
                )
            # The averaged weights, once there are any, are the ones this run ships.
            shipped = average.eval_model(model) if average is not None else model
            test_loss, test_acc = evaluate(shipped, data.test_x, data.test_y, eval_bs, autocast)
            row = {
                "epoch": epoch,
                "train_loss": train_loss,
                "train_acc": train_acc,
                "test_loss": test_loss,
                "test_acc": test_acc,
                "lr": scheduler.get_last_lr()[0],
                "seconds": round(seconds, 3),
            }
            if data.val_x is not None:
                row["val_loss"], row["val_acc"] = evaluate(
                    shipped, data.val_x, data.val_y, eval_bs, autocast
                )
            row["eval_seconds"] = round(time.perf_counter() - t0 - seconds, 3)
            _record_epoch(metrics, row)
            save("running")
            state = checkpoint.training_state(
                optimizer, scheduler, generator, metrics, model, average
            )
            record.save_checkpoint(run_dir, shipped, resolved, epoch, state)
            log.info(
                "epoch %d/%d | train loss %.4f acc %.2f%% | test loss %.4f acc %.2f%%%s"
                " | lr %.3g | %.1fs",
                epoch,
                epochs,
                train_loss,
                train_acc,
                test_loss,
                test_acc,
                f" | val acc {row['val_acc']:.2f}%" if "val_acc" in row else "",
                row["lr"],
                seconds,
            )
            if on_epoch_end is not None:
                on_epoch_end(metrics)
    except TrialPruned:
        save("pruned", f"pruned after epoch {len(metrics['epochs'])}")
        raise
    except BaseException as e:  # KeyboardInterrupt too: the history so far must survive
        save("failed", str(e) or type(e).__name__)
        raise
    finally:
        if metrics["epochs"]:
            record.plot_curves(run_dir, metrics["epochs"], f"{cfg.model.name} ({params:,} params)")
    save("completed")
    log.info(
        "final test accuracy %.2f%% (target %.2f%%: %s); best epoch %d: %.2f%%",
        metrics["test_acc"],
        cfg.target_acc,
        "reached" if metrics["reached_target"] else "not reached",
        metrics["best_epoch"],
        metrics["best_test_acc"],
    )
    return metrics
