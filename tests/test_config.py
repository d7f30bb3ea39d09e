"""Every option of every config group composes into something that builds."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from mnist_sweep.errors import ArchitectureError
from mnist_sweep.run.model import build_model, count_params, layer_output_shapes
from mnist_sweep.run.optim import build_optimizer, build_scheduler
from tests.conftest import CONF_DIR, REPO, compose_config

GROUPS = ["data", "model", "dropout", "optimizer", "scheduler", "average", "trainer", "experiment"]
OPTIONS = [(g, p.stem) for g in GROUPS for p in sorted((CONF_DIR / g).glob("*.yaml"))]


def test_every_group_has_its_promised_options():
    found = {(g, o) for g, o in OPTIONS}
    for option in ["tiny", "small", "medium", "three_blocks", "record_3762", "era_s5", "era_s6"]:
        assert ("model", option) in found
    for option in ["none", "light", "default", "between_blocks"]:
        assert ("dropout", option) in found
    for option in ["none", "ema", "swa"]:
        assert ("average", option) in found
    assert ("experiment", "record_3762") in found
    for option in ["sgd", "adam", "adamw"]:
        assert ("optimizer", option) in found
    for option in ["onecycle", "step", "cosine", "none"]:
        assert ("scheduler", option) in found


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_option_composes_and_builds(group: str, option: str):
    cfg = compose_config([f"{group}={option}"])
    assert cfg.target_acc == 99.4
    model = build_model(cfg.model, cfg.dropout.p, cfg.dropout.placement)
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    optimizer = build_optimizer(cfg.optimizer, model)
    assert optimizer.param_groups[0]["lr"] == cfg.optimizer.lr
    scheduler = build_scheduler(cfg.scheduler, optimizer, steps_per_epoch=10, epochs=3)
    for _ in range(30):  # a full run's worth of steps must be valid
        optimizer.step()
        scheduler.step()


def test_schedules_derive_their_length_from_the_run():
    cfg = compose_config(["scheduler=onecycle", "optimizer.lr=0.2"])
    model = build_model(cfg.model)
    optimizer = build_optimizer(cfg.optimizer, model)
    scheduler = build_scheduler(cfg.scheduler, optimizer, steps_per_epoch=7, epochs=4)
    assert scheduler.total_steps == 28
    lrs = []
    for _ in range(28):
        optimizer.step()
        scheduler.step()
        lrs.append(scheduler.get_last_lr()[0])
    assert max(lrs) == pytest.approx(0.2, rel=0.05)
    assert lrs[-1] < 0.2 / 100

    cfg = compose_config(["scheduler=step", "scheduler.every_epochs=2", "optimizer.lr=1.0"])
    optimizer = build_optimizer(cfg.optimizer, build_model(cfg.model))
    scheduler = build_scheduler(cfg.scheduler, optimizer, steps_per_epoch=5, epochs=6)
    assert scheduler.step_size == 10


def _reference_table(seed_readme: Path) -> list[tuple[str, tuple[int, ...], int]]:
    """(layer type, output shape, params) rows of the ERA V1 Session 5 README's table."""
    rows = re.findall(
        r"\|\s*(\w+)-\d+\s*\|\s*\[-1, ([\d, ]+)\]\s*\|\s*([\d,]+)\s*\|", seed_readme.read_text()
    )
    return [
        (t, tuple(int(d) for d in shape.split(",")), int(p.replace(",", "")))
        for t, shape, p in rows
    ]


def test_era_s5_reproduces_its_reference_exactly():
    cfg = compose_config(["model=era_s5"])
    assert cfg.dropout.p == 0.0  # the preset picks its own dropout...
    assert (
        compose_config(["model=era_s5", "dropout=light"]).dropout.p == 0.05
    )  # ...the CLI still wins
    model = build_model(cfg.model, cfg.dropout.p)
    assert count_params(model) == 593_200
    ours = [
        (kind, shape, sum(p.numel() for p in layer.parameters()))
        for layer, (kind, shape) in zip(model, layer_output_shapes(model), strict=True)
        if kind in ("Conv2d", "Linear")
    ]
    seed = REPO.parent / "shared" / "seeds" / "000_bbb9a81837b117d4.txt"
    expected = (
        _reference_table(seed)
        if seed.is_file()
        else [  # the same table, for checkouts without ../shared/seeds
            ("Conv2d", (32, 26, 26), 320),
            ("Conv2d", (64, 24, 24), 18_496),
            ("Conv2d", (128, 10, 10), 73_856),
            ("Conv2d", (256, 8, 8), 295_168),
            ("Linear", (50,), 204_850),
            ("Linear", (10,), 510),
        ]
    )
    assert len(expected) == 6
    assert ours == expected


def test_era_s6_reproduces_its_reference_exactly():
    cfg = compose_config(["model=era_s6"])
    model = build_model(cfg.model, cfg.dropout.p)
    assert count_params(model) == 17_430
    assert cfg.dropout.p == 0.1
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model) == 6
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in model) == 2


def test_widths_are_overridable_from_the_command_line():
    base = count_params(build_model(compose_config(["model=small"]).model))
    wider = compose_config(["model=small", "model.w2=20", "model.n3=2", "model.t1=null"])
    assert [b.width for b in wider.model.blocks] == [8, 20, 16]
    assert count_params(build_model(wider.model)) > base


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.w2=0"], "model block 2 width must be a positive integer, got 0"),
        (["model.t1=-4"], "model block 1 transition width must be a positive integer"),
        (["model.n1=13"], "feature map collapses"),
        (
            [
                "model=era_s5",
                "model.blocks.1.pool=true",
                "model.blocks.0.widths=[8,8,8,8,8,8,8,8,8,8]",
            ],
            "block 2 conv 2: the feature map collapses",
        ),
    ],
)
def test_impossible_architectures_are_named_before_training(overrides, message):
    with pytest.raises(ArchitectureError, match=message):
        build_model(compose_config(overrides).model)
