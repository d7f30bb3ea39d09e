"""The run folder: the name of every file in it and the format of every file training writes.

- metrics.json: the run's `RunRecord`, one `EpochRow` per epoch, rewritten after every epoch
- model_summary.txt: layer / output shape / param # table
- checkpoint.pt: a `Checkpoint`, the shipped weights + resolved config + what resuming needs
  (loads with weights_only=True)
- curves.png: loss and accuracy per epoch, train vs test
- .hydra/config.yaml, .hydra/overrides.yaml, .hydra/hydra.yaml: Hydra's own, written
  before the job starts (read here too: `load_overrides`, `load_config`, `load_hydra_runtime`)

Each format is a pydantic model, its fields declared once, in their order on disk:
`to_dict` gives the file's content and `from_dict` reads it back, refusing a
flawed file with one line (`RunRecordError`) that names the file and the entry.

Only the process that trains a run writes its metrics.json; every other module
reads it through `RunRecord.load`. A run that died leaves "running" behind:
`RunRecord.still_running` tells a live one from a dead one.

Files are written to a temporary name and renamed, so a crash mid-write never
leaves a half-written file behind, and a disk that refuses a write is one line
(`WriteError`), with every file written before it left whole.
"""

from __future__ import annotations

import enum
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Strict, ValidationError, ValidationInfo, model_validator
from pydantic_core import ErrorDetails, PydanticCustomError

from mnist_sweep import plots
from mnist_sweep.errors import RunRecordError, WriteError, cannot_write, first_line

if TYPE_CHECKING:
    from torch import Tensor, nn
else:
    Tensor = Any  # pydantic reads annotations at run time; a checkpoint's tensors pass as they are

log = logging.getLogger(__name__)

# torch is imported where a checkpoint is written or read, not here: `compare`
# reads run folders and should not pay torch's seconds of start-up.
METRICS = "metrics.json"
SUMMARY = "model_summary.txt"
CHECKPOINT = "checkpoint.pt"
CURVES = "curves.png"
# A stacked run's own folder (trainer.seeds, stack/train.py) holds no run: it lists
# its seeds' run folders, <folder>/seed_<s>/, in this file.
STACK = "stack.json"
HYDRA_DIR = Path(".hydra")
HYDRA_CONFIG = HYDRA_DIR / "config.yaml"  # the composed config the run trained with
HYDRA_OVERRIDES = HYDRA_DIR / "overrides.yaml"  # the command line's task overrides
HYDRA_RUNTIME = HYDRA_DIR / "hydra.yaml"  # Hydra's own settings: choices, launcher, job
# The job setting (hydra.job.<this>) naming the sweep trial a run was launched for.
SWEEP_TRIAL = "optuna_trial"
# A trial's further seeds carry its number under this key instead: they are ordinary
# runs of its design, which neither report to the trial nor can prune it.
SEED_OF = "optuna_seed_of"


class RunStatus(str, enum.Enum):
    """What metrics.json says became of a run (its "status")."""

    RUNNING = "running"  # the training process is at work, or died without a word
    COMPLETED = "completed"
    PRUNED = "pruned"
    FAILED = "failed"
    # Stopped by a signal (SIGINT, SIGTERM: the record's "signal"); its finished epochs
    # and last checkpoint are kept, and trainer.resume=true continues it.
    INTERRUPTED = "interrupted"

    def __str__(self) -> str:
        return self.value


# --- writing files ----------------------------------------------------------------------


def seed_dir(run_dir: Path, seed: int) -> Path:
    """A stacked run's folder for one of its seeds: an ordinary run folder."""
    return run_dir / f"seed_{seed}"


def _new_file(path: Path) -> Path:
    """A new, empty file beside `path` under a name no other writer uses.

    Created like open() creates a file, mode 0o666 less the umask, so that a run's
    files are as readable as the user's others (tempfile.mkstemp would make them
    0600, and teammates sharing an outputs/ could not read each other's runs).
    """
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call write(tmp) on a temporary file next to `path`, then rename it into place.

    A write the disk refuses (full, read-only, not ours) raises WriteError with the
    path and the system's reason, and leaves the file `path` was before.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _new_file(path)
    except OSError as e:
        raise cannot_write(path, e) from None
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as e:
        raise cannot_write(path, e) from None
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2) + "\n"))


# --- the formats ------------------------------------------------------------------------------


class OnDisk(enum.Enum):
    """How a field sits in its file beyond its type, given as Annotated[type, OnDisk.X].
    Every other field is an entry each file has (a default serves Python callers only)."""

    LATER = "files written before the field existed lack it: it loads as None"
    IF_SET = "left out of the file while None; loads as None when absent"


LATER, IF_SET = OnDisk.LATER, OnDisk.IF_SET
FROM_FILE = "from file"  # validation context: the data was read from a file


class FileFormat(BaseModel):
    """One JSON object of a run folder file (or one dict of a checkpoint), its fields
    declared in their order on disk."""

    # A value of the wrong kind is refused, never converted: "99.5" is no accuracy.
    model_config = ConfigDict(strict=True)

    @model_validator(mode="before")
    @classmethod
    def _every_entry_written(cls, data: Any, info: ValidationInfo) -> Any:
        if info.context == FROM_FILE and isinstance(data, dict):
            for name, field in cls.model_fields.items():
                if name not in data and not {LATER, IF_SET} & {*field.metadata}:
                    raise PydanticCustomError("missing_entry", "no {key} entry", {"key": name})
        return data

    def to_dict(self) -> dict[str, Any]:
        """The file's content: plain values (what json and torch's weights_only loading
        take), in field order."""
        data = {}
        for name, field in type(self).model_fields.items():
            value = getattr(self, name)
            if value is not None or IF_SET not in field.metadata:
                data[name] = _plain(value)
        return data

    @classmethod
    def from_dict(cls: type[F], data: Any, path: Path) -> F:
        """The record in `data`, as read from `path` (named in the error if it is flawed)."""
        try:
            return cls.model_validate(data, context=FROM_FILE)
        except ValidationError as e:
            raise RunRecordError(path, _problem(e.errors()[0])) from None


F = TypeVar("F", bound=FileFormat)


def _plain(value: Any) -> Any:
    if isinstance(value, FileFormat):
        return value.to_dict()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


# What each of pydantic's strict type errors expected.
_EXPECTED = {
    "int_type": "an integer",
    "float_type": "a number",
    "string_type": "a string",
    "bool_type": "true or false",
    "list_type": "a list",
    "dict_type": "a JSON object",
    "model_type": "a JSON object",
}


def _kind(value: Any) -> str:
    return "null" if value is None else f"a {type(value).__name__} ({value!r:.40})"


def _problem(error: ErrorDetails) -> str:
    """Pydantic's error as the words after the file's name: `has no 'params' entry`,
    `has a str ('high') for epochs[0] 'test_acc', expected a number`."""
    loc, kind = tuple(error["loc"]), error["type"]
    if kind == "missing_entry":
        loc, kind = (*loc, error["ctx"]["key"]), "missing"
    if not loc:
        return f"holds {_kind(error['input'])}, expected a JSON object"
    outer = "".join(
        f"[{p}]" if isinstance(p, int) else f"{'.' if i else ''}{p}" for i, p in enumerate(loc[:-1])
    )
    key = loc[-1]
    name = f"{outer}[{key}]" if isinstance(key, int) else f"{outer} {key!r}".lstrip()
    if kind == "missing":
        return f"has no {name} entry"
    if kind == "enum":  # pydantic's "'a', 'b' or 'c'"
        choices = error["ctx"]["expected"].replace("'", "").replace(" or ", ", ")
        return f"has an unknown {key} {error['input']!r} (expected {choices})"
    expected = _EXPECTED.get(kind, error["msg"].lower())
    return f"has {_kind(error['input'])} for {name}, expected {expected}"


# --- metrics.json ------------------------------------------------------------------------------


class EpochRow(FileFormat):
    """One epoch's figures, as metrics.json lists them under "epochs"."""

    epoch: int
    train_loss: float
    train_acc: float
    test_loss: float
    test_acc: float
    lr: float
    seconds: float  # training, without evaluation
    # Only with a validation split (data.val_size > 0): no val keys at all otherwise.
    val_loss: Annotated[float | None, IF_SET] = None
    val_acc: Annotated[float | None, IF_SET] = None
    eval_seconds: float


class RunRecord(FileFormat):
    """What metrics.json holds: the run's figures so far and how it stands."""

    model: str
    params: int
    status: Annotated[RunStatus, Strict(False)] = RunStatus.RUNNING  # read from its word
    test_acc: float | None = None  # final epoch: the headline figure
    best_test_acc: float | None = None  # best epoch, picked on the test set: not a fair headline
    best_epoch: int | None = None
    val_acc: float | None = None  # final epoch, only with data.val_size > 0
    target_acc: float
    reached_target: bool = False
    epochs_planned: int
    seed: int
    device: str
    torch: str
    # Who runs it: a "running" run whose process is gone was killed.
    host: Annotated[str | None, LATER] = None
    pid: Annotated[int | None, LATER] = None
    wall_seconds: float = 0.0
    train_seconds: float = 0.0
    error: str | None = None  # why it failed, was pruned or interrupted
    signal: Annotated[str | None, IF_SET] = None  # the signal that interrupted it: "SIGTERM"
    epochs: list[EpochRow] = []
    resumed_after_epoch: Annotated[int | None, IF_SET] = None  # only for a resumed run

    def add_epoch(self, row: EpochRow) -> None:
        """Append an epoch and update the figures that follow from the history."""
        self.epochs.append(row)
        self.test_acc, self.val_acc = row.test_acc, row.val_acc
        self.reached_target = row.test_acc >= self.target_acc
        best = max(self.epochs, key=lambda e: e.test_acc)
        self.best_test_acc, self.best_epoch = best.test_acc, best.epoch
        self.train_seconds = round(sum(e.seconds for e in self.epochs), 3)

    @classmethod
    def load(cls, run_dir: str | Path) -> RunRecord:
        """The run folder's metrics.json; RunRecordError if it is missing or flawed."""
        path = Path(run_dir) / METRICS
        return cls.from_dict(_read(path, json.loads), path)

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


# --- checkpoint.pt -----------------------------------------------------------------------------


class TrainingState(FileFormat):
    """What a checkpoint holds beyond the shipped weights to go on exactly where it stopped
    (run/checkpoint.py takes it from and puts it back into the live objects)."""

    # The live weights training goes on from (with weight averaging, the shipped
    # ones are the average), and the average's own state.
    model: Annotated[dict[str, Tensor] | None, LATER] = None
    average: Annotated[dict[str, Any] | None, LATER] = None
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    torch_rng: Tensor
    cuda_rng: list[Tensor]
    generator: Tensor
    metrics: RunRecord  # the record as of the checkpoint's epoch


class Checkpoint(FileFormat):
    """What checkpoint.pt holds: the weights the run ships, the resolved config, the epoch
    they are from, and (in every checkpoint training writes) the state to resume from."""

    state_dict: dict[str, Tensor]
    config: dict[str, Any]
    epoch: int
    resume: Annotated[TrainingState | None, IF_SET] = None


def save_checkpoint(run_dir: Path, checkpoint: Checkpoint) -> None:
    import torch

    def write(tmp: Path) -> None:
        # Through a Python file, so that a full disk is an OSError (torch's own
        # writer would raise a RuntimeError without the reason).
        with tmp.open("wb") as f:
            torch.save(checkpoint.to_dict(), f)

    atomic_write(run_dir / CHECKPOINT, write)


def load_checkpoint(run_dir: str | Path) -> Checkpoint:
    """The run folder's checkpoint.pt, on the CPU; RunRecordError if it is missing or flawed."""
    import torch

    path = Path(run_dir) / CHECKPOINT
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise RunRecordError(path, "is missing") from None
    except Exception as e:  # torch.load raises many kinds on a damaged file
        raise RunRecordError(path, f"is unreadable or corrupt ({first_line(e)})") from None
    return Checkpoint.from_dict(data, path)


# --- reading files --------------------------------------------------------------------------


def _read(path: Path, parse: Callable[[str], Any], kind: type | None = None) -> Any:
    """The parsed content of `path`; RunRecordError if it is missing, unreadable, or not
    of `kind`."""
    try:
        data = parse(path.read_text())
    except FileNotFoundError:
        raise RunRecordError(path, "is missing") from None
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as e:
        raise RunRecordError(path, f"is unreadable or corrupt ({first_line(e)})") from None
    if kind is not None and not isinstance(data, kind):
        raise RunRecordError(path, f"holds {_kind(data)}, expected a {kind.__name__}")
    return data


def load_overrides(run_dir: str | Path) -> list[str]:
    """The command line's task overrides the run was started with (.hydra/overrides.yaml)."""
    return [str(o) for o in _read(Path(run_dir) / HYDRA_OVERRIDES, yaml.safe_load, list)]


def load_config(run_dir: str | Path) -> dict[str, Any]:
    """The composed config the run trained with (.hydra/config.yaml), as plain data."""
    return _read(Path(run_dir) / HYDRA_CONFIG, yaml.safe_load, dict)


def load_hydra_runtime(run_dir: str | Path) -> dict[str, Any]:
    """Hydra's own settings for the run (.hydra/hydra.yaml), as plain data."""
    return _read(Path(run_dir) / HYDRA_RUNTIME, yaml.safe_load, dict)


def group_choices(hydra_runtime: Mapping[str, Any]) -> dict[str, Any]:
    """The option the run took of each config group ({"model": "small", ...}), from its
    loaded .hydra/hydra.yaml; {} if it does not say."""
    try:
        return dict(hydra_runtime["hydra"]["runtime"]["choices"])
    except (KeyError, TypeError, ValueError):
        return {}


def sweep_trial(hydra_runtime: Mapping[str, Any]) -> int | None:
    """The sweep trial a run was launched for, from its loaded .hydra/hydra.yaml (None for a
    run outside a sweep)."""
    hydra = hydra_runtime.get("hydra")
    job = hydra.get("job") if isinstance(hydra, Mapping) else None
    number = job.get(SWEEP_TRIAL) if isinstance(job, Mapping) else None
    return number if isinstance(number, int) and not isinstance(number, bool) else None


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
    """Loss and accuracy per epoch, train vs test (and validation when there is one).

    A figure the disk refuses is skipped with a warning, never the run: metrics.json
    holds every figure it shows, and the error that matters is the next write's.
    """
    splits = [
        s for s in ("train", "val", "test") if epochs and epochs[0].get(f"{s}_loss") is not None
    ]

    def curve(split: str, figure: str) -> plots.Curve:
        return plots.Curve([(e["epoch"], e[f"{split}_{figure}"]) for e in epochs], "split", split)

    accuracy, loss = [curve(s, "acc") for s in splits], [curve(s, "loss") for s in splits]
    try:
        atomic_write(run_dir / CURVES, lambda tmp: plots.curves(tmp, title, accuracy, loss=loss))
    except WriteError as e:
        log.warning("skipped %s: %s", CURVES, e)
