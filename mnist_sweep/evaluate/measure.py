"""A trained net's predictions on the run's own data splits, computed the way training did.

Training evaluated the shipped weights on its device, in its memory layout,
precision, evaluation batch size and thread count; rounding differs between
any two of those, and a near-tie can flip. Repeating all of them is what lets a
re-evaluation match metrics.json to the image.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from torch import Tensor, nn

from mnist_sweep.errors import RunFolderError, UserError
from mnist_sweep.run import record
from mnist_sweep.run.build import (
    Autocast,
    autocast_context,
    cpu_threads,
    eval_batch_size,
    prepare_model,
    resolve_device,
)
from mnist_sweep.run.data import DeviceData, prepare_data
from mnist_sweep.run.load import TrainedNet
from mnist_sweep.run.record import EpochRow, RunRecord


def recorded_epoch(run_dir: Path, epoch: int) -> tuple[RunRecord, EpochRow]:
    """metrics.json, and its figures for `epoch` (the checkpoint's: a run killed between
    writing the two files has one more epoch in metrics.json)."""
    metrics = RunRecord.load(run_dir)
    for row in metrics.epochs:
        if row.epoch == epoch:
            return metrics, row
    raise RunFolderError(
        f"{run_dir / record.METRICS} has no figures for epoch {epoch}, the epoch "
        f"{record.CHECKPOINT} is from; the folder was changed after training"
    )


@dataclass
class Split:
    """One data split's predictions next to its labels."""

    name: str  # "test" or "val"
    predictions: Tensor  # class per image, on the CPU
    labels: Tensor

    @property
    def correct(self) -> int:
        return int((self.predictions == self.labels).sum())

    @property
    def accuracy(self) -> float:
        """Percent, computed as training computes it."""
        return self.correct * 100.0 / self.labels.shape[0]


def data_config(trained: TrainedNet, data_root: str | Path | None = None) -> DictConfig:
    """The run's `data` group, resolved here (its default root reads $MNIST_DATA), with
    `data_root` in place of its root when given."""
    path = trained.run_dir / record.HYDRA_CONFIG
    try:
        data = OmegaConf.create(OmegaConf.to_container(trained.cfg.data, resolve=True))
    except (OmegaConfBaseException, AttributeError) as e:
        why = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise RunFolderError(f"{path}: cannot read its data group ({why})") from None
    if data_root is not None:
        data.root = str(data_root)
    return data


def load_splits(
    trained: TrainedNet, device: torch.device, data_root: str | Path | None
) -> DeviceData:
    """The run's training, validation and test images, as its training prepared them."""
    return prepare_data(data_config(trained, data_root), device)


def evaluation_device(choice: str, trained_on: str | None) -> torch.device:
    """`choice` (auto, cpu, cuda) as a device; auto is the kind the run trained on, when
    this machine has one."""
    if choice == "auto":
        gpu = trained_on not in (None, "cpu") and torch.cuda.is_available()
        return torch.device("cuda" if gpu else "cpu")
    try:
        return resolve_device(choice)
    except UserError as e:
        raise UserError(str(e).replace("trainer.device", "--device")) from None


@torch.inference_mode()
def predict(
    model: nn.Module,
    x: Tensor,
    batch_size: int,
    autocast: Autocast = contextlib.nullcontext,
) -> Tensor:
    """The class the net gives each image, in batches; on the CPU."""
    model.eval()
    out = []
    for start in range(0, x.shape[0], batch_size):
        with autocast():
            logits = model(x[start : start + batch_size])
        out.append(logits.argmax(1).cpu())
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def as_trained(
    trained: TrainedNet, device: torch.device, precision: str | None = None
) -> tuple[nn.Module, Autocast, int]:
    """A copy of the net set up as training evaluated it on `device`: its layout, its
    precision (or `precision`), its evaluation batch size."""
    trainer = trained.cfg.trainer
    model = prepare_model(copy.deepcopy(trained.model), trainer, device)
    autocast = autocast_context(precision or trainer.get("precision", "32"), device)
    return model, autocast, eval_batch_size(trained.cfg.data, device)


def measure(
    trained: TrainedNet, data: DeviceData, device: torch.device, precision: str | None = None
) -> list[Split]:
    """The test split's predictions, and the validation split's when the run held one out;
    in the run's precision, or `precision` ("32" for the float32 net a bf16 run ships)."""
    model, autocast, batch = as_trained(trained, device, precision)
    splits = [("test", data.test_x, data.test_y)]
    if data.val_x is not None:
        splits.append(("val", data.val_x, data.val_y))
    with cpu_threads(trained.cfg.trainer.get("threads")):
        return [Split(name, predict(model, x, batch, autocast), y.cpu()) for name, x, y in splits]
