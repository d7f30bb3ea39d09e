"""The run folder's format: metrics.json and checkpoint.pt round-trip, and a flawed file is
refused with one line naming it. No training."""

from __future__ import annotations

import errno
import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mnist_sweep.errors import RunRecordError, UserError, WriteError
from mnist_sweep.run import record
from mnist_sweep.run.record import Checkpoint, RunRecord, RunStatus, TrainingState
from tests.conftest import make_record

# The keys metrics.json has held since host and pid were added, in their order on disk.
METRICS_KEYS = [
    "model",
    "params",
    "status",
    "test_acc",
    "best_test_acc",
    "best_epoch",
    "val_acc",
    "target_acc",
    "reached_target",
    "epochs_planned",
    "seed",
    "device",
    "torch",
    "host",
    "pid",
    "wall_seconds",
    "train_seconds",
    "error",
    "epochs",
]
EPOCH_KEYS = ["epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "seconds"]


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid  # exited and reaped: no such process now


def _with_validation(metrics: RunRecord) -> RunRecord:
    for row in metrics.epochs:
        row.val_loss, row.val_acc = 0.2, row.test_acc - 0.5
    metrics.val_acc = metrics.epochs[-1].val_acc
    return metrics


def test_status_values_are_the_words_on_disk():
    words = ["running", "completed", "pruned", "failed", "interrupted"]
    assert [s.value for s in RunStatus] == words
    assert RunStatus.COMPLETED == "completed" and str(RunStatus.FAILED) == "failed"


def test_an_interrupted_record_names_its_signal_and_others_leave_the_key_out(tmp_path):
    assert "signal" not in make_record([98.0]).to_dict()
    stopped = make_record([98.0], status=RunStatus.INTERRUPTED, error="interrupted by SIGTERM")
    stopped.signal = "SIGTERM"
    stopped.save(tmp_path)
    loaded = RunRecord.load(tmp_path)
    assert (loaded.status, loaded.signal) == (RunStatus.INTERRUPTED, "SIGTERM")
    assert not loaded.still_running(tmp_path)


@pytest.mark.parametrize("validation", [False, True])
def test_record_round_trips_through_metrics_json(tmp_path, validation):
    saved = make_record([97.0, 99.5, 99.45], status=RunStatus.FAILED, error="boom")
    saved.resumed_after_epoch = 2
    if validation:
        saved = _with_validation(saved)
    saved.save(tmp_path)
    loaded = RunRecord.load(tmp_path)
    assert loaded == saved
    assert loaded.status is RunStatus.FAILED and loaded.epochs[1] == saved.epochs[1]
    # The file keeps its format: the same keys, in the same order, as before the record
    # was typed; val keys only with a validation split.
    on_disk = json.loads((tmp_path / record.METRICS).read_text())
    assert list(on_disk) == [*METRICS_KEYS, "resumed_after_epoch"]
    val = ["val_loss", "val_acc"] if validation else []
    assert list(on_disk["epochs"][0]) == [*EPOCH_KEYS, *val, "eval_seconds"]
    assert on_disk["status"] == "failed" and on_disk["best_epoch"] == 2
    loaded.save(tmp_path / "again")
    assert (tmp_path / "again" / record.METRICS).read_text() == (
        tmp_path / record.METRICS
    ).read_text()


def test_add_epoch_keeps_the_headline_figures():
    metrics = make_record([97.0, 99.5, 99.45], target=99.4)
    assert (metrics.test_acc, metrics.best_test_acc, metrics.best_epoch) == (99.45, 99.5, 2)
    assert metrics.reached_target is True
    assert metrics.train_seconds == pytest.approx(sum(e.seconds for e in metrics.epochs))
    assert make_record([99.5, 99.3], target=99.4).reached_target is False  # the final epoch


def test_a_record_written_before_host_and_pid_still_loads(tmp_path):
    old = make_record([98.0]).to_dict()
    del old["host"], old["pid"]
    (tmp_path / record.METRICS).write_text(json.dumps(old))
    loaded = RunRecord.load(tmp_path)
    assert (loaded.host, loaded.pid, loaded.test_acc) == (None, None, 98.0)


def _refusal(run_dir: Path) -> str:
    with pytest.raises(RunRecordError) as error:
        RunRecord.load(run_dir)
    assert isinstance(error.value, UserError)  # reported as one line, no traceback
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(str(run_dir / record.METRICS) + " ")
    return message


def test_a_missing_or_damaged_metrics_json_is_one_line_naming_the_file(tmp_path):
    assert _refusal(tmp_path).endswith("is missing")
    path = tmp_path / record.METRICS
    path.write_text('{"params": 1')
    assert "is unreadable or corrupt (Expecting ',' delimiter" in _refusal(tmp_path)
    path.write_text("[1, 2]")
    assert "holds a list" in _refusal(tmp_path)
    data = make_record([98.0]).to_dict()
    del data["params"]
    path.write_text(json.dumps(data))
    assert _refusal(tmp_path).endswith("has no 'params' entry")
    data = make_record([98.0]).to_dict()
    data["test_acc"] = "high"
    path.write_text(json.dumps(data))
    assert "has a str ('high') for 'test_acc', expected a number" in _refusal(tmp_path)
    data = make_record([98.0]).to_dict()
    del data["epochs"][0]["test_acc"]
    path.write_text(json.dumps(data))
    assert _refusal(tmp_path).endswith("has no epochs[0] 'test_acc' entry")


def test_a_status_outside_the_enum_is_refused(tmp_path):
    data = make_record([98.0]).to_dict()
    data["status"] = "killed"
    (tmp_path / record.METRICS).write_text(json.dumps(data))
    message = _refusal(tmp_path)
    expected = "expected running, completed, pruned, failed, interrupted"
    assert f"unknown status 'killed' ({expected})" in message


def test_the_error_survives_a_trip_between_processes(tmp_path):
    error = RunRecordError(tmp_path / record.METRICS, "is missing")
    again = pickle.loads(pickle.dumps(error))
    assert (str(again), again.path, again.problem) == (str(error), error.path, "is missing")


def test_still_running_asks_the_process_or_the_clock(tmp_path):
    assert make_record([98.0], status=RunStatus.RUNNING).still_running(tmp_path)  # this process
    assert not make_record([98.0], status=RunStatus.RUNNING, pid=_dead_pid()).still_running(
        tmp_path
    )
    assert not make_record([98.0], status=RunStatus.COMPLETED).still_running(tmp_path)
    remote = make_record([98.0], status=RunStatus.RUNNING, host="gpu-node-7")
    remote.save(tmp_path)
    assert remote.still_running(tmp_path)  # written just now
    old = time.time() - 3600
    os.utime(tmp_path / record.METRICS, (old, old))
    assert not remote.still_running(tmp_path)


def test_sweep_trial_is_read_from_hydras_job_settings():
    assert record.sweep_trial({"hydra": {"job": {record.SWEEP_TRIAL: 3}}}) == 3
    assert record.sweep_trial({"hydra": {"job": {"name": "train"}}}) is None
    assert record.sweep_trial({}) is None


def _checkpoint() -> Checkpoint:
    weights = {"0.weight": torch.randn(4, 1, 3, 3)}
    state = TrainingState(
        optimizer={"state": {}, "param_groups": [{"lr": 0.1, "params": [0]}]},
        scheduler={"last_epoch": 7},
        torch_rng=torch.get_rng_state(),
        cuda_rng=[],
        generator=torch.Generator().manual_seed(1).get_state(),
        metrics=make_record([98.0, 98.5], status=RunStatus.RUNNING),
        model={"0.weight": torch.randn(4, 1, 3, 3)},
    )
    return Checkpoint(state_dict=weights, config={"model": {"name": "tiny"}}, epoch=2, resume=state)


def test_checkpoint_round_trips_and_loads_with_weights_only(tmp_path):
    saved = _checkpoint()
    record.save_checkpoint(tmp_path, saved)
    loaded = record.load_checkpoint(tmp_path)
    assert (loaded.epoch, loaded.config) == (2, {"model": {"name": "tiny"}})
    assert torch.equal(loaded.state_dict["0.weight"], saved.state_dict["0.weight"])
    assert loaded.resume is not None and saved.resume is not None
    assert torch.equal(loaded.resume.model["0.weight"], saved.resume.model["0.weight"])
    assert torch.equal(loaded.resume.generator, saved.resume.generator)
    assert loaded.resume.scheduler == {"last_epoch": 7} and loaded.resume.average is None
    assert loaded.resume.metrics == saved.resume.metrics
    raw = torch.load(tmp_path / record.CHECKPOINT, weights_only=True)
    assert list(raw) == ["state_dict", "config", "epoch", "resume"]


def test_a_damaged_checkpoint_is_one_line_naming_the_file(tmp_path):
    with pytest.raises(RunRecordError, match="checkpoint.pt is missing"):
        record.load_checkpoint(tmp_path)
    (tmp_path / record.CHECKPOINT).write_bytes(b"not a checkpoint")
    with pytest.raises(RunRecordError) as error:
        record.load_checkpoint(tmp_path)
    assert str(error.value).startswith(f"{tmp_path / record.CHECKPOINT} is unreadable or corrupt")
    assert "\n" not in str(error.value)
    torch.save({"config": {}, "epoch": 1}, tmp_path / record.CHECKPOINT)
    with pytest.raises(RunRecordError, match="has no 'state_dict' entry"):
        record.load_checkpoint(tmp_path)


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_run_files_follow_the_umask(tmp_path, umask):
    before = os.umask(umask)
    try:
        make_record([98.0]).save(tmp_path)
        record.save_checkpoint(tmp_path, _checkpoint())
    finally:
        os.umask(before)
    for name in (record.METRICS, record.CHECKPOINT):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask, name


def test_a_write_the_disk_refuses_is_one_line_and_keeps_the_file_before(tmp_path):
    make_record([98.0]).save(tmp_path)
    before = (tmp_path / record.METRICS).read_text()

    def disk_full(tmp: Path) -> None:
        tmp.write_text("half a fi")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(WriteError) as error:
        record.atomic_write(tmp_path / record.METRICS, disk_full)
    assert isinstance(error.value, UserError)
    assert str(error.value) == f"cannot write {tmp_path / record.METRICS}: No space left on device"
    assert (tmp_path / record.METRICS).read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [record.METRICS]  # no temporary left
    # A folder that cannot be made: the system's reason, in one line.
    (tmp_path / "a-file").write_text("")
    with pytest.raises(WriteError, match=r"a-file/run/metrics.json: Not a directory$"):
        make_record([98.0]).save(tmp_path / "a-file" / "run")
