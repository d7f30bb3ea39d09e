"""Short real trainings on real MNIST: the net learns, runs reproduce, failures are recorded."""

from __future__ import annotations

import errno
import os
import shutil

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from mnist_sweep import teachers
from mnist_sweep.errors import ConfigError, DataError, TrainingDiverged, UserError, WriteError
from mnist_sweep.run import record
from mnist_sweep.run.build import (
    CPU_EVAL_BATCH,
    GPU_EVAL_BATCH,
    build,
    build_setup,
    cpu_threads,
    eval_batch_size,
    prepare_model,
)
from mnist_sweep.run.data import prepare_data, random_affine
from mnist_sweep.run.distill import distillation_loss, load_teacher
from mnist_sweep.run.fit import evaluate, fit
from mnist_sweep.run.model import build_model, count_params
from mnist_sweep.run.record import RunRecord, RunStatus
from mnist_sweep.run.train import train
from mnist_sweep.schema import validate
from tests.conftest import compose_config, short_run_cfg, without_timings


def test_short_training_really_learns(trained):
    metrics = trained.metrics
    assert metrics["status"] == RunStatus.COMPLETED
    assert metrics["params"] == 4882
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2]
    # 2,000 images, 2 epochs: chance is 10%, the net must be far beyond it.
    assert metrics["test_acc"] > 60.0
    assert metrics["epochs"][-1]["train_loss"] < metrics["epochs"][0]["train_loss"]
    assert metrics["test_acc"] == metrics["epochs"][-1]["test_acc"]
    assert metrics["best_test_acc"] == max(e["test_acc"] for e in metrics["epochs"])
    assert metrics["reached_target"] is False  # 99.4% is not reachable like this
    on_disk = RunRecord.load(trained.run_dir)
    assert on_disk.to_dict() == metrics
    assert (trained.run_dir / record.SUMMARY).is_file()
    assert (trained.run_dir / record.CURVES).is_file()


@pytest.mark.slow
def test_same_seed_same_result_on_cpu(quick_cfg, tmp_path, lean):
    cfg = quick_cfg("model=tiny", **{"data.train_subset": 1000, "trainer.epochs": 2})
    first = train(cfg, tmp_path / "a")
    second = train(cfg, tmp_path / "b")
    assert [e["test_loss"] for e in first["epochs"]] == [e["test_loss"] for e in second["epochs"]]
    cfg.trainer.seed = 1
    third = train(cfg, tmp_path / "c")
    assert third["epochs"][-1]["train_loss"] != first["epochs"][-1]["train_loss"]


def test_checkpoint_loads_with_weights_only_and_reproduces_accuracy(trained):
    ckpt = record.load_checkpoint(trained.run_dir)  # weights_only=True
    assert ckpt.epoch == 2
    assert ckpt.config["model"]["name"] == "small"
    model = build_model(ckpt.config["model"], ckpt.config["dropout"]["p"])
    model.load_state_dict(ckpt.state_dict)  # the shipped weights: the average
    assert count_params(model) == trained.metrics["params"]
    data = prepare_data(short_run_cfg().data, torch.device("cpu"))
    model.eval()
    with torch.no_grad():
        acc = (model(data.test_x).argmax(1) == data.test_y).float().mean().item() * 100
    assert acc == pytest.approx(trained.metrics["test_acc"], abs=0.011)  # within one test image


@pytest.mark.slow
def test_validation_split_is_held_out_and_reported(quick_cfg, tmp_path):
    cfg = quick_cfg(
        "model=tiny", **{"data.train_subset": 1500, "data.val_size": 500, "trainer.epochs": 1}
    )
    data = prepare_data(cfg.data, torch.device("cpu"))
    assert (data.n_train, data.val_x.shape[0]) == (1000, 500)
    metrics = train(cfg, tmp_path)
    assert metrics["val_acc"] == metrics["epochs"][-1]["val_acc"]
    ckpt = record.load_checkpoint(tmp_path)
    model = build_model(ckpt.config["model"], ckpt.config["dropout"]["p"])
    model.load_state_dict(ckpt.state_dict)
    model.eval()
    with torch.no_grad():
        acc = (model(data.val_x).argmax(1) == data.val_y).float().mean().item() * 100
    assert metrics["val_acc"] == pytest.approx(acc, abs=0.21)  # within one of the 500 images


def test_diverging_run_stops_and_is_recorded_as_failed(quick_cfg, tmp_path):
    cfg = quick_cfg(
        "model=tiny", "dropout=none", **{"data.train_subset": 1000, "optimizer.lr": 1e30}
    )
    with pytest.raises(TrainingDiverged, match="diverged in epoch 1"):
        train(cfg, tmp_path)
    metrics = RunRecord.load(tmp_path)
    assert metrics.status is RunStatus.FAILED
    assert "diverged" in metrics.error
    assert metrics.epochs == []


def test_batch_augmentation_keeps_shape_background_and_varies_per_image():
    background = -0.1307 / 0.3081
    x = torch.full((64, 1, 28, 28), background)
    x[:, :, 10:18, 10:18] = 2.0
    out = random_affine(x, 15, 0.1, 0.1, background, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    assert out[:, :, 0, 0].allclose(torch.tensor(background))  # corners stay black, not grey
    assert not torch.equal(out[0], out[1])  # each image gets its own transform
    same = random_affine(x, 0, 0, 0, background)
    assert torch.allclose(same, x, atol=1e-5)


def test_channels_last_changes_layout_not_results():
    cfg = compose_config(["model=era_s6"])
    # float64: the two layouts sum in different orders, and through six BatchNorm
    # layers float32 rounding alone moves these gradients by about 1e-3.
    x = torch.randn(16, 1, 28, 28, dtype=torch.float64)
    y = torch.randint(0, 10, (16,))
    results = []
    for channels_last in (False, True):
        torch.manual_seed(0)
        trainer_cfg = {"channels_last": channels_last}
        net = build_model(cfg.model, 0.0).double()
        model = prepare_model(net, trainer_cfg, torch.device("cpu"))
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        results.append((loss.item(), model[0].weight.grad.clone()))
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-9)
    assert torch.allclose(results[0][1], results[1][1], rtol=1e-7, atol=1e-9)


def test_cpu_threads_sets_and_restores():
    before = torch.get_num_threads()
    with cpu_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with cpu_threads(None):
        assert torch.get_num_threads() == before


@pytest.mark.slow
@pytest.mark.parametrize("average", ["none", "ema"])
def test_resumed_run_ends_with_the_same_metrics_as_an_uninterrupted_one(
    quick_cfg, tmp_path, average, lean
):
    # Dropout and augmentation on: the resumed run must restore every RNG too,
    # and with weight averaging the live weights and the average alike.
    cfg = quick_cfg(
        "model=tiny", f"average={average}", **{"data.train_subset": 1000, "trainer.epochs": 3}
    )
    uninterrupted = train(cfg, tmp_path / "a")

    def crash_after_epoch_2(metrics: dict) -> None:
        if len(metrics["epochs"]) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "b", on_epoch_end=crash_after_epoch_2)
    interrupted = RunRecord.load(tmp_path / "b")
    assert interrupted.status is RunStatus.INTERRUPTED and len(interrupted.epochs) == 2
    assert interrupted.signal == "SIGINT"  # what raises a KeyboardInterrupt
    cfg.trainer.resume = True
    resumed = train(cfg, tmp_path / "b")
    assert resumed["status"] == RunStatus.COMPLETED
    assert resumed["resumed_after_epoch"] == 2
    assert without_timings(resumed) == without_timings(uninterrupted)
    assert resumed["test_acc"] == uninterrupted["test_acc"]


@pytest.mark.slow
def test_resume_refuses_a_different_config_or_a_missing_checkpoint(quick_cfg, tmp_path):
    cfg = quick_cfg("model=tiny", **{"data.train_subset": 500, "trainer.epochs": 1})
    train(cfg, tmp_path / "run")
    cfg.trainer.resume = True
    cfg.optimizer.lr = 0.2
    with pytest.raises(UserError, match="the config differs in optimizer.lr"):
        train(cfg, tmp_path / "run")
    with pytest.raises(UserError, match="there is no .*checkpoint.pt"):
        train(cfg, tmp_path / "elsewhere")


def test_eval_batch_size_defaults_by_device(quick_cfg):
    cfg = quick_cfg("model=tiny")
    assert cfg.data.eval_batch_size is None
    assert eval_batch_size(cfg.data, torch.device("cpu")) == CPU_EVAL_BATCH
    assert eval_batch_size(cfg.data, torch.device("cuda")) == GPU_EVAL_BATCH
    cfg.data.eval_batch_size = 500
    assert eval_batch_size(cfg.data, torch.device("cpu")) == 500


@pytest.mark.slow
def test_evaluation_batch_size_changes_speed_not_results(data_root):
    cfg = compose_config(["model=era_s6", f"data.root={data_root}"])
    data = prepare_data(cfg.data, torch.device("cpu"))
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.dropout.p)
    x, y = data.test_x[:2000], data.test_y[:2000]
    loss_a, acc_a = evaluate(model, x, y, 128)
    loss_b, acc_b = evaluate(model, x, y, 2000)
    assert loss_a == pytest.approx(loss_b, rel=1e-5)
    # Convolution kernels picked per batch size may round differently: at most a
    # near-tie of one image in 2,000 could flip.
    assert acc_a == pytest.approx(acc_b, abs=0.051)


@pytest.mark.slow
def test_averaged_weights_are_the_ones_evaluated_and_saved(quick_cfg, tmp_path):
    cfg = quick_cfg(
        "model=small",
        "average=ema",
        "dropout=between_blocks",
        "trainer.label_smoothing=0.1",
        "data.augment.brightness=0.2",
        "data.augment.contrast=0.2",
        "data.augment.p=0.5",
    )
    metrics = train(cfg, tmp_path)
    assert metrics["test_acc"] > 90  # the recipe levers together still learn
    ckpt = record.load_checkpoint(tmp_path)
    c = ckpt.config
    model = build_model(c["model"], c["dropout"]["p"], c["dropout"]["placement"])
    model.load_state_dict(ckpt.state_dict)
    live = build_model(c["model"], c["dropout"]["p"], c["dropout"]["placement"])
    live.load_state_dict(ckpt.resume.model)
    data = prepare_data(cfg.data, torch.device("cpu"))

    def accuracy(net: torch.nn.Module) -> float:
        net.eval()
        with torch.no_grad():
            return (net(data.test_x).argmax(1) == data.test_y).float().mean().item() * 100

    assert accuracy(model) == pytest.approx(metrics["test_acc"], abs=0.011)
    # The shipped average is not the last step's weights.
    assert any(
        not torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), live.state_dict().values(), strict=True)
    )


def test_build_gives_the_configured_run_and_writes_nothing(quick_cfg, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = quick_cfg("model=tiny", **{"data.train_subset": 1000, "trainer.epochs": 2})
    run = build(cfg)
    assert run.params == count_params(run.model) == 1046
    assert (run.data.n_train, run.epochs, run.steps_per_epoch) == (1000, 2, 16)  # 1000 / 64
    assert run.device == torch.device("cpu") and run.eval_batch_size == CPU_EVAL_BATCH
    trained = {id(p) for group in run.optimizer.param_groups for p in group["params"]}
    assert trained == {id(p) for p in run.model.parameters()}
    assert run.scheduler.optimizer is run.optimizer
    assert run.average is None and run.shipped() is run.model
    assert list(tmp_path.iterdir()) == []


def test_build_setup_reads_no_data_so_a_data_error_is_on_record(quick_cfg, tmp_path):
    cfg = quick_cfg("model=tiny", **{"data.root": str(tmp_path / "nowhere")})
    assert build_setup(cfg).params == 1046  # no MNIST needed for the net
    with pytest.raises(DataError, match="MNIST not found"):
        build(cfg)
    with pytest.raises(DataError):
        train(cfg, tmp_path / "run")
    metrics = RunRecord.load(tmp_path / "run")
    assert metrics.status is RunStatus.FAILED and "MNIST not found" in metrics.error
    assert metrics.params == 1046 and metrics.epochs == []


def test_a_disk_that_fills_mid_run_is_one_line_and_keeps_the_finished_epochs(
    quick_cfg, tmp_path, monkeypatch
):
    cfg = quick_cfg("model=tiny", **{"data.train_subset": 500, "trainer.epochs": 3})
    full = False
    new_file = record._new_file

    def no_space(path):
        if full:  # every file from here on: metrics.json, checkpoint.pt, curves.png
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return new_file(path)

    def fill_after_epoch_1(metrics) -> None:
        nonlocal full
        full = True

    monkeypatch.setattr(record, "_new_file", no_space)
    with pytest.raises(WriteError) as error:
        train(cfg, tmp_path, on_epoch_end=fill_after_epoch_1)
    assert isinstance(error.value, UserError)  # the CLI prints it as one line, exit 1
    assert str(error.value).endswith(": No space left on device")
    assert "\n" not in str(error.value)
    metrics = RunRecord.load(tmp_path)
    assert [e.epoch for e in metrics.epochs] == [1]
    assert record.load_checkpoint(tmp_path).epoch == 1
    assert not (tmp_path / record.CURVES).exists()  # skipped with a warning, not the error


def test_fit_trains_the_epochs_asked_and_hands_each_callback_its_figures(quick_cfg, tmp_path):
    cfg = quick_cfg("model=tiny", **{"data.train_subset": 500, "data.val_size": 100})
    run = build(cfg)
    before = [p.detach().clone() for p in run.model.parameters()]
    seen: list[tuple[str, int]] = []
    rows = fit(
        run,
        range(1, 2),
        [lambda row: seen.append(("first", row.epoch)), lambda row: seen.append(("then", row))],
    )
    (row,) = rows
    assert seen == [("first", 1), ("then", row)]  # in order, with the epoch's own figures
    assert row.epoch == 1 and row.seconds > 0 and row.eval_seconds > 0
    assert row.lr == run.scheduler.get_last_lr()[0]
    assert any(not torch.equal(a, b) for a, b in zip(before, run.model.parameters(), strict=True))
    test_x, test_y = run.data.test_x, run.data.test_y
    assert (row.test_loss, row.test_acc) == evaluate(run.model, test_x, test_y, 128)
    assert (row.val_loss, row.val_acc) == evaluate(run.model, run.data.val_x, run.data.val_y, 128)


def test_a_requeued_slurm_job_resumes_its_run_from_the_last_checkpoint(
    quick_cfg, tmp_path, monkeypatch
):
    # As submitit ends a preempted job once it has requeued it: SystemExit from its handler.
    cfg = quick_cfg("model=tiny", **{"data.train_subset": 500, "trainer.epochs": 2})

    def preempted_after_epoch_1(metrics: dict) -> None:
        raise SystemExit(-1)

    with pytest.raises(SystemExit):
        train(cfg, tmp_path, on_epoch_end=preempted_after_epoch_1)
    stopped = RunRecord.load(tmp_path)
    assert stopped.status is RunStatus.INTERRUPTED and len(stopped.epochs) == 1
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")  # SLURM's count in the requeued job
    resumed = train(cfg, tmp_path)  # the same command line: trainer.resume is off
    assert resumed["status"] == RunStatus.COMPLETED and resumed["resumed_after_epoch"] == 1


def test_a_callback_that_raises_stops_fit(quick_cfg):
    run = build(quick_cfg("model=tiny", **{"data.train_subset": 500}))
    epochs: list[int] = []

    def stop_after_first(row) -> None:
        epochs.append(row.epoch)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(run, range(1, 4), [stop_after_first])
    assert epochs == [1]


def test_a_student_learns_from_the_teacher_alone(quick_cfg, trained, tmp_path):
    # A teacher with dropout, whose layers shift the numbering of its weights.
    teacher = trained.run_dir
    weights = (teacher / record.CHECKPOINT).read_bytes()
    # alpha 1: the labels carry no weight, so all it learns comes from the teacher.
    student = quick_cfg(
        "model=small",
        "distill=teacher",
        f"distill.teacher={teacher}",
        "distill.alpha=1",
        **{"data.train_subset": 2000, "trainer.epochs": 2},
    )
    metrics = train(student, tmp_path / "student")
    assert metrics["params"] == 4882  # the student's own; the teacher is not counted
    assert metrics["test_acc"] > 35.0  # chance is 10%; the teacher has about 73%
    assert (teacher / record.CHECKPOINT).read_bytes() == weights  # the teacher is left as it was
    run = build(student)
    assert not any(p.requires_grad for p in run.teacher.parameters()) and not run.teacher.training


def test_distillation_loss_mixes_the_labels_and_the_teacher():
    logits, labels = torch.randn(8, 10), torch.randint(0, 10, (8,))
    hard = F.cross_entropy(logits, labels).item()
    # A teacher that agrees with the student adds nothing; alpha weighs the labels' share.
    same = distillation_loss(logits, labels, logits, 0.25, 4.0).item()
    assert same == pytest.approx(0.75 * hard)
    other = torch.randn(8, 10)
    soft = F.kl_div(F.log_softmax(logits / 2, 1), F.softmax(other / 2, 1), reduction="batchmean")
    mixed = distillation_loss(logits, labels, other, 0.5, 2.0).item()
    assert mixed == pytest.approx(0.5 * hard + 0.5 * 4 * soft.item(), rel=1e-5)


def test_a_teacher_that_is_not_a_finished_run_is_one_line(quick_cfg, trained, tmp_path):
    cfg = quick_cfg("model=tiny", "distill=teacher", f"distill.teacher={tmp_path / 'nope'}")
    with pytest.raises(UserError, match=r"^distill.teacher=.*nope: .* is not a run folder"):
        build(cfg)
    # A config without a checkpoint: training never finished an epoch there.
    (tmp_path / "half" / record.HYDRA_DIR).mkdir(parents=True)
    OmegaConf.save(cfg, tmp_path / "half" / record.HYDRA_CONFIG)
    cfg.distill.teacher = str(tmp_path / "half")
    with pytest.raises(UserError, match=r"metrics.json is missing; train the teacher"):
        build(cfg)
    # A run that stopped half-way is no teacher either.
    shutil.rmtree(tmp_path / "half")
    shutil.copytree(trained.run_dir, tmp_path / "half")
    metrics = RunRecord.load(tmp_path / "half")
    metrics.status, metrics.epochs = RunStatus.RUNNING, metrics.epochs[:1]
    metrics.save(tmp_path / "half")
    with pytest.raises(UserError, match=r"that run is running after 1 of 2 epochs; finish it"):
        build(cfg)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("distill.alpha=-0.1", "distill.alpha=-0.1"),
        ("distill.alpha=1.5", "distill.alpha=1.5"),
        ("distill.temperature=0", "distill.temperature=0"),
        ("distill.teacher=''", "distill.teacher"),
    ],
)
def test_bad_distill_settings_are_named(override, message):
    cfg = compose_config(["distill=teacher", "distill.teacher=somewhere", override])
    with pytest.raises(ConfigError, match=message):
        validate(cfg)


def test_alpha_zero_trains_on_the_labels_without_loading_the_teacher():
    # The folder does not exist: with alpha 0 nothing reads it, so a search can offer
    # distill.alpha=choice(0, ...) over one teacher.
    cfg = compose_config(["distill=teacher", "distill.teacher=nowhere", "distill.alpha=0"])
    validate(cfg)
    assert load_teacher(cfg.distill) is None
    cfg.distill.alpha = 0.5
    with pytest.raises(UserError, match="distill.teacher=nowhere"):
        load_teacher(cfg.distill)


def test_distill_teacher_must_be_given():
    with pytest.raises(ConfigError, match="distill.teacher"):
        validate(compose_config(["distill=teacher"]))


def test_the_shipped_teacher_loads_by_name_and_is_pinned(monkeypatch, tmp_path):
    cfg = compose_config(["experiment=sep_3671", "distill.teacher=teacher_8128"])
    teacher = load_teacher(cfg.distill)
    assert sum(p.numel() for p in teacher.parameters()) == 8128 and not teacher.training
    # Its metrics say what it scored: the figure RESULTS quotes for it.
    shipped = RunRecord.load(teachers.HERE / "teacher_8128")
    assert shipped.status is RunStatus.COMPLETED and shipped.test_acc == 99.43
    # A changed checkpoint is refused, naming the way out.
    monkeypatch.setitem(teachers.SHIPPED, "teacher_8128", "0" * 64)
    with pytest.raises(UserError, match=r"^distill.teacher=teacher_8128: .* SHA-256 pin"):
        load_teacher(cfg.distill)
