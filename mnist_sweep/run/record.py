"""Everything a run leaves in its output folder, besides Hydra's own `.hydra/`.

- metrics.json: the run's figures and per-epoch history, rewritten after every epoch
- model_summary.txt: layer / output shape / param # table
- checkpoint.pt: state dict + resolved config (loads with weights_only=True)
- curves.png: loss and accuracy per epoch, train vs test

Files are written to a temporary name and renamed, so a crash mid-write never
leaves a half-written file behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mnist_sweep import plots

if TYPE_CHECKING:
    from torch import nn

# torch is imported where a checkpoint is written or read, not here: `compare`
# reads run folders and should not pay torch's seconds of start-up.
METRICS = "metrics.json"
SUMMARY = "model_summary.txt"
CHECKPOINT = "checkpoint.pt"
CURVES = "curves.png"


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


def write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2) + "\n"))


def read_metrics(run_dir: str | Path) -> dict[str, Any]:
    return json.loads((Path(run_dir) / METRICS).read_text())


def write_model_summary(run_dir: Path, model: nn.Module) -> str:
    """torchinfo's table for one 1x28x28 image; returns the text too."""
    from torchinfo import summary

    text = str(
        summary(
            model,
            input_size=(1, 1, 28, 28),
            col_names=("output_size", "num_params"),
            row_settings=("var_names",),
            device="cpu",
            mode="eval",  # a train-mode forward would move BatchNorm's running stats
            verbose=0,
        )
    )
    atomic_write(run_dir / SUMMARY, lambda tmp: tmp.write_text(text + "\n"))
    return text


def save_checkpoint(
    run_dir: Path,
    model: nn.Module,
    config: dict[str, Any],
    epoch: int,
    training_state: dict[str, Any],
) -> None:
    """Weights and resolved config, plus what `trainer.resume` needs (run/checkpoint.py)."""
    import torch

    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {"state_dict": state, "config": config, "epoch": epoch, "resume": training_state}
    atomic_write(run_dir / CHECKPOINT, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


def plot_curves(run_dir: Path, epochs: Sequence[dict[str, Any]], title: str) -> None:
    """Loss and accuracy per epoch, train vs test (and validation when there is one)."""
    splits = [
        s for s in ("train", "val", "test") if epochs and epochs[0].get(f"{s}_loss") is not None
    ]

    def curve(split: str, figure: str) -> plots.Curve:
        return plots.Curve([(e["epoch"], e[f"{split}_{figure}"]) for e in epochs], "split", split)

    accuracy, loss = [curve(s, "acc") for s in splits], [curve(s, "loss") for s in splits]
    atomic_write(run_dir / CURVES, lambda tmp: plots.curves(tmp, title, accuracy, loss=loss))
