"""The run folder: the name of every file in it and the format of the files training writes.

- metrics.json: the run's `RunRecord`, one `EpochRow` per epoch, rewritten after every epoch
- model_summary.txt: layer / output shape / param # table
- checkpoint.pt: a `Checkpoint`, the shipped weights + resolved config + what resuming needs
  (loads with weights_only=True)
- curves.png: loss and accuracy per epoch, train vs test
- .hydra/config.yaml, .hydra/overrides.yaml, .hydra/hydra.yaml: Hydra's own, written
  before the job starts

Only the process that trains a run writes its metrics.json; every other module
reads it through `RunRecord.load`. A run that died leaves "running" behind:
`RunRecord.still_running` tells a live one from a dead one.

Files are written to a temporary name and renamed, so a crash mid-write never
leaves a half-written file behind.
"""

from __future__ import annotations

import enum
import json
import os
import socket
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mnist_sweep import plots
from mnist_sweep.errors import RunRecordError

if TYPE_CHECKING:
    from torch import Tensor, nn

# torch is imported where a checkpoint is written or read, not here: `compare`
# reads run folders and should not pay torch's seconds of start-up.
METRICS = "metrics.json"
SUMMARY = "model_summary.txt"
CHECKPOINT = "checkpoint.pt"
CURVES = "curves.png"
HYDRA_DIR = Path(".hydra")
HYDRA_CONFIG = HYDRA_DIR / "config.yaml"  # the composed config the run trained with
HYDRA_OVERRIDES = HYDRA_DIR / "overrides.yaml"  # the command line's task overrides
HYDRA_RUNTIME = HYDRA_DIR / "hydra.yaml"  # Hydra's own settings: choices, launcher, job
# The job setting (hydra.job.<this>) naming the sweep trial a run was launched for.
SWEEP_TRIAL = "optuna_trial"


class RunStatus(str, enum.Enum):
    """What metrics.json says became of a run (its "status")."""

    RUNNING = "running"  # the training process is at work, or died without a word
    COMPLETED = "completed"
    PRUNED = "pruned"
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value


# --- writing files ----------------------------------------------------------------------


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call write(tmp) on a temporary file next to `path`, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2) + "\n"))


# --- reading what training wrote ------------------------------------------------------------

_NUMBER = (int, float)
_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


class _Entries:
    """One JSON object of a record file, read key by key into a one-line error on any flaw."""

    def __init__(self, data: Any, path: Path, where: str = "") -> None:
        if not isinstance(data, dict):
            raise RunRecordError(path, f"holds {where}{_kind(data)}, expected a JSON object")
        self.data, self.path, self.where = data, path, where

    def get(self, key: str, types: tuple[type, ...], *, null: bool = False) -> Any:
        if key not in self.data:
            raise RunRecordError(self.path, f"has no {self.where}{key!r} entry")
        return self._check(key, types, null)

    def optional(self, key: str, types: tuple[type, ...]) -> Any:
        """A key that files written before it existed lack (and that may be null)."""
        return self._check(key, types, True) if key in self.data else None

    def _check(self, key: str, types: tuple[type, ...], null: bool) -> Any:
        value = self.data[key]
        if value is None and null:
            return None
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            expected = _NAMES.get(types[-1], types[-1].__name__)
            raise RunRecordError(
                self.path, f"has {_kind(value)} for {self.where}{key!r}, expected {expected}"
            )
        return value


def _kind(value: Any) -> str:
    return "null" if value is None else f"a {type(value).__name__} ({value!r:.40})"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise RunRecordError(path, "is missing") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise RunRecordError(path, f"is unreadable or corrupt ({_first_line(e)})") from None


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


# --- metrics.json ------------------------------------------------------------------------------


@dataclass
class EpochRow:
    """One epoch's figures, as metrics.json lists them under "epochs"."""

    epoch: int
    train_loss: float
    train_acc: float
    test_loss: float
    test_acc: float
    lr: float
    seconds: float  # training, without evaluation
    eval_seconds: float
    val_loss: float | None = None  # only with a validation split (data.val_size > 0)
    val_acc: float | None = None

    def to_dict(self) -> dict[str, Any]:
        row = {
            "epoch": self.epoch,
            "train_loss": self.train_loss,
            "train_acc": self.train_acc,
            "test_loss": self.test_loss,
            "test_acc": self.test_acc,
            "lr": self.lr,
            "seconds": self.seconds,
        }
        if self.val_acc is not None:  # no validation split: no val keys at all
            row["val_loss"], row["val_acc"] = self.val_loss, self.val_acc
        row["eval_seconds"] = self.eval_seconds
        return row

    @classmethod
    def from_dict(cls, data: Any, path: Path, where: str = "") -> EpochRow:
        e = _Entries(data, path, where)
        return cls(
            epoch=e.get("epoch", (int,)),
            train_loss=e.get("train_loss", _NUMBER),
            train_acc=e.get("train_acc", _NUMBER),
            test_loss=e.get("test_loss", _NUMBER),
            test_acc=e.get("test_acc", _NUMBER),
            lr=e.get("lr", _NUMBER),
            seconds=e.get("seconds", _NUMBER),
            eval_seconds=e.get("eval_seconds", _NUMBER),
            val_loss=e.optional("val_loss", _NUMBER),
            val_acc=e.optional("val_acc", _NUMBER),
        )


@dataclass
class RunRecord:
    """What metrics.json holds: the run's figures so far and how it stands."""

    model: str
    params: int
    target_acc: float
    epochs_planned: int
    seed: int
    device: str
    torch: str
    status: RunStatus = RunStatus.RUNNING
    error: str | None = None  # why it failed or was pruned
    test_acc: float | None = None  # final epoch: the headline figure
    best_test_acc: float | None = None  # best epoch, picked on the test set: not a fair headline
    best_epoch: int | None = None
    val_acc: float | None = None  # final epoch, only with data.val_size > 0
    reached_target: bool = False
    # Who runs it: a "running" run whose process is gone was killed. Runs
    # recorded before these were written lack them.
    host: str | None = None
    pid: int | None = None
    wall_seconds: float = 0.0
    train_seconds: float = 0.0
    epochs: list[EpochRow] = field(default_factory=list)
    resumed_after_epoch: int | None = None  # written only for a resumed run

    def add_epoch(self, row: EpochRow) -> None:
        """Append an epoch and update the figures that follow from the history."""
        self.epochs.append(row)
        self.test_acc, self.val_acc = row.test_acc, row.val_acc
        self.reached_target = row.test_acc >= self.target_acc
        best = max(self.epochs, key=lambda e: e.test_acc)
        self.best_test_acc, self.best_epoch = best.test_acc, best.epoch
        self.train_seconds = round(sum(e.seconds for e in self.epochs), 3)

    def to_dict(self) -> dict[str, Any]:
        data = {
            "model": self.model,
            "params": self.params,
            "status": self.status.value,
            "test_acc": self.test_acc,
            "best_test_acc": self.best_test_acc,
            "best_epoch": self.best_epoch,
            "val_acc": self.val_acc,
            "target_acc": self.target_acc,
            "reached_target": self.reached_target,
            "epochs_planned": self.epochs_planned,
            "seed": self.seed,
            "device": self.device,
            "torch": self.torch,
            "host": self.host,
            "pid": self.pid,
            "wall_seconds": self.wall_seconds,
            "train_seconds": self.train_seconds,
            "error": self.error,
            "epochs": [e.to_dict() for e in self.epochs],
        }
        if self.resumed_after_epoch is not None:
            data["resumed_after_epoch"] = self.resumed_after_epoch
        return data

    @classmethod
    def from_dict(cls, data: Any, path: Path) -> RunRecord:
        """The record in `data`, as read from `path` (named in the error if it is flawed)."""
        e = _Entries(data, path)
        try:
            status = RunStatus(e.get("status", (str,)))
        except ValueError:
            known = ", ".join(s.value for s in RunStatus)
            raise RunRecordError(
                path, f"has an unknown status {data['status']!r} (expected {known})"
            ) from None
        rows = e.get("epochs", (list,))
        return cls(
            model=e.get("model", (str,)),
            params=e.get("params", (int,)),
            status=status,
            test_acc=e.get("test_acc", _NUMBER, null=True),
            best_test_acc=e.get("best_test_acc", _NUMBER, null=True),
            best_epoch=e.get("best_epoch", (int,), null=True),
            val_acc=e.get("val_acc", _NUMBER, null=True),
            target_acc=e.get("target_acc", _NUMBER),
            reached_target=e.get("reached_target", (bool,)),
            epochs_planned=e.get("epochs_planned", (int,)),
            seed=e.get("seed", (int,)),
            device=e.get("device", (str,)),
            torch=e.get("torch", (str,)),
            host=e.optional("host", (str,)),
            pid=e.optional("pid", (int,)),
            wall_seconds=e.get("wall_seconds", _NUMBER),
            train_seconds=e.get("train_seconds", _NUMBER),
            error=e.get("error", (str,), null=True),
            epochs=[EpochRow.from_dict(r, path, f"epochs[{i}] ") for i, r in enumerate(rows)],
            resumed_after_epoch=e.optional("resumed_after_epoch", (int,)),
        )

    @classmethod
    def load(cls, run_dir: str | Path) -> RunRecord:
        """The run folder's metrics.json; RunRecordError if it is missing or flawed."""
        path = Path(run_dir) / METRICS
        return cls.from_dict(_read_json(path), path)

    def save(self, run_dir: str | Path) -> None:
        write_json(Path(run_dir) / METRICS, self.to_dict())

    def still_running(self, run_dir: str | Path) -> bool:
        """Whether the process that trains this run is at work: False once the record says
        how the run ended, and for a "running" run whose process is gone (killed)."""
        if self.status is not RunStatus.RUNNING:
            return False
        if self.host == socket.gethostname() and self.pid is not None:
            return process_alive(self.pid)
        # Another machine: alive if it wrote within about three epochs' time.
        epoch = max((e.seconds + e.eval_seconds for e in self.epochs), default=0)
        written = (Path(run_dir) / METRICS).stat().st_mtime
        return time.time() - written < max(3 * epoch, 600)


def process_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by someone else
    return True


def sweep_trial(hydra_runtime: Mapping[str, Any]) -> int | None:
    """The sweep trial a run was launched for, from its loaded .hydra/hydra.yaml (None for a
    run outside a sweep)."""
    hydra = hydra_runtime.get("hydra")
    job = hydra.get("job") if isinstance(hydra, Mapping) else None
    number = job.get(SWEEP_TRIAL) if isinstance(job, Mapping) else None
    return number if isinstance(number, int) and not isinstance(number, bool) else None


# --- checkpoint.pt -----------------------------------------------------------------------------


@dataclass
class TrainingState:
    """What a checkpoint holds beyond the shipped weights to go on exactly where it stopped
    (run/checkpoint.py takes it from and puts it back into the live objects)."""

    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    torch_rng: Tensor
    cuda_rng: list[Tensor]
    generator: Tensor
    metrics: RunRecord  # the record as of the checkpoint's epoch
    # The live weights training goes on from (with weight averaging, the shipped
    # ones are the average), and the average's own state.
    model: dict[str, Tensor] | None = None
    average: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "average": self.average,
            "optimizer": self.optimizer,
            "scheduler": self.scheduler,
            "torch_rng": self.torch_rng,
            "cuda_rng": self.cuda_rng,
            "generator": self.generator,
            "metrics": self.metrics.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Any, path: Path) -> TrainingState:
        e = _Entries(data, path, "resume ")
        return cls(
            optimizer=e.get("optimizer", (dict,)),
            scheduler=e.get("scheduler", (dict,)),
            torch_rng=e.get("torch_rng", (object,)),
            cuda_rng=e.get("cuda_rng", (list,)),
            generator=e.get("generator", (object,)),
            metrics=RunRecord.from_dict(e.get("metrics", (dict,)), path),
            model=e.optional("model", (dict,)),
            average=e.optional("average", (dict,)),
        )


@dataclass
class Checkpoint:
    """What checkpoint.pt holds: the weights the run ships, the resolved config, the epoch
    they are from, and (in every checkpoint training writes) the state to resume from."""

    state_dict: dict[str, Tensor]
    config: dict[str, Any]
    epoch: int
    resume: TrainingState | None = None

    def to_dict(self) -> dict[str, Any]:
        data = {"state_dict": self.state_dict, "config": self.config, "epoch": self.epoch}
        if self.resume is not None:
            data["resume"] = self.resume.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Any, path: Path) -> Checkpoint:
        e = _Entries(data, path)
        resume = e.optional("resume", (dict,))
        return cls(
            state_dict=e.get("state_dict", (dict,)),
            config=e.get("config", (dict,)),
            epoch=e.get("epoch", (int,)),
            resume=None if resume is None else TrainingState.from_dict(resume, path),
        )


def save_checkpoint(run_dir: Path, checkpoint: Checkpoint) -> None:
    import torch

    atomic_write(run_dir / CHECKPOINT, lambda tmp: torch.save(checkpoint.to_dict(), tmp))


def load_checkpoint(run_dir: str | Path) -> Checkpoint:
    """The run folder's checkpoint.pt, on the CPU; RunRecordError if it is missing or flawed."""
    import torch

    path = Path(run_dir) / CHECKPOINT
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise RunRecordError(path, "is missing") from None
    except Exception as e:  # torch.load raises many kinds on a damaged file
        raise RunRecordError(path, f"is unreadable or corrupt ({_first_line(e)})") from None
    return Checkpoint.from_dict(data, path)


# --- the other files -----------------------------------------------------------------------------


def write_model_summary(run_dir: Path, model: nn.Module) -> str:
    """torchinfo's table for one 1x28x28 image; returns the text too."""
    from torchinfo import summary

    text = str(
        summary(
            model,
            input_size=(1, 1, 28, 28),
            col_names=("output_size", "num_params"),
            row_settings=("var_names",),
            # Where the model is: torchinfo moves the model to the device it is given.
            device=next(model.parameters()).device,
            mode="eval",  # a train-mode forward would move BatchNorm's running stats
            verbose=0,
        )
    )
    atomic_write(run_dir / SUMMARY, lambda tmp: tmp.write_text(text + "\n"))
    return text


def plot_curves(run_dir: Path, epochs: Sequence[dict[str, Any]], title: str) -> None:
    """Loss and accuracy per epoch, train vs test (and validation when there is one)."""
    splits = [
        s for s in ("train", "val", "test") if epochs and epochs[0].get(f"{s}_loss") is not None
    ]

    def curve(split: str, figure: str) -> plots.Curve:
        return plots.Curve([(e["epoch"], e[f"{split}_{figure}"]) for e in epochs], "split", split)

    accuracy, loss = [curve(s, "acc") for s in splits], [curve(s, "loss") for s in splits]
    atomic_write(run_dir / CURVES, lambda tmp: plots.curves(tmp, title, accuracy, loss=loss))
