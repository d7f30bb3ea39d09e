"""A trained net back from its run folder: the one place that rebuilds one.

The net is built from the run's own `.hydra/config.yaml` (the `model` group,
and the `dropout` group too: its layers hold no weights but number the
layers) and given the weights `checkpoint.pt` ships, the average when the run
kept one. The checkpoint also holds the resolved config it was trained with,
so a folder whose two configs describe different nets (a padding changed in
one of them builds a net whose weights still fit) is refused, as is one whose
weights do not fit.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from torch import nn

from mnist_sweep.errors import ArchitectureError, RunFolderError, RunRecordError
from mnist_sweep.run import record
from mnist_sweep.run.model import build_model, count_params

# The config groups that decide the net's layers; the rest is the recipe.
NET_GROUPS = ("model", "dropout")


@dataclass
class TrainedNet:
    """A run's shipped net and what it was trained with."""

    model: nn.Module  # on the CPU, float32, contiguous, in eval mode
    cfg: DictConfig  # the run's .hydra/config.yaml, as composed (interpolations unresolved)
    epoch: int  # the epoch whose end the weights are from
    run_dir: Path


def run_folder_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """A command-line parser for a command on a finished run folder: the folder, and
    where its MNIST is when not where it trained."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("run_dir", type=Path, help="a run folder a training wrote")
    parser.add_argument(
        "--data-root",
        type=Path,
        metavar="DIR",
        help="the folder holding MNIST/raw/ (default: the run's data.root)",
    )
    return parser


def load_model(run_dir: str | Path) -> nn.Module:
    """The net a run folder ships, in eval mode on the CPU, with the weights the run saved
    (the weight average when it kept one).

    Raises RunFolderError (a UserError: one line, naming the file) when the folder
    is missing, is not a run folder, or holds files that are damaged or describe
    different nets.
    """
    return load_trained(run_dir).model


def load_trained(run_dir: str | Path) -> TrainedNet:
    """`load_model`, with the run's config and the epoch the weights are from."""
    run_dir = Path(run_dir).expanduser()
    if not run_dir.is_dir():
        raise RunFolderError(f"{run_dir} is not a folder")
    config_path = run_dir / record.HYDRA_CONFIG
    if not config_path.is_file():
        raise RunFolderError(
            f"{run_dir} is not a run folder (no {record.HYDRA_CONFIG}); give the folder a "
            "training wrote (outputs/runs/<date>/<time>_<model>/)"
        )
    cfg = _read_config(config_path)
    net_cfg = _net_config(cfg, config_path)
    try:
        checkpoint = record.load_checkpoint(run_dir)
    except RunRecordError as e:
        raise RunFolderError(str(e)) from None
    checkpoint_path = run_dir / record.CHECKPOINT
    differ = _differences(net_cfg, {g: checkpoint.config.get(g) for g in NET_GROUPS})
    if differ:
        raise RunFolderError(
            f"{checkpoint_path} was trained as another net than {config_path} describes "
            f"({', '.join(differ)} differ); the folder was changed after training"
        )
    dropout = net_cfg["dropout"] or {}
    try:
        model = build_model(
            net_cfg["model"], dropout.get("p", 0.0), dropout.get("placement", "unit")
        )
    except ArchitectureError as e:
        raise RunFolderError(f"{config_path}: {e}") from None
    except (KeyError, TypeError, ValueError) as e:
        raise RunFolderError(f"{config_path} does not describe a net ({e!r:.80})") from None
    try:
        model.load_state_dict(checkpoint.state_dict)
    except RuntimeError:
        raise RunFolderError(
            f"{checkpoint_path} does not fit the net {config_path} describes "
            f"({count_params(model):,} params); the folder was changed after training"
        ) from None
    return TrainedNet(model=model.eval(), cfg=cfg, epoch=checkpoint.epoch, run_dir=run_dir)


def _read_config(path: Path) -> DictConfig:
    try:
        cfg = OmegaConf.load(path)
    except (OSError, UnicodeDecodeError, yaml.YAMLError, OmegaConfBaseException) as e:
        why = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise RunFolderError(f"{path} is unreadable or corrupt ({why})") from None
    if not isinstance(cfg, DictConfig):
        raise RunFolderError(f"{path} is not a config (a YAML mapping)")
    return cfg


def _net_config(cfg: DictConfig, path: Path) -> dict[str, Any]:
    """The groups that decide the net, resolved."""
    if cfg.get("model") is None:
        raise RunFolderError(f"{path} has no model group; it is not a config a training wrote")
    try:
        return {
            group: OmegaConf.to_container(cfg[group], resolve=True) if group in cfg else None
            for group in NET_GROUPS
        }
    except OmegaConfBaseException as e:
        why = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise RunFolderError(f"{path}: cannot resolve the model config ({why})") from None


def _differences(ours: Any, theirs: Any, prefix: str = "") -> list[str]:
    """The dotted keys whose values differ between two nested configs."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        return [
            key
            for name in sorted(ours.keys() | theirs.keys(), key=str)
            for key in _differences(
                ours.get(name), theirs.get(name), f"{prefix}.{name}" if prefix else str(name)
            )
        ]
    return [] if ours == theirs else [prefix or "the config"]
