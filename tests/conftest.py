"""Shared fixtures and helpers: the real config, composed by Hydra and shrunk for 2 CPU
cores; the one short real run many tests read; the CLI run as a user runs it; the small
real sweep the search tests share.

Tests come in three costs: unit tests (no training, no subprocess), short real
trainings in-process (seconds), and `slow` ones (a subprocess, a sweep, a database,
training for longer, or a compose of every command the docs hold). `pytest -m "not
slow"` runs the first two.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import pytest
import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import nn

from mnist_sweep.config import CONF_DIR, compose_config  # noqa: F401 - shared with the tests
from mnist_sweep.run import record
from mnist_sweep.run.record import EpochRow, RunRecord, RunStatus

# pytest-xdist runs a worker per core: torch's default of a thread per core in each
# would have the workers' threads wait on each other (as trainer.threads=1 avoids for runs).
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
# Real MNIST, never committed: ../shared/data beside the checkout, or $MNIST_DATA.
DATA_ROOT = Path(os.environ.get("MNIST_DATA", REPO.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def data_root() -> Path:
    if not (DATA_ROOT / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file():
        pytest.fail(f"real MNIST not found under {DATA_ROOT}; set MNIST_DATA to its folder")
    return DATA_ROOT


# Settings under which the 4.9k-param `small` net learns MNIST in seconds on a CPU.
QUICK = {
    "data.train_subset": 4000,
    "data.batch_size": 64,
    "optimizer.lr": 0.1,
    "trainer.epochs": 3,
    "trainer.device": "cpu",
    "trainer.progress": False,
}


@pytest.fixture
def quick_cfg(data_root: Path) -> Callable[..., DictConfig]:
    """compose() the real config, then shrink it for a short real training."""

    def make(*overrides: str, **changes) -> DictConfig:
        cfg = compose_config(list(overrides))
        with open_dict(cfg):
            cfg.data.root = str(data_root)
            for key, value in {**QUICK, **changes}.items():
                node, _, leaf = key.rpartition(".")
                cfg[node][leaf] = value  # type: ignore[index]
        return cfg

    return make


# The one short real run that many tests read (training, load_model, evaluate, export,
# distillation): everything load_model must get right, dropout layers (they number the
# weights), a weight average (the shipped weights are not the last step's) and a
# validation split. 2,000 training images, 2 epochs: about 73% test accuracy.
SHORT_RUN = [
    "model=small",
    "dropout=default",
    "average=ema",
    "average.decay=0.9",
    "data.train_subset=2500",
    "data.val_size=500",
    "trainer.epochs=2",
]


def short_run_cfg(*overrides: str) -> DictConfig:
    """SHORT_RUN's config, with QUICK's other settings."""
    cfg = compose_config([*SHORT_RUN, *overrides])
    with open_dict(cfg):
        cfg.data.root = str(DATA_ROOT)
        for key, value in QUICK.items():
            if key not in ("data.train_subset", "trainer.epochs"):
                node, _, leaf = key.rpartition(".")
                cfg[node][leaf] = value
    return cfg


class Trained(NamedTuple):
    run_dir: Path  # as the CLI leaves it, .hydra/config.yaml included
    shipped: nn.Module  # the net training shipped, in process
    metrics: dict[str, Any]  # what train() returned


@pytest.fixture(scope="session")
def trained(tmp_path_factory, data_root) -> Trained:
    """SHORT_RUN, trained once for the whole session; tests read it, never change it
    (copy it first)."""
    from mnist_sweep.run import build as build_module
    from mnist_sweep.run.train import train

    run_dir = tmp_path_factory.mktemp("short_run")
    cfg = short_run_cfg()
    runs = []
    with pytest.MonkeyPatch.context() as mp:
        build = build_module.build
        mp.setattr("mnist_sweep.run.train.build", lambda *a: runs.append(build(*a)) or runs[-1])
        metrics = train(cfg, run_dir)
    (run_dir / record.HYDRA_DIR).mkdir()
    OmegaConf.save(cfg, run_dir / record.HYDRA_CONFIG)
    return Trained(run_dir, runs[0].shipped(), metrics)


T = TypeVar("T")


def without_timings(metrics: dict | RunRecord) -> list[dict]:
    """Per-epoch figures without the timings, which differ between any two runs."""
    if isinstance(metrics, RunRecord):
        metrics = metrics.to_dict()
    return [{k: v for k, v in e.items() if "seconds" not in k} for e in metrics["epochs"]]


def make_record(
    accs: Sequence[float] = (),
    *,
    status: RunStatus = RunStatus.COMPLETED,
    params: int = 1000,
    target: float = 99.4,
    model: str = "small",
    wall: float = 10.0,
    error: str | None = None,
    host: str | None = None,
    pid: int | None = None,
) -> RunRecord:
    """A run's record as training leaves it, one epoch per test accuracy in `accs`; by
    default written by this very process, on this machine."""
    record = RunRecord(
        model=model,
        params=params,
        target_acc=target,
        epochs_planned=3,
        seed=0,
        device="cpu",
        torch="2.14.1",
        status=status,
        error=error,
        host=host or socket.gethostname(),
        pid=os.getpid() if pid is None else pid,
    )
    for epoch, acc in enumerate(accs, start=1):
        record.add_epoch(
            EpochRow(
                epoch=epoch,
                train_loss=0.1,
                train_acc=acc,
                test_loss=0.1,
                test_acc=acc,
                lr=0.1,
                seconds=wall / 2 / len(accs),
                eval_seconds=0.1,
            )
        )
    record.wall_seconds = wall
    return record


def wait_until(
    probe: Callable[[], T], what: str, alive: Callable[[], bool], timeout: float = 300
) -> T:
    """Poll `probe` until it returns something truthy; fail if `alive()` turns false first.

    An exception in the probe counts as "not yet" (a database still being created, or busy).
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive():
        try:
            if result := probe():
                return result
        except Exception:
            pass
        time.sleep(0.5)
    pytest.fail(f"gave up waiting for {what}")


CLI = [sys.executable, "-m", "mnist_sweep"]


def cli_env(**extra: str) -> dict[str, str]:
    """The environment a user's shell would give the CLI here: real MNIST, quiet warnings."""
    return {**os.environ, "MNIST_DATA": str(DATA_ROOT), "PYTHONWARNINGS": "ignore", **extra}


def run_cli(
    *args: str,
    cwd: Path,
    env: dict[str, str] | None = None,
    timeout: int = 300,
    module: str = "mnist_sweep",
):
    """Run `python -m MODULE ARGS` as a user would; returns the CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=cli_env(**(env or {})),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_cli(*args: str, cwd: Path, **env: str) -> subprocess.Popen:
    """Start `python -m mnist_sweep ARGS` in its own session, so os.killpg can kill it whole.

    SIGINT is reset to its default in the child, as in a terminal: a test suite
    started in the background by a shell without job control inherits SIGINT
    ignored, and Python then never raises KeyboardInterrupt for a Ctrl-C.
    """
    return subprocess.Popen(
        [*CLI, *args],
        cwd=cwd,
        env=cli_env(**env),
        start_new_session=True,
        text=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


# The real search preset, shrunk: tiny nets on 500 images, so each trial takes
# seconds on a CPU, searching the three widths only (every other dimension of the
# preset pinned to tiny's recipe). The low target makes some trials feasible
# and others not.
PINNED = [
    "model.n1=1",
    "model.n2=1",
    "model.n3=1",
    "model.pad1=0",
    "model.pad2=0",
    "model.pad3=0",
    "model.pool2=false",
    "model.t1=4",
    "dropout.p=0.1",
    "dropout.placement=unit",
    "optimizer.weight_decay=5e-4",
    "scheduler.pct_start=0.25",
    "trainer.label_smoothing=0",
    "average=none",
]
SWEEP = [
    "-m",
    "hparams_search=smallest",
    "model=tiny",
    "data.train_subset=500",
    "data.batch_size=64",
    "optimizer.lr=0.1",
    "data.augment.strength=0",
    "trainer.epochs=2",
    "trainer.device=cpu",
    "target_acc=20",
    "model.w1=range(2,7)",
    "model.w2=range(2,9)",
    "model.w3=range(2,9)",
    *PINNED,
]


@contextmanager
def lean_runs() -> Iterator[None]:
    """Runs in this process with a 300-image test set and without the torchinfo summary
    and the curves plot: for tests that compare runs' numbers with each other, or that
    look at a sweep's bookkeeping rather than at its nets (the 10,000-image test set is
    most of a tiny run's time)."""
    from mnist_sweep.run import data as data_module
    from mnist_sweep.run import record

    load = data_module.load_mnist

    def load_small(*args, **kwargs):
        splits = load(*args, **kwargs)
        images, labels = splits["test"]
        return {**splits, "test": (images[:300], labels[:300])}

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(data_module, "load_mnist", load_small)
        mp.setattr(record, "write_model_summary", lambda *a, **k: "")
        mp.setattr(record, "plot_curves", lambda *a, **k: None)
        yield


@pytest.fixture
def lean() -> Iterator[None]:
    """lean_runs() for the whole test."""
    with lean_runs():
        yield


def run_in_process(cwd: Path, *args: str, code: int = 0) -> None:
    """`python -m mnist_sweep ARGS` run from `cwd` as the command line runs it, `main()`
    included, but in this process (no interpreter, torch or plotting to start); it must
    end with exit code `code` (what it prints: capsys). What a run changes of the process
    (logging, Optuna's verbosity, the SIGTERM policy, joblib's pool of workers) is put back
    after. Tests where the process itself matters (signals, kills, what a user's terminal
    shows) start one with run_cli or start_cli.
    """
    import logging

    import optuna

    from mnist_sweep import __main__ as cli
    from mnist_sweep import errors

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    verbosity = optuna.logging.get_verbosity()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(cwd)
        mp.setattr(sys, "argv", ["mnist_sweep", *args])
        mp.setenv("MNIST_DATA", str(DATA_ROOT))
        mp.setattr(errors, "_forward_to_children", errors._forward_to_children)
        try:
            cli.main()
            exit_code = 0
        except SystemExit as e:
            exit_code = 0 if e.code is None else e.code
        finally:
            for handler in root.handlers[:]:
                if handler not in handlers:
                    root.removeHandler(handler)
                    handler.close()
            for handler in handlers:
                if handler not in root.handlers:
                    root.addHandler(handler)
            root.setLevel(level)
            optuna.logging.set_verbosity(verbosity)
            if "hydra/launcher=joblib" in args:
                # Its workers started in `cwd`; a later run must not inherit them.
                from joblib.externals.loky import get_reusable_executor

                get_reusable_executor().shutdown(wait=True, kill_workers=True)
    assert exit_code == code, f"the command exited with {exit_code}, not {code}"


def error_in_process(capsys: pytest.CaptureFixture[str], cwd: Path, *args: str) -> str:
    """`run_in_process` of a command that must end with exit code 1: what it wrote to
    stderr (and, through capsys, nothing it wrote before)."""
    capsys.readouterr()
    run_in_process(cwd, *args, code=1)
    return capsys.readouterr().err


def run_sweep(cwd: Path, *args: str, code: int = 0) -> None:
    """A small real sweep (SWEEP plus `args`) run from `cwd`, in this process; it must
    end with exit code `code`."""
    run_in_process(cwd, *SWEEP, *args, code=code)


def sweep_folder(cwd: Path) -> Path:
    """The folder of the one sweep run from `cwd`."""
    (folder,) = (cwd / "outputs" / "sweeps").iterdir()
    return folder
