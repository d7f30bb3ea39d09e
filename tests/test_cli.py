"""`python -m mnist_sweep` as a user runs it: the promised files; one clear line on bad input."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from mnist_sweep.run import record
from mnist_sweep.run.record import RunRecord, RunStatus
from tests.conftest import (
    DATA_ROOT,
    error_in_process,
    run_cli,
    run_in_process,
    start_cli,
    wait_until,
    without_timings,
)

# The CLI as a user starts it: in a subprocess, wherever the process is what is tested.
pytestmark = pytest.mark.slow

TINY = ["model=tiny", "data.train_subset=1000", "trainer.epochs=2", "trainer.device=cpu"]


def _one_line_error(result, *fragments: str) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr
    return result.stderr


def test_run_leaves_a_self_describing_folder(tmp_path, data_root):
    result = run_cli(*TINY, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (run_dir,) = (tmp_path / "outputs" / "runs").glob("*/*_tiny")
    metrics = RunRecord.load(run_dir)  # every key there, each of its kind
    assert metrics.status is RunStatus.COMPLETED
    assert [e.epoch for e in metrics.epochs] == [1, 2]
    assert metrics.target_acc == 99.4 and metrics.error is None
    summary = (run_dir / record.SUMMARY).read_text()
    assert "Output Shape" in summary and "Param #" in summary and f"{metrics.params:,}" in summary
    ckpt = record.load_checkpoint(run_dir)  # with weights_only=True
    assert ckpt.epoch == 2 and ckpt.config["model"]["name"] == "tiny"
    assert (run_dir / record.CURVES).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (run_dir / record.HYDRA_CONFIG).is_file()
    assert "epoch 2/2" in (run_dir / "train.log").read_text()


def test_console_script_is_installed(tmp_path):
    beside_python = Path(sys.executable).parent / "mnist-sweep"
    script = str(beside_python) if beside_python.exists() else shutil.which("mnist-sweep")
    assert script, "the mnist-sweep console script is not installed"
    result = subprocess.run(
        [script, "--cfg", "job", "model=era_s6"], capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "name: era_s6" in result.stdout


@pytest.mark.parametrize(
    ("override", "option", "listed"),
    [
        ("model=huge", "model/huge", "era_s6"),
        ("experiment=smalest", "experiment/smalest", "smallest"),
    ],
)
def test_unknown_option_lists_the_choices(tmp_path, override, option, listed):
    result = run_cli(override, cwd=tmp_path)
    assert result.returncode == 1
    assert f"Could not find '{option}'" in result.stderr
    assert listed in result.stderr  # Hydra lists the available options
    assert not (tmp_path / "outputs").exists()  # nothing trained


def test_unknown_key_is_refused(tmp_path):
    result = run_cli("trainer.epoch=3", cwd=tmp_path)
    assert result.returncode != 0
    assert "epoch" in result.stderr


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (["model.w1=0"], "error: model.w1=0: must be >= 1"),
        (["model.n1=13"], "feature map collapses"),
        (["model.w1=100000"], "GB of activations per batch of 128 need at least"),
    ],
)
def test_impossible_architecture_is_one_line(tmp_path, capsys, overrides, fragment):
    err = error_in_process(capsys, tmp_path, *TINY, *overrides)
    assert fragment in err and err.strip().count("\n") == 0, err


def test_missing_mnist_says_where_it_looked(tmp_path):
    err = _one_line_error(
        run_cli(*TINY, f"data.root={tmp_path / 'nowhere'}", cwd=tmp_path),
        "MNIST not found",
        str(tmp_path / "nowhere"),
        "data.root",
        "MNIST_DATA",
    )
    assert err.strip().count("\n") == 0


def test_missing_teacher_is_one_line_with_a_relative_path_from_the_start_directory(
    tmp_path, capsys
):
    # The default of experiment=smallest's kind: a folder relative to where the command starts.
    args = ["distill=teacher", "distill.teacher=outputs/no_teacher"]
    err = error_in_process(capsys, tmp_path, *TINY, *args)
    for fragment in (
        "distill.teacher=outputs/no_teacher",
        str(tmp_path / "outputs" / "no_teacher"),
        "is not a run folder",
        "distill=none",
    ):
        assert fragment in err, err
    assert err.strip().count("\n") == 0


def test_missing_mnist_via_environment_variable_ends_a_plain_multirun_in_one_line(tmp_path):
    # Hydra's basic sweeper: no trial to record the failure on, so no traceback either.
    result = run_cli(
        "-m", *TINY, "trainer.seed=1,2", cwd=tmp_path, env={"MNIST_DATA": str(tmp_path / "empty")}
    )
    err = _one_line_error(result, "MNIST not found", str(tmp_path / "empty"))
    assert "Traceback" not in err and "Error executing job" not in err


def _data_with(tmp_path: Path, name: str, edit) -> tuple[Path, Path]:
    """A data root like the real one, but with file `name` replaced by edit(its bytes)."""
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for src in (DATA_ROOT / "MNIST" / "raw").glob("*-ubyte"):
        if src.name == name:
            (raw / name).write_bytes(edit(src.read_bytes()))
        else:
            (raw / src.name).symlink_to(src)
    return tmp_path / "data", raw / name


def test_truncated_data_file_is_named(tmp_path):
    root, broken = _data_with(tmp_path, "t10k-images-idx3-ubyte", lambda data: data[:100_000])
    err = _one_line_error(
        run_cli(*TINY, f"data.root={root}", cwd=tmp_path), str(broken), "truncated or corrupt"
    )
    assert err.strip().count("\n") == 0


def test_corrupt_data_file_is_named(tmp_path):
    def flip_a_label(data: bytes) -> bytes:
        data = bytearray(data)
        data[5000] = (data[5000] + 1) % 10  # still a valid label: only the checksum can tell
        return bytes(data)

    root, corrupt = _data_with(tmp_path, "t10k-labels-idx1-ubyte", flip_a_label)
    err = _one_line_error(
        run_cli(*TINY, f"data.root={root}", cwd=tmp_path), str(corrupt), "is corrupt"
    )
    assert err.strip().count("\n") == 0


def test_nan_run_stops_and_leaves_failed_metrics(tmp_path, capsys):
    err = error_in_process(capsys, tmp_path, *TINY, "dropout=none", "optimizer.lr=1e30")
    assert "diverged" in err and "optimizer.lr" in err and err.strip().count("\n") == 0, err
    (run_dir,) = (tmp_path / "outputs" / "runs").glob("*/*_tiny")
    metrics = RunRecord.load(run_dir)
    assert metrics.status is RunStatus.FAILED and "diverged" in metrics.error


def test_killed_run_resumes_to_the_same_final_metrics(tmp_path):
    args = ["model=tiny", "data.train_subset=1000", "trainer.epochs=6", "trainer.device=cpu"]
    run_in_process(tmp_path, *args, "hydra.run.dir=outputs/reference")
    run_dir = tmp_path / "outputs" / "killed"
    run = start_cli(*args, f"hydra.run.dir={run_dir}", cwd=tmp_path)

    def two_epochs_checkpointed() -> bool:
        return record.load_checkpoint(run_dir).epoch >= 2

    try:
        wait_until(two_epochs_checkpointed, "two epochs", alive=lambda: run.poll() is None)
    finally:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()
    killed = RunRecord.load(run_dir)
    assert killed.status is RunStatus.RUNNING and len(killed.epochs) < 6
    assert not killed.still_running(run_dir)

    run_in_process(tmp_path, *args, f"hydra.run.dir={run_dir}", "trainer.resume=true")
    final = RunRecord.load(run_dir)
    expected = RunRecord.load(tmp_path / "outputs" / "reference")
    assert final.status is RunStatus.COMPLETED and final.resumed_after_epoch >= 2
    assert without_timings(final) == without_timings(expected)


def test_sigterm_ends_a_run_with_one_line_keeping_its_last_checkpoint(tmp_path):
    # SIGTERM is what `timeout`, SLURM preemption, Kubernetes and `docker stop` send.
    run_dir = tmp_path / "outputs" / "stopped"
    args = ["model=tiny", "data.train_subset=1000", "trainer.epochs=50", "trainer.device=cpu"]
    run = start_cli(*args, f"hydra.run.dir={run_dir}", cwd=tmp_path)

    def one_epoch_checkpointed() -> bool:
        return record.load_checkpoint(run_dir).epoch >= 1

    try:
        wait_until(one_epoch_checkpointed, "epoch 1", alive=lambda: run.poll() is None)
    finally:
        run.send_signal(signal.SIGTERM)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 143  # 128 + SIGTERM, as a shell reports a process it ended
    (line,) = err.strip().splitlines()
    assert line == (
        "interrupted by SIGTERM: finished results are kept; "
        f"to continue, add trainer.resume=true hydra.run.dir={run_dir}"
    )
    stopped = RunRecord.load(run_dir)
    assert stopped.status is RunStatus.INTERRUPTED and stopped.signal == "SIGTERM"
    assert stopped.error == f"interrupted by SIGTERM after epoch {len(stopped.epochs)}"
    assert 1 <= len(stopped.epochs) < 50
    assert record.load_checkpoint(run_dir).epoch == len(stopped.epochs)  # the last one kept
    assert not stopped.still_running(run_dir)


@pytest.mark.slow
def test_a_misspelt_option_is_one_line_naming_the_choices(tmp_path):
    result = run_cli("experiment=smalest", cwd=tmp_path)
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line == (
        "error: Could not find 'experiment/smalest'; the options in 'experiment' are: "
        "ladder_5568, record_3762, sep_3671, smallest, teacher_8128, teacher_8493, under_4k"
    )
