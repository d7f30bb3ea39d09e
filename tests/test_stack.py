"""Stacked training (trainer.seeds): K copies in one process, each its solo run.

The proof is in float64, where float rounding cannot hide a difference: a
stacked K=3 run and three solo runs of the same seeds end with the same weights,
BatchNorm statistics, weight average, optimizer state and logits, with a
teacher, elastic distortion and dropout on.
"""

from __future__ import annotations

import json

import pytest
import torch
from omegaconf import OmegaConf

from mnist_sweep.compare import cli as compare_cli
from mnist_sweep.errors import ConfigError, TrainingDiverged, UserError
from mnist_sweep.evaluate import cli as evaluate_cli
from mnist_sweep.run import data as data_module
from mnist_sweep.run import record
from mnist_sweep.run.load import load_model
from mnist_sweep.run.record import RunRecord, RunStatus
from mnist_sweep.run.train import train
from mnist_sweep.schema import validate
from mnist_sweep.stack.build import check_seeds, seed_config
from mnist_sweep.stack.dropout import DropoutLayer, solo_mask
from mnist_sweep.stack.train import train_seeds
from tests.conftest import compose_config, run_in_process, without_timings

SEEDS = [41, 42, 43]
TINY = {"data.train_subset": 96, "data.batch_size": 32, "trainer.epochs": 2}


@pytest.fixture
def float64(lean, monkeypatch):
    """Train in float64 (lean: the torchinfo summary would feed float32)."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    normalise = data_module.normalise
    monkeypatch.setattr(data_module, "normalise", lambda *a, **k: normalise(*a, **k).double())
    yield
    torch.set_default_dtype(before)


def _teacher(quick_cfg, folder):
    cfg = quick_cfg("model=tiny", "dropout=none", **{**TINY, "trainer.epochs": 1})
    train(cfg, folder)
    (folder / record.HYDRA_DIR).mkdir()
    OmegaConf.save(cfg, folder / record.HYDRA_CONFIG)
    return folder


def _tensors_close(a, b, where):
    if isinstance(a, torch.Tensor):
        assert torch.allclose(a.double(), b.double(), rtol=1e-9, atol=1e-11), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _tensors_close(a[key], b[key], f"{where}.{key}")


def test_stacked_copies_equal_their_solo_runs_in_float64(quick_cfg, tmp_path, float64):
    teacher = _teacher(quick_cfg, tmp_path / "teacher")
    cfg = quick_cfg(
        "model=tiny",
        "average=ema",
        "dropout=default",
        "distill=teacher",
        f"distill.teacher={teacher}",
        "distill.alpha=0.7",
        "data.augment.elastic=20",
        "data.augment.strength=0.5",
        "trainer.label_smoothing=0.1",
        **TINY,
    )
    stacked = train_seeds(cfg, SEEDS, tmp_path / "stack")
    x = data_module.prepare_data(cfg.data, torch.device("cpu")).test_x[:50]
    for seed in SEEDS:
        solo = train(seed_config(cfg, seed), tmp_path / f"solo_{seed}")
        (tmp_path / f"solo_{seed}" / record.HYDRA_DIR).mkdir()
        OmegaConf.save(seed_config(cfg, seed), tmp_path / f"solo_{seed}" / record.HYDRA_CONFIG)
        assert stacked[seed]["status"] == "completed" and stacked[seed]["seed"] == seed
        for ours, theirs in zip(without_timings(stacked[seed]), without_timings(solo), strict=True):
            assert ours.keys() == theirs.keys()
            for key in ours:
                # Evaluation sums its loss in float32 (run/fit.py's evaluate), by design.
                rel = 1e-6 if key == "test_loss" else 1e-9
                assert ours[key] == pytest.approx(theirs[key], rel=rel, abs=1e-12), key
        mine = record.load_checkpoint(record.seed_dir(tmp_path / "stack", seed))
        solo_ckpt = record.load_checkpoint(tmp_path / f"solo_{seed}")
        # The shipped EMA (weights and BatchNorm statistics), the live weights and
        # buffers, the average's own state and the optimizer's momentum.
        _tensors_close(mine.state_dict, solo_ckpt.state_dict, "shipped")
        _tensors_close(mine.resume.model, solo_ckpt.resume.model, "live")
        _tensors_close(mine.resume.average, solo_ckpt.resume.average, "average")
        _tensors_close(mine.resume.optimizer["state"], solo_ckpt.resume.optimizer["state"], "opt")
        assert mine.resume.scheduler == solo_ckpt.resume.scheduler
        # Same random streams left: the next epoch would draw the same numbers too.
        assert torch.equal(mine.resume.generator, solo_ckpt.resume.generator)
        assert torch.equal(mine.resume.torch_rng, solo_ckpt.resume.torch_rng)
        with torch.no_grad():
            a = load_model(record.seed_dir(tmp_path / "stack", seed)).double()(x)
            b = load_model(tmp_path / f"solo_{seed}").double()(x)
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-11)
    # The copies are distinct trainings.
    assert stacked[41]["epochs"][-1]["train_loss"] != stacked[42]["epochs"][-1]["train_loss"]


def test_dropout_masks_are_the_solo_layers_masks():
    from mnist_sweep.run.model import Dropout

    for channels_last in (False, True):
        x = torch.ones(5, 3, 4, 6)
        if channels_last:
            x = x.to(memory_format=torch.channels_last)
        layer = Dropout(0.25).train()
        torch.manual_seed(7)
        expected = layer(x)
        generator = torch.Generator().manual_seed(7)
        mask = solo_mask(
            DropoutLayer(0.25, (3, 4, 6), True),
            5,
            generator,
            torch.float32,
            torch.device("cpu"),
            channels_last,
        )
        assert torch.equal(x * mask, expected)


def test_bad_seeds_are_one_line():
    for seeds, message in [([], "non-empty"), ([1, 1], "twice"), ([-1], ">= 0"), (None, "list")]:
        with pytest.raises(UserError, match=message):
            check_seeds(seeds)
    for override, message in [
        ("trainer.seeds=[]", "trainer.seeds"),
        ("trainer.seeds=[3,3]", "given twice"),
    ]:
        with pytest.raises(ConfigError, match=message):
            validate(compose_config([override]))


@pytest.mark.slow
def test_a_diverged_copy_is_recorded_and_the_others_go_on(quick_cfg, tmp_path, monkeypatch, lean):
    cfg = quick_cfg("model=tiny", **TINY)
    from mnist_sweep.stack import fit as stack_fit

    real = stack_fit.train_epoch_stacked

    def second_copy_blows_up(run):  # as if copy 1's loss had turned nan in epoch 1
        losses, accs = real(run)
        if run.copies[1].alive:
            losses[1] = float("nan")
        return losses, accs

    monkeypatch.setattr(stack_fit, "train_epoch_stacked", second_copy_blows_up)
    metrics = train_seeds(cfg, [1, 2, 3], tmp_path)
    assert metrics[2]["status"] == "failed" and metrics[2]["epochs"] == []
    assert metrics[2]["error"].startswith("training diverged in epoch 1 (train loss is nan)")
    assert [metrics[s]["status"] for s in (1, 3)] == ["completed", "completed"]
    assert len(metrics[3]["epochs"]) == 2
    assert RunRecord.load(record.seed_dir(tmp_path, 2)).status is RunStatus.FAILED


@pytest.mark.slow
def test_every_copy_diverging_is_one_error(quick_cfg, tmp_path):
    cfg = quick_cfg("model=tiny", "dropout=none", **TINY, **{"optimizer.lr": 1e30})
    with pytest.raises(TrainingDiverged, match="every copy diverged"):
        train_seeds(cfg, [1, 2], tmp_path)
    assert RunRecord.load(record.seed_dir(tmp_path, 1)).status is RunStatus.FAILED


@pytest.mark.slow
def test_cli_stacked_run_folders_are_read_by_compare_and_evaluate(tmp_path, capsys):
    args = [
        "model=tiny",
        "data.train_subset=128",
        "data.batch_size=64",
        "trainer.epochs=2",
        "trainer.device=cpu",
        "hydra.run.dir=stack",
    ]
    run_in_process(tmp_path, *args, "trainer.seeds=[5,6]")
    for seed in (5, 6):
        folder = tmp_path / "stack" / f"seed_{seed}"
        assert RunRecord.load(folder).seed == seed
        assert OmegaConf.load(folder / record.HYDRA_CONFIG).trainer.seed == seed
        # compare and evaluate as their CLIs run them, in this process.
        assert evaluate_cli.main([str(folder)]) == 0
        assert "agrees" in capsys.readouterr().out
    assert compare_cli.main([str(tmp_path / "stack")]) == 0
    table = capsys.readouterr().out
    assert "seed_5" in table and "seed_6" in table
    # A seed folder that lost its checkpoint cannot be resumed: one line says so.
    (tmp_path / "stack" / "seed_5" / record.CHECKPOINT).unlink()
    run_in_process(tmp_path, *args, "trainer.seeds=[5,6]", "trainer.resume=true", code=1)
    err = capsys.readouterr().err
    assert "seed_5/checkpoint.pt" in err and len(err.strip().splitlines()) == 1, err
    run_in_process(tmp_path, *args, "trainer.seeds=[5,5]", code=1)
    err = capsys.readouterr().err
    assert "given twice" in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.slow
def test_a_stacked_run_resumes_to_the_same_metrics(quick_cfg, tmp_path, lean):
    cfg = quick_cfg("model=tiny", "average=ema", **{**TINY, "trainer.epochs": 3})
    whole = train_seeds(cfg, [1, 2], tmp_path / "a")

    def crash_after_epoch_2(metrics: dict) -> None:
        if len(metrics[1]["epochs"]) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_seeds(cfg, [1, 2], tmp_path / "b", on_epoch_end=crash_after_epoch_2)
    assert RunRecord.load(record.seed_dir(tmp_path / "b", 1)).status is RunStatus.FAILED
    cfg.trainer.resume = True
    resumed = train_seeds(cfg, [1, 2], tmp_path / "b")
    for seed in (1, 2):
        assert resumed[seed]["status"] == "completed"
        assert resumed[seed]["resumed_after_epoch"] == 2
        assert without_timings(resumed[seed]) == without_timings(whole[seed])


@pytest.mark.slow
def test_bench_stack_prints_and_writes_every_k_side_by_side(data_root, tmp_path, capsys):
    from mnist_sweep.bench.cli import main

    out = tmp_path / "bench.json"
    sizes = ["--batches", "2", "--repeats", "1", "--warmup", "1", "--device", "cpu"]
    argv = ["--stack", "1,2", *sizes, "--json", str(out), "model=tiny", f"data.root={data_root}"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    rows = {row["path"]: row for row in report["rows"]}
    assert list(rows) == ["solo", "stacked 1", "stacked 2"]
    assert rows["solo"]["ratio_to_solo"] == 1.0
    for row in rows.values():
        hours = row["copies"] * 3600 / (row["seconds_per_epoch"] * report["epochs"])
        assert row["trainings_per_hour"] == pytest.approx(hours, rel=0.01)
        assert f"{row['ratio_to_solo']:.2f}x solo" in printed
    assert main(["--stack", "0,2"]) == 1  # a bad count is one line


def test_cpu_runs_never_take_the_cuda_graph(quick_cfg):
    from mnist_sweep.stack.graph import uses_cuda_graph

    cfg = quick_cfg("model=tiny")
    assert cfg.trainer.cuda_graph is True
    assert not uses_cuda_graph(cfg, torch.device("cpu"))
    assert uses_cuda_graph(cfg, torch.device("cuda"))
    cfg.trainer.cuda_graph = False
    assert not uses_cuda_graph(cfg, torch.device("cuda"))
    adam = quick_cfg("model=tiny", "optimizer=adam")  # its update is not written out
    assert not uses_cuda_graph(adam, torch.device("cuda"))


def test_schedule_table_is_the_schedulers_own(quick_cfg):
    from mnist_sweep.run.build import build
    from mnist_sweep.stack.graph import schedule_table

    run = build(quick_cfg("model=tiny", **{"data.train_subset": 320, "data.batch_size": 64}))
    lrs, momenta = schedule_table(run, run.steps_per_epoch * run.epochs)
    for t in range(run.steps_per_epoch * run.epochs):
        group = run.optimizer.param_groups[0]
        # float32 on the device, as the weights they scale
        assert lrs[t].item() == pytest.approx(group["lr"], rel=1e-6)
        assert momenta[t].item() == pytest.approx(group["momentum"], rel=1e-6)
        run.optimizer.step()
        run.scheduler.step()


@pytest.mark.slow
def test_the_graphed_step_is_the_eager_step(quick_cfg, float64):
    # The step a CUDA graph captures, run eagerly here: its own SGD, schedule table and
    # average must do what torch's SGD, the scheduler and AveragedModel do. Without
    # dropout and augmentation, whose numbers it draws from the CUDA generator.
    from mnist_sweep.stack.build import build_stacked
    from mnist_sweep.stack.fit import train_epoch_stacked
    from mnist_sweep.stack.graph import GraphedTraining

    cfg = quick_cfg(
        "model=tiny",
        "average=ema",
        "dropout=none",
        "data.augment.strength=0",
        "optimizer.weight_decay=0.01",
        **{**TINY, "data.train_subset": 80},
    )
    eager, graphed = build_stacked(cfg, [1, 2]), build_stacked(cfg, [1, 2])
    replayed = GraphedTraining(graphed)
    for _ in range(2):  # 80 images of 32: two full batches and a partial one per epoch
        (loss_a, acc_a), (loss_b, acc_b) = train_epoch_stacked(eager), replayed.train_epoch(graphed)
        assert loss_a == pytest.approx(loss_b, rel=1e-9) and acc_a == acc_b
    for a, b in [(eager.net, graphed.net), (eager.shipped(), graphed.shipped())]:
        _tensors_close(a.state_dict(), b.state_dict(), "net")
    _tensors_close(
        eager.optimizer.state_dict()["state"], graphed.optimizer.state_dict()["state"], "optimizer"
    )
    assert eager.scheduler.state_dict() == graphed.scheduler.state_dict()
    assert eager.average.step == graphed.average.step
    assert int(eager.average.averaged.n_averaged) == int(graphed.average.averaged.n_averaged)
