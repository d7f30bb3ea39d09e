"""The config groups: every option composes, validates and builds; a bad value, or a file
the program reads that is missing or damaged, gets one line."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
from hydra.errors import MissingConfigException

from mnist_sweep.errors import ArchitectureError, ConfigError, UserError
from mnist_sweep.run import memory
from mnist_sweep.run.build import build_setup
from mnist_sweep.run.checkpoint import load_resumable
from mnist_sweep.run.model import build_model, count_params, layer_output_shapes
from mnist_sweep.run.optim import build_optimizer, build_scheduler
from mnist_sweep.schema import validate
from mnist_sweep.search import confirm, report
from tests.conftest import CONF_DIR, REPO, compose_config, run_cli

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
    assert ("experiment", "smallest") in found and ("experiment", "under_4k") in found
    for option in ["sgd", "adam", "adamw"]:
        assert ("optimizer", option) in found
    for option in ["onecycle", "step", "cosine", "none"]:
        assert ("scheduler", option) in found


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_option_composes_validates_and_builds(group: str, option: str):
    cfg = compose_config([f"{group}={option}"])
    validate(cfg)
    assert cfg.target_acc == 99.4
    model = build_model(cfg.model, cfg.dropout.p, cfg.dropout.placement)
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    optimizer = build_optimizer(cfg.optimizer, model)
    assert optimizer.param_groups[0]["lr"] == cfg.optimizer.lr
    scheduler = build_scheduler(cfg.scheduler, optimizer, steps_per_epoch=10, epochs=3)
    for _ in range(30):  # a full run's worth of steps must be valid
        optimizer.step()
        scheduler.step()


@pytest.mark.parametrize(
    ("group", "listed"), [("experiment", "smallest"), ("hparams_search", "screen")]
)
def test_a_misspelt_option_of_an_unset_group_is_refused_with_the_choices(group, listed):
    # Both groups default to null; a name with no file must not fall back to it.
    with pytest.raises(MissingConfigException, match=f"Could not find '{group}/nope'") as error:
        compose_config([f"{group}=nope"])
    assert listed in str(error.value)


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


def test_a_net_too_large_for_memory_is_refused_with_its_size_before_allocation():
    with pytest.raises(ArchitectureError) as error:
        build_setup(compose_config(["model.w1=100000"]))  # 360 GB of weights
    message = str(error.value)
    assert message.startswith("model: 90,002,104,138 params (360.0 GB) and ")
    assert "per batch of 128" in message
    assert message.endswith("lower the model's widths or data.batch_size")


def test_the_memory_estimate_counts_weights_and_a_batchs_activations(monkeypatch):
    with torch.device("meta"):  # how a net too large to build is measured
        skeleton = build_model(compose_config().model)
    params, activations = count_params(skeleton), 2 * memory.activations_per_image(skeleton)
    assert params == 4882
    # Every layer's output for 2 images: more than the first conv's alone (8 x 26 x 26 each).
    assert activations > 2 * 8 * 26 * 26
    # A net that fits is measured by one real image: the same count as on the meta device.
    assert 2 * memory.activations_per_image(build_model(compose_config().model)) == activations
    monkeypatch.setattr(memory, "device_memory", lambda device: 10**6)
    with pytest.raises(ArchitectureError, match="more than this machine's 1.0 MB of memory"):
        build_setup(compose_config())


def _typed(value: Any) -> str:
    """A value as an override types it."""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _search_points(preset: str) -> list[list[str]]:
    """Overrides for a search preset's corners (every dimension at its lowest, then its
    highest) and for each of its queued starting trials."""
    sweeper = compose_config([f"hparams_search={preset}"], return_hydra_config=True).hydra.sweeper
    parser = OverridesParser.create()
    low, high = [], []
    for key, text in sweeper.params.items():
        value = parser.parse_override(f"{key}={text}").value()
        if isinstance(value, RangeSweep):
            ends = [value.start, value.stop - value.step]
        elif isinstance(value, IntervalSweep):
            ends = [value.start, value.end]
        elif isinstance(value, ChoiceSweep):
            ends = [value.list[0], value.list[-1]]
        else:
            ends = [value, value]
        low.append(f"{key}={_typed(ends[0])}")
        high.append(f"{key}={_typed(ends[1])}")
    queued = [[f"{k}={_typed(v)}" for k, v in point.items()] for point in sweeper.enqueue]
    return [low, high, *queued]


SEARCH_POINTS = [
    (preset, i, point)
    for preset in sorted(p.stem for p in (CONF_DIR / "hparams_search").glob("*.yaml"))
    for i, point in enumerate(_search_points(preset))
]


@pytest.mark.slow  # a compose per point; the quick loop checks each space whole (test_space)
@pytest.mark.parametrize(
    ("preset", "point"),
    [(preset, point) for preset, _, point in SEARCH_POINTS],
    ids=[f"{preset}-{i}" for preset, i, _ in SEARCH_POINTS],
)
def test_every_search_point_validates(preset: str, point: list[str]):
    validate(compose_config([f"hparams_search={preset}", *point]))


# What a user may type wrong, and the one line it gets.
BAD_VALUES = [
    ("trainer.epochs=0", "trainer.epochs=0: must be >= 1"),
    ("optimizer.lr=-1", "optimizer.lr=-1: must be > 0"),
    ("data.batch_size=0", "data.batch_size=0: must be in [1, 60000]"),
    ("model.w1=0", "model.w1=0: must be >= 1"),
    ("model.w1=3.5", "model.w1=3.5: must be an integer"),
    ("model.w1=null", "model.w1=null: must be set (only t1..t3 take null)"),
    ("model.t1=-4", "model.t1=-4: must be >= 0"),
    ("model.num_classes=5", "model.num_classes=5: must be >= 10"),
    ("dropout.p=1.5", "dropout.p=1.5: must be in [0, 1)"),
    ("dropout.placement=everywhere", "dropout.placement='everywhere': must be one of unit, block"),
    ("trainer.device=gpu", "trainer.device='gpu': must be one of auto, cpu, cuda, cuda:N"),
    ("trainer.precision=16", "trainer.precision=16: must be one of 32, bf16"),
    ("trainer.label_smoothing=1", "trainer.label_smoothing=1: must be in [0, 1)"),
    ("trainer.threads=0", "trainer.threads=0: must be >= 1"),
    ("trainer.resume=maybe", "trainer.resume='maybe': must be true or false"),
    ("data.augment.p=2", "data.augment.p=2: must be in [0, 1]"),
    ("data.eval_batch_size=0", "data.eval_batch_size=0: must be >= 1"),
    ("data.val_size=70000", "data.val_size=70000: must be in [0, 60000)"),
    ("scheduler.pct_start=0", "scheduler.pct_start=0: must be in (0, 1)"),
    (
        "scheduler.anneal_strategy=exp",
        "scheduler.anneal_strategy='exp': must be one of cos, linear",
    ),
    ("target_acc=150", "target_acc=150: must be in (0, 100]"),
    ("optimizer.lr=abc", "optimizer.lr='abc': must be a number"),
    ("optimizer.lr=inf", "optimizer.lr=inf: must be a finite number"),
    ("data.root=''", "data.root='': must not be empty"),
    (
        "+optimizer.lrr=0.1",
        "optimizer.lrr: unknown key (allowed: _target_, _partial_, lr, momentum, nesterov, "
        "weight_decay, dampening)",
    ),
    ("~optimizer.lr", "optimizer.lr: missing (a required key)"),
    (
        "optimizer._target_=torch.optim.RMSprop",
        "optimizer._target_='torch.optim.RMSprop': must be one of torch.optim.SGD, "
        "torch.optim.Adam, torch.optim.AdamW",
    ),
    ("optimizer=adam +optimizer.betas=[0.9]", "optimizer.betas=[0.9]: must hold exactly 2 values"),
    ("average.kind=mean", "average.kind='mean': must be one of none, ema, swa"),
    ("average=ema average.decay=1", "average.decay=1: must be in (0, 1)"),
    ("average=swa average.start=1.5", "average.start=1.5: must be in [0, 1)"),
    ("scheduler=step scheduler.every_epochs=0", "scheduler.every_epochs=0: must be >= 1"),
    ("model=era_s6 model.blocks.0.widths=[8,0]", "model.blocks.0.widths.1=0: must be >= 1"),
    ("model.blocks=[]", "model.blocks=[]: must not be empty"),
    ("model.pad1=2", "model.pad1=2: must be one of 0, 1"),
    # Rules across keys name the key to change, and say how.
    (
        "data.val_size=59950",
        "data.val_size=59950: leaves 50 of 60,000 training images, less than one batch "
        "(data.batch_size=128); lower data.val_size or data.batch_size",
    ),
    (
        "data.train_subset=100",
        "data.train_subset=100: is less than one batch (data.batch_size=128); "
        "raise it or lower data.batch_size",
    ),
    (
        "optimizer.momentum=0",
        "optimizer.nesterov=true: needs optimizer.momentum > 0 and optimizer.dampening=0; "
        "set optimizer.nesterov=false or change those",
    ),
    (
        "data.augment.scale=0.8 data.augment.strength=1.5",
        "data.augment.scale=0.8: times data.augment.strength=1.5 reaches 1, so a zoom of 0 "
        "could be drawn; lower either",
    ),
    (
        "model=era_s6 model.blocks.2.padding=[1,0,1]",
        "model.blocks.2.padding=[1, 0, 1]: needs one entry per conv, 2 here; or one 0 or 1",
    ),
    (
        "model.fc_hidden=[50]",
        "model.fc_hidden=[50]: is only read by model.head=fc (here gap); set model.fc_hidden=[]",
    ),
]


@pytest.mark.parametrize(("overrides", "line"), BAD_VALUES, ids=[o for o, _ in BAD_VALUES])
def test_a_bad_value_gets_one_line_naming_key_value_and_range(overrides: str, line: str):
    cfg = compose_config(overrides.split())
    with pytest.raises(ConfigError) as caught:
        validate(cfg)
    assert str(caught.value) == line


def test_a_number_typed_for_the_precision_is_accepted():
    validate(compose_config(["trainer.precision=32"]))  # the command line reads it as an int


def test_an_unresolvable_interpolation_is_one_line():
    with pytest.raises(ConfigError, match=r"^model.w1: Interpolation key 'nowhere' not found$"):
        validate(compose_config(["model.w1=${nowhere}"]))


@pytest.mark.slow
def test_the_cli_refuses_a_bad_value_before_reading_data(tmp_path):
    # No data there: the config's line, not "MNIST not found", shows the order.
    result = run_cli("trainer.epochs=0", cwd=tmp_path, env={"MNIST_DATA": str(tmp_path / "no")})
    assert result.returncode == 1
    assert result.stderr == "error: trainer.epochs=0: must be >= 1\n"


# Every file the program reads, missing or damaged, gets one line too.


def _damaged_checkpoints(tmp_path: Path) -> dict[str, Path]:
    """Run folders whose checkpoint.pt is garbage, cut short, or not one this project wrote."""
    whole = tmp_path / "whole.pt"
    torch.save({"state_dict": {"w": torch.zeros(1000)}, "config": {}, "epoch": 1}, whole)
    runs = {}
    for name, write in {
        "garbage": lambda p: p.write_bytes(b"not a checkpoint"),
        "cut short": lambda p: p.write_bytes(whole.read_bytes()[:-100]),
        "a list": lambda p: torch.save([1, 2], p),
        "no training state inside": lambda p: torch.save(
            {"state_dict": {}, "config": {}, "epoch": 1, "resume": {"metrics": {}}}, p
        ),
    }.items():
        (tmp_path / name).mkdir()
        write(tmp_path / name / "checkpoint.pt")
        runs[name] = tmp_path / name
    return runs


def test_a_damaged_checkpoint_is_one_line_saying_how_to_start_over(tmp_path):
    for name, run_dir in _damaged_checkpoints(tmp_path).items():
        with pytest.raises(UserError) as caught:
            load_resumable(run_dir, {})
        line = str(caught.value)
        assert "\n" not in line, name
        assert line.startswith(f"{run_dir / 'checkpoint.pt'} "), name
        assert line.endswith("run again without trainer.resume=true to start this run over")


@pytest.mark.parametrize(
    ("storage", "says"),
    [
        ("nonsense", "error: storage nonsense is not a database URL"),
        ("sqlite:///{tmp}/damaged.db", "error: storage sqlite:///{tmp}/damaged.db is damaged"),
        ("sqlite:///{tmp}/none.db", "error: no study database at {tmp}/none.db"),
    ],
)
def test_report_on_a_storage_it_cannot_read_is_one_line(tmp_path, capsys, storage, says):
    (tmp_path / "damaged.db").write_bytes(b"not a database")
    storage, says = storage.format(tmp=tmp_path), says.format(tmp=tmp_path)
    try:
        code = report.main(["--study", "x", "--storage", storage, "--out", str(tmp_path)])
    except SystemExit as e:  # a storage error ends the command at its boundary
        code = e.code
    stderr = capsys.readouterr().err
    assert code == 1
    (line,) = stderr.strip().splitlines()
    assert line.startswith(says), line


def test_report_names_a_study_that_is_not_there(tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/optuna.db"
    optuna.create_study(study_name="there", storage=url)
    assert report.main(["--study", "missing", "--storage", url]) == 1
    assert capsys.readouterr().err == f"error: no study 'missing' in {url}\n"


def _sweep_with(tmp_path: Path, winner: Any) -> Path:
    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / "winner.json").write_text(json.dumps(winner))
    return tmp_path / "sweep"


@pytest.mark.parametrize(
    ("winner", "says"),
    [
        (None, "winner.json ([Errno 2] No such file or directory"),
        ([1], "winner.json is damaged (top level: Input should be an object); write it again"),
        ({"params": 100}, "winner.json is damaged (top level: no overrides, run_dir, target_acc)"),
        ({"front": [{"trial": 1}]}, "winner.json is damaged (front.0.params: Field required)"),
        (
            {"params": 100, "overrides": [], "run_dir": "{tmp}/gone", "target_acc": 99.4},
            "the winner's run folder {tmp}/gone is missing or damaged",
        ),
    ],
)
def test_confirm_on_a_sweep_it_cannot_read_is_one_line(tmp_path, capsys, winner, says):
    if winner is None:
        (tmp_path / "sweep").mkdir()
        sweep = tmp_path / "sweep"
    else:
        text = json.dumps(winner).replace("{tmp}", str(tmp_path))
        sweep = _sweep_with(tmp_path, json.loads(text))
    with pytest.raises(SystemExit) as stopped:
        confirm.main([str(sweep)])
    assert stopped.value.code == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: ") and says.format(tmp=tmp_path) in line, line
