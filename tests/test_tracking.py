"""The `logger` group: runs and sweeps tracked in TensorBoard and MLflow, read back with the
tools' own readers, against a real `mlflow server`; and what a store that fails costs."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from hydra.types import RunMode
from omegaconf import OmegaConf

from mnist_sweep.errors import ConfigError, UserError
from mnist_sweep.run import record
from mnist_sweep.run.record import RunRecord, RunStatus
from mnist_sweep.run.train import train
from mnist_sweep.schema import validate
from mnist_sweep.track import base
from mnist_sweep.track.mlflow import DATABASE, store
from tests.conftest import (
    SWEEP,
    compose_config,
    error_in_process,
    run_sweep,
    sweep_folder,
    wait_until,
)

# A real training, as short as still says something: the tiny net, 300 images.
TINY = {"data.train_subset": 300, "trainer.epochs": 2}
SECRET = "hunter2-not-in-logs"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mlflow_client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


# --- the config group and the pieces, no training ------------------------------------------------


def test_logger_group_defaults_to_none_and_is_checked():
    assert compose_config([]).logger.kind == "none"
    cfg = compose_config(["logger=mlflow", "logger.tracking_uri=http://127.0.0.1:5000"])
    validate(cfg)
    assert cfg.logger.experiment is None and cfg.logger.log_checkpoint is False
    with pytest.raises(ConfigError, match="logger.tracking_uri"):
        validate(compose_config(["logger=mlflow", "logger.tracking_uri=''"]))
    with pytest.raises(ConfigError, match="logger.dir: unknown key"):
        validate(compose_config(["logger=tensorboard", "+logger.dir=x"]))
    # A run folder's config from before the group existed is still valid.
    old = OmegaConf.to_container(compose_config([]), resolve=True)
    del old["logger"]
    validate(old)


def test_flatten_gives_dotted_scalar_hyperparameters():
    flat = base.flatten({"model": {"name": "tiny", "w": [4, 8]}, "distill": {"teacher": None}})
    assert flat == {"model.name": "tiny", "model.w": "[4, 8]", "distill.teacher": "null"}


def test_store_takes_a_folder_a_database_url_or_a_server(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert store("mlruns") == (
        f"sqlite:///{tmp_path}/mlruns/{DATABASE}",
        f"{tmp_path}/mlruns/artifacts",
    )
    assert store("sqlite:///db/m.db") == (
        f"sqlite:///{tmp_path}/db/m.db",
        f"{tmp_path}/db/artifacts",
    )
    assert store("postgresql://u:p@h/db") == ("postgresql://u:p@h/db", None)
    assert store("http://h:5000") == ("http://h:5000", None)


def test_run_labels_come_from_the_sweep_job():
    def hydra(mode: RunMode, **job) -> object:
        return OmegaConf.create({"mode": mode, "job": job, "sweeper": {"study_name": "s-1"}})

    assert base.run_labels(hydra(RunMode.RUN)) == base.RunLabels()
    labels = base.run_labels(hydra(RunMode.MULTIRUN, **{record.SWEEP_TRIAL: 3}))
    assert labels == base.RunLabels(study="s-1", trial=3)
    seed = base.run_labels(hydra(RunMode.MULTIRUN, **{record.SEED_OF: 3}))
    assert seed == base.RunLabels(study="s-1", trial=3, seed_run=True)
    # A sweep's job without a trial, e.g. a confirmation seed: the study's experiment still.
    assert base.run_labels(hydra(RunMode.MULTIRUN)) == base.RunLabels(study="s-1")


def test_a_failing_tracker_warns_once_and_goes_quiet(caplog):
    class Failing:
        calls = 0

        def log_epoch(self, row):
            self.calls += 1
            raise ConnectionError(f"http://u:{SECRET}@host refused")

        def finish(self, metrics):
            self.calls += 1

    failing = Failing()
    guarded = base.Guarded(failing, "mlflow", lambda text: text.replace(SECRET, "***"))
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            guarded.log_epoch(None)
        guarded.finish(None)
    assert failing.calls == 1
    assert len(caplog.records) == 1 and "mlflow tracking failed" in caplog.text
    assert SECRET not in caplog.text


@pytest.mark.parametrize(
    "uri",
    [f"http://user:{SECRET}@127.0.0.1:{{port}}", f"postgresql://u:{SECRET}@127.0.0.1:{{port}}/db"],
)
def test_an_unreachable_store_stops_the_run_before_it_is_on_record(quick_cfg, tmp_path, uri):
    cfg = quick_cfg(
        "model=tiny", "logger=mlflow", **{"logger.tracking_uri": uri.format(port=free_port())}
    )
    with pytest.raises(UserError, match="cannot reach MLflow tracking store") as e:
        train(cfg, tmp_path)
    assert SECRET not in str(e.value) and "***" in str(e.value)
    assert not (tmp_path / record.METRICS).exists()


def test_a_missing_tracking_package_is_one_line(monkeypatch, tmp_path):
    import importlib.util

    from mnist_sweep.track import open_tracker

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match=r"logger=mlflow needs the mlflow package: pip install"):
        open_tracker({"kind": "mlflow"}, {}, tmp_path, None)


# --- TensorBoard ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_tensorboard_event_files_hold_the_run_and_its_hyperparameters(quick_cfg, tmp_path, caplog):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import metadata

    cfg = quick_cfg("model=tiny", "logger=tensorboard", **TINY, **{"data.val_size": 100})
    with caplog.at_level(logging.WARNING):
        metrics = train(cfg, tmp_path)
    assert "tracking failed" not in caplog.text
    events = EventAccumulator(str(tmp_path), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    tags = events.Tags()
    for split in ("train", "val", "test"):
        for figure, key in (("accuracy", "acc"), ("loss", "loss")):
            scalars = events.Scalars(f"{figure}/{split}")
            assert [s.step for s in scalars] == [1, 2]
            expected = [e[f"{split}_{key}"] for e in metrics["epochs"]]
            assert [s.value for s in scalars] == pytest.approx(expected, rel=1e-6)
    assert [s.value for s in events.Scalars("lr")] == pytest.approx(
        [e["lr"] for e in metrics["epochs"]], rel=1e-6
    )
    assert events.Scalars("final/params")[0].value == metrics["params"]
    assert events.Scalars("final/best_test_acc")[0].value == pytest.approx(metrics["best_test_acc"])
    assert "curves" in tags["images"]

    plugin = events.PluginTagToContent(metadata.PLUGIN_NAME)
    start = metadata.parse_session_start_info_plugin_data(plugin[metadata.SESSION_START_INFO_TAG])
    assert start.hparams["model.name"].string_value == "tiny"
    assert start.hparams["data.train_subset"].number_value == 300
    assert not any(key.startswith("logger.") for key in start.hparams)
    experiment = metadata.parse_experiment_plugin_data(plugin[metadata.EXPERIMENT_TAG])
    assert "final/params" in {m.name.tag for m in experiment.metric_infos}
    end = metadata.parse_session_end_info_plugin_data(plugin[metadata.SESSION_END_INFO_TAG])
    assert end.status == 1  # STATUS_SUCCESS
    assert RunRecord.load(tmp_path).status is RunStatus.COMPLETED


# --- MLflow: a folder store, in-process -------------------------------------------------------


@pytest.mark.slow
def test_a_pruned_run_in_a_folder_store_is_killed_and_tagged_pruned(quick_cfg, tmp_path):
    folder = tmp_path / "mlruns"
    cfg = quick_cfg("model=tiny", "logger=mlflow", **TINY, **{"logger.tracking_uri": str(folder)})

    def prune(metrics: dict) -> None:
        raise optuna.TrialPruned("pruned at epoch 1")

    with pytest.raises(optuna.TrialPruned):
        train(cfg, tmp_path / "run", on_epoch_end=prune)
    client = mlflow_client(store(str(folder))[0])
    (run,) = client.search_runs([client.get_experiment_by_name("mnist_sweep").experiment_id])
    assert run.info.status == "KILLED" and run.data.tags["status"] == "pruned"
    assert "trial" not in run.data.tags  # not a sweep's trial
    assert [m.step for m in client.get_metric_history(run.info.run_id, "test_acc")] == [1]
    assert (folder / DATABASE).is_file() and (folder / "artifacts").is_dir()


# --- MLflow: a real tracking server -----------------------------------------------------------


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory) -> Iterator[str]:
    """A real `mlflow server` on SQLite, on a free port of 127.0.0.1; yields its URL."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    log_file = (root / "server.log").open("w")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{root}/mlflow.db",
            "--artifacts-destination",
            str(root / "artifacts"),
        ],
        cwd=root,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        # The server's background job runner (GenAI evaluation) is not needed here.
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: urllib.request.urlopen(f"{url}/health", timeout=5).status == 200,
            "mlflow server to start",
            lambda: server.poll() is None,
            timeout=180,
        )
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        log_file.close()


@pytest.mark.slow
def test_a_run_on_a_server_reads_back_whole(mlflow_server, quick_cfg, tmp_path, caplog):
    with_password = mlflow_server.replace("http://", f"http://user:{SECRET}@")
    cfg = quick_cfg(
        "model=tiny",
        "logger=mlflow",
        **TINY,
        **{"logger.tracking_uri": with_password, "logger.log_checkpoint": True},
    )
    run_dir = tmp_path / "run"
    with caplog.at_level(logging.INFO):
        metrics = train(cfg, run_dir)
    assert "mlflow: run" in caplog.text and "user:***@" in caplog.text
    assert SECRET not in caplog.text

    client = mlflow_client(mlflow_server)
    experiment = client.get_experiment_by_name("mnist_sweep")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == run_dir.name
    assert run.data.tags["status"] == "completed"
    assert run.data.tags["run_dir"] == str(run_dir.resolve())
    assert run.data.params["model.name"] == "tiny"
    assert run.data.params["data.train_subset"] == "300"
    assert not any(key.startswith("logger.") for key in run.data.params)
    assert run.data.metrics["params"] == metrics["params"]
    assert run.data.metrics["best_test_acc"] == pytest.approx(metrics["best_test_acc"])
    history = client.get_metric_history(run.info.run_id, "test_acc")
    assert sorted((m.step, m.value) for m in history) == [
        (e["epoch"], pytest.approx(e["test_acc"])) for e in metrics["epochs"]
    ]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert artifacts == {record.CURVES, record.METRICS, record.CHECKPOINT}
    copy = Path(client.download_artifacts(run.info.run_id, record.METRICS, str(tmp_path)))
    assert json.loads(copy.read_text()) == metrics
    assert "logger" not in record.load_checkpoint(run_dir).config  # nor its password


@pytest.mark.slow
def test_a_sweep_is_one_experiment_with_a_run_per_trial(mlflow_server, tmp_path):
    run_sweep(
        tmp_path,
        "hydra.sweeper.n_trials=2",
        "logger=mlflow",
        f"logger.tracking_uri={mlflow_server}",
    )
    sweep_dir = sweep_folder(tmp_path)
    client = mlflow_client(mlflow_server)
    experiment = client.get_experiment_by_name(sweep_dir.name)  # the study's name
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.data.tags["trial"] for r in runs) == ["0", "1"]
    state = {"completed": ("COMPLETE", "FINISHED"), "pruned": ("PRUNED", "KILLED")}
    for run in runs:
        tags, number = run.data.tags, int(run.data.tags["trial"])
        assert tags["study"] == sweep_dir.name
        assert (tags["trial_state"], run.info.status) == state[tags["status"]]
        assert Path(tags["run_dir"]) == (sweep_dir / f"trial_{number:03d}").resolve()
        trial_metrics = RunRecord.load(tags["run_dir"])
        assert run.data.metrics["test_acc"] == pytest.approx(trial_metrics.test_acc)
        trained = OmegaConf.load(Path(tags["run_dir"]) / record.HYDRA_CONFIG)
        assert run.data.params["model.w1"] == str(trained.model.w1)  # what the trial sampled


class Proxy:
    """A TCP forwarder to the server that the test can cut: to the client, a store that
    goes away mid-run."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = [self.listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # closed
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass

    def cut(self) -> None:
        for s in self.sockets:
            with contextlib.suppress(OSError):  # already closed by the other side
                s.shutdown(socket.SHUT_RDWR)
            s.close()


@pytest.mark.slow
def test_a_server_lost_mid_run_costs_a_warning_not_the_training(
    mlflow_server, quick_cfg, tmp_path, caplog
):
    proxy = Proxy(int(mlflow_server.rsplit(":", 1)[1]))
    cfg = quick_cfg(
        "model=tiny",
        "logger=mlflow",
        **{**TINY, "trainer.epochs": 3},
        **{"logger.tracking_uri": f"http://127.0.0.1:{proxy.port}", "logger.experiment": "cut"},
    )

    def cut_after_first_epoch(metrics: dict) -> None:
        if len(metrics["epochs"]) == 1:
            proxy.cut()

    with caplog.at_level(logging.WARNING):
        metrics = train(cfg, tmp_path, on_epoch_end=cut_after_first_epoch)
    warnings = [r for r in caplog.records if "mlflow tracking failed" in r.getMessage()]
    assert len(warnings) == 1
    on_disk = RunRecord.load(tmp_path)
    assert on_disk.status is RunStatus.COMPLETED and len(on_disk.epochs) == 3
    assert on_disk.to_dict() == metrics
    client = mlflow_client(mlflow_server)
    (run,) = client.search_runs([client.get_experiment_by_name("cut").experiment_id])
    assert [m.step for m in client.get_metric_history(run.info.run_id, "test_acc")] == [1]


@pytest.mark.slow
def test_an_unreachable_server_is_one_line_and_exit_1(tmp_path, capsys):
    url = f"http://user:{SECRET}@127.0.0.1:{free_port()}"
    args = ["model=tiny", "trainer.epochs=1", "data.train_subset=300", "logger=mlflow"]
    err = error_in_process(capsys, tmp_path, *args, f"logger.tracking_uri={url}")
    out = capsys.readouterr().out
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "cannot reach MLflow tracking store" in errors[0]
    assert SECRET not in err + out
    assert not list(tmp_path.glob(f"outputs/**/{record.METRICS}"))


@pytest.mark.slow
def test_a_sweep_asks_an_unreachable_store_once_before_any_trial(tmp_path, capsys):
    url = f"http://user:{SECRET}@127.0.0.1:{free_port()}"
    err = error_in_process(capsys, tmp_path, *SWEEP, "logger=mlflow", f"logger.tracking_uri={url}")
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "cannot reach MLflow tracking store" in errors[0], errors
    assert SECRET not in err + capsys.readouterr().out
    assert not list(tmp_path.glob("outputs/sweeps/*/trial_*"))  # no trial was launched
