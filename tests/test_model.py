"""The model family and the recipe pieces, without training: fast unit tests."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from mnist_sweep.errors import ConfigError
from mnist_sweep.run.averaging import build_average
from mnist_sweep.run.data import augment_batch, augmentation, random_brightness_contrast
from mnist_sweep.run.model import Dropout, build_model, count_params
from mnist_sweep.run.optim import build_optimizer, build_scheduler
from mnist_sweep.schema import validate
from tests.conftest import compose_config


def conv_bn(cin: int, cout: int, bias: bool) -> int:
    """Parameters of one 3x3 conv (with or without bias) followed by BatchNorm."""
    return 9 * cin * cout + (cout if bias else 0) + 2 * cout


def record_arithmetic(bias: bool) -> int:
    blocks = [(1, 4), (4, 4), (4, 4), (4, 8), (8, 8), (8, 8), (8, 8), (8, 8), (8, 8)]
    return sum(conv_bn(cin, cout, bias) for cin, cout in blocks) + 8 * 10 + 10  # 8 -> 10 head


def test_record_preset_has_the_published_parameter_count():
    cfg = compose_config(["model=record_3762"])
    assert count_params(build_model(cfg.model)) == record_arithmetic(bias=True) == 3762
    bias_free = compose_config(["model=record_3762", "model.conv_bias=false"])
    assert count_params(build_model(bias_free.model)) == record_arithmetic(bias=False) == 3702


def test_record_preset_has_the_published_layout():
    cfg = compose_config(["experiment=record_3762"])
    model = build_model(cfg.model, cfg.dropout.p, cfg.dropout.placement)
    convs = [m for m in model if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [4, 4, 4, 8, 8, 8, 8, 8, 8]
    assert all(c.padding == (1, 1) for c in convs)
    assert sum(isinstance(m, nn.MaxPool2d) for m in model) == 2
    assert sum(isinstance(m, Dropout) for m in model) == 2  # between blocks 1-2 and 2-3
    assert isinstance(model[-1], nn.Linear) and model[-1].in_features == 8
    # ...and the published recipe.
    assert cfg.data.batch_size == 32 and cfg.optimizer.lr == 0.1 and cfg.trainer.epochs == 15


def two_conv_blocks_arithmetic(w1: int, w2: int, w3: int, t1: int) -> int:
    """The `smallest` layout: three blocks of two bias-free 3x3 conv units, a 1x1
    transition after block 1, GAP and a linear layer to 10 classes."""
    convs = [(1, w1), (w1, w1), (t1, w2), (w2, w2), (w2, w3), (w3, w3)]
    return sum(conv_bn(cin, cout, False) for cin, cout in convs) + w1 * t1 + w3 * 10 + 10


@pytest.mark.parametrize(
    ("experiment", "widths", "expected"),
    [
        ("ladder_5568", (7, 12, 13, 5), 5568),
        ("teacher_8493", (9, 15, 16, 6), 8493),
        ("teacher_8128", (5, 20, 11, 5), 8128),
    ],
)
def test_the_answer_experiments_have_their_stated_parameter_counts(experiment, widths, expected):
    cfg = compose_config([f"experiment={experiment}"])
    model = build_model(cfg.model, cfg.dropout.p, cfg.dropout.placement)
    assert count_params(model) == two_conv_blocks_arithmetic(*widths) == expected
    convs = [m for m in model if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [widths[0]] * 2 + [widths[3]] + [widths[1]] * 2 + [
        widths[2]
    ] * 2
    # Block 2 is unpadded; both pools are there; the recipe ships an EMA, no dropout.
    assert [c.padding for c in convs if c.kernel_size == (3, 3)][2:4] == [(0, 0), (0, 0)]
    assert sum(isinstance(m, nn.MaxPool2d) for m in model) == 2
    assert cfg.average.kind == "ema" and cfg.dropout.p == 0 and cfg.trainer.epochs == 15


def separable_bn(cin: int, cout: int) -> int:
    """A depthwise 3x3 conv, a 1x1 conv to `cout` (both bias-free), then BatchNorm."""
    return 9 * cin + cin * cout + 2 * cout


def under_4k_arithmetic(w1: int, w2: int, w3: int) -> int:
    """The under_4k layout: two plain conv units of w1, then two separable units each of
    w2 and w3, GAP and a linear layer to 10 classes."""
    units = [(w1, w2), (w2, w2), (w2, w3), (w3, w3)]
    plain = conv_bn(1, w1, False) + conv_bn(w1, w1, False)
    return plain + sum(separable_bn(*u) for u in units) + w3 * 10 + 10


def test_under_4k_is_separable_and_has_its_stated_parameter_count():
    cfg = compose_config(["experiment=under_4k"])
    model = build_model(cfg.model, cfg.dropout.p, cfg.dropout.placement)
    assert count_params(model) == under_4k_arithmetic(8, 22, 26) == 3752
    depthwise = [m for m in model if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert [(m.in_channels, m.groups, m.bias) for m in depthwise] == [
        (c, c, None) for c in (8, 22, 22, 26)
    ]
    # Block 2 stays unpadded and block 3 padded: the maps are 14 -> 12 -> 10 -> 5 -> 5 -> 5.
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert [m.padding for m in depthwise] == [(0, 0), (0, 0), (1, 1), (1, 1)]
    assert cfg.average.kind == "ema" and cfg.dropout.p == 0 and cfg.distill.teacher is None


def test_sep_3671_is_under_4k_reshaped_with_its_teacher():
    cfg = compose_config(["experiment=sep_3671"])
    model = build_model(cfg.model, cfg.dropout.p, cfg.dropout.placement)
    assert count_params(model) == under_4k_arithmetic(7, 21, 28) == 3671
    assert (cfg.data.batch_size, cfg.data.augment.elastic) == (32, 34.0)
    assert (cfg.distill.teacher, cfg.distill.alpha, cfg.distill.temperature) == (
        "outputs/teacher_8128",
        0.8,
        4.0,
    )


def test_smallest_is_the_answer_that_held_on_two_draws():
    cfg = compose_config(["experiment=smallest"])
    assert count_params(build_model(cfg.model)) == 5568
    assert cfg.distill.get("teacher") is None  # no teacher to train or ship


def test_separable_knob_must_be_a_bool():
    with pytest.raises(ConfigError, match="model.sep2"):
        validate(compose_config(["model=small", "model.sep2=3"]))


@pytest.mark.parametrize("preset", ["tiny", "small", "medium"])
def test_presets_are_the_shared_template_with_other_knobs(preset: str):
    expected = {"tiny": 1046, "small": 4882, "medium": 14678}[preset]
    cfg = compose_config([f"model={preset}"])
    assert count_params(build_model(cfg.model)) == expected
    template = compose_config(["model=three_blocks"]).model
    assert set(cfg.model.keys()) == set(template.keys())


def test_dropout_placement_unit_or_block():
    cfg = compose_config(["model=small"])
    convs = sum(
        isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3) for m in build_model(cfg.model)
    )
    unit = build_model(cfg.model, 0.1, "unit")
    block = build_model(cfg.model, 0.1, "block")
    assert sum(isinstance(m, Dropout) for m in unit) == convs == 5
    assert sum(isinstance(m, Dropout) for m in block) == 2  # three blocks: after the first two
    assert count_params(unit) == count_params(block)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cpu_dropout_keeps_the_same_distribution(dtype):
    torch.manual_seed(0)
    layer = Dropout(0.1)
    dropped = 6554 / 65536  # p on the 16-bit grid
    x = torch.ones(1_000_000, dtype=dtype, requires_grad=True)
    out = layer(x)
    kept = out != 0
    assert out.dtype == dtype
    assert kept.float().mean().item() == pytest.approx(1 - dropped, abs=0.002)
    # Survivors scaled by 1 / (1 - rate): the layer stays unbiased.
    expected = torch.tensor(1 / (1 - dropped), dtype=dtype)
    assert torch.equal(out[kept], expected.expand(int(kept.sum())))
    out.sum().backward()
    assert torch.equal(x.grad != 0, kept)  # the gradient flows through the same mask
    layer.eval()
    assert torch.equal(layer(x), x)


def test_cpu_dropout_mask_is_fresh_per_call_and_follows_the_layout():
    torch.manual_seed(0)
    layer = Dropout(0.5)
    x = torch.ones(8, 16, 6, 6).to(memory_format=torch.channels_last)
    first, second = layer(x), layer(x)
    assert first.is_contiguous(memory_format=torch.channels_last)
    assert not torch.equal(first, second)
    # Every channel and position gets its own draw: no lane pattern repeats.
    kept = (first != 0).float()
    assert kept.mean(dim=(0, 2, 3)).min() > 0.25 and kept.mean(dim=(0, 1)).min() > 0.25
    torch.manual_seed(0)
    assert torch.equal(layer(x), first)  # seeded by torch's generator, like nn.Dropout


def test_transition_width_zero_means_no_transition():
    none = compose_config(["model=small", "model.t1=null"]).model
    zero = compose_config(["model=small", "model.t1=0"]).model
    assert count_params(build_model(none)) == count_params(build_model(zero))
    assert count_params(build_model(zero)) < count_params(build_model(compose_config([]).model))


def test_ema_average_warms_up_then_follows_the_weights():
    net = nn.Linear(1, 1, bias=False)
    nn.init.zeros_(net.weight)
    average = build_average(OmegaConf.create({"kind": "ema", "decay": 0.9}), net, total_steps=100)
    assert not average.started and average.eval_model(net) is net
    with torch.no_grad():
        net.weight.fill_(1.0)
    average.update(net)  # the first update copies the weights
    assert average.eval_model(net).weight.item() == pytest.approx(1.0)
    with torch.no_grad():
        net.weight.fill_(2.0)
    average.update(net)  # decay min(0.9, 2/11): mostly the new weights
    assert average.eval_model(net).weight.item() == pytest.approx(1 * 2 / 11 + 2 * 9 / 11)


def test_swa_average_starts_at_its_fraction_and_weighs_steps_equally():
    net = nn.Linear(1, 1, bias=False)
    average = build_average(OmegaConf.create({"kind": "swa", "start": 0.5}), net, total_steps=4)
    for step, value in enumerate([10.0, 20.0, 1.0, 3.0], start=1):
        with torch.no_grad():
            net.weight.fill_(value)
        average.update(net)
        assert average.started == (step >= 3)
    assert average.eval_model(net).weight.item() == pytest.approx(2.0)  # mean of 1 and 3


def test_brightness_contrast_stays_in_the_pixel_range_and_varies_per_image():
    mean, std = 0.1307, 0.3081
    pixels = torch.rand(64, 1, 28, 28)
    x = (pixels - mean) / std
    out = random_brightness_contrast(x, 0.3, 0.3, mean, std, torch.Generator().manual_seed(0))
    back = out * std + mean
    assert back.min() >= -1e-6 and back.max() <= 1 + 1e-6
    shift = (back - pixels).mean(dim=(1, 2, 3))
    assert shift.std() > 0.01  # each image gets its own change


def test_augmentation_chance_leaves_the_rest_untouched():
    cfg = compose_config(["data.augment.p=0.5", "data.augment.brightness=0.2"]).data
    ranges = augmentation(cfg.augment, cfg.mean, cfg.std)
    assert ranges is not None and ranges["p"] == 0.5
    x = torch.randn(400, 1, 28, 28)
    out = augment_batch(x, -0.4242, torch.Generator().manual_seed(0), **ranges)
    untouched = (out == x).flatten(1).all(1).float().mean().item()
    assert 0.35 < untouched < 0.65
    assert augmentation(compose_config(["data.augment.strength=0"]).data.augment, 0, 1) is None


def test_linear_one_cycle_rises_and_falls_in_straight_lines():
    cfg = compose_config(["experiment=record_3762"])
    optimizer = build_optimizer(cfg.optimizer, build_model(cfg.model))
    scheduler = build_scheduler(cfg.scheduler, optimizer, steps_per_epoch=15, epochs=15)
    lrs = []
    for _ in range(225):
        lrs.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == pytest.approx(0.05)
    assert max(lrs) == pytest.approx(0.1, rel=1e-3)
    peak = lrs.index(max(lrs))
    assert 28 <= peak <= 31  # 2 of 15 epochs
    falls = [a - b for a, b in zip(lrs[peak:-1], lrs[peak + 1 :], strict=True)]
    assert max(falls) - min(falls) < 1e-6  # a straight line down


def test_batchnorm_without_affine_saves_two_params_per_conv_channel():
    cfg = compose_config(["experiment=ladder_5568", "model.bn_affine=false"])
    model = build_model(cfg.model, cfg.dropout.p, cfg.dropout.placement)
    bn_channels = 2 * (7 + 12 + 13)  # two conv units per block, widths 7, 12, 13
    assert count_params(model) == 5568 - 2 * bn_channels
    norms = [m for m in model if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) == 6 and not any(m.affine for m in norms)
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize(
    ("name", "layer"),
    [("relu", nn.ReLU), ("silu", nn.SiLU), ("gelu", nn.GELU), ("hardswish", nn.Hardswish)],
)
def test_the_activation_is_a_knob_that_leaves_the_count_alone(name, layer):
    cfg = compose_config(["experiment=ladder_5568", f"model.activation={name}"])
    model = build_model(cfg.model, cfg.dropout.p, cfg.dropout.placement)
    assert count_params(model) == 5568
    assert sum(isinstance(m, layer) for m in model) == 6


def test_an_unknown_activation_is_named():
    with pytest.raises(ConfigError, match="model.activation"):
        validate(compose_config(["model.activation=tanh"]))


def test_elastic_distortion_moves_pixels_smoothly_and_by_its_alpha():
    from mnist_sweep.run.data import elastic_displacement

    x = torch.zeros(64, 1, 28, 28)
    gen = torch.Generator().manual_seed(0)
    field = elastic_displacement(x, alpha=8.0, sigma=4.0, generator=gen)
    assert field.shape == (64, 28, 28, 2)
    pixels = field * 14  # grid units back to pixels (the grid spans 2 over 28 pixels)
    assert 0.1 < pixels.abs().mean() < 8.0
    # Smooth: neighbouring pixels move almost together, unlike the raw noise.
    step = (pixels[:, 1:] - pixels[:, :-1]).abs().mean()
    assert step < 0.2 * pixels.abs().mean()
    again = elastic_displacement(x, 8.0, 4.0, torch.Generator().manual_seed(0))
    assert torch.equal(field, again)


def test_elastic_augmentation_is_one_more_key_of_the_augment_group():
    cfg = compose_config(["data.augment.elastic=6", "data.augment.strength=0.5"])
    validate(cfg)
    settings = augmentation(cfg.data.augment, 0.1307, 0.3081)
    assert settings["elastic"] == 3.0 and settings["elastic_sigma"] == 4.0
    x = torch.randn(8, 1, 28, 28)
    gen = torch.Generator().manual_seed(1)
    out = augment_batch(x, -0.42, gen, **{**settings, "degrees": 0, "translate": 0, "scale": 0})
    assert out.shape == x.shape and not torch.allclose(out, x)
    with pytest.raises(ConfigError, match="data.augment.elastic"):
        validate(compose_config(["data.augment.elastic=-1"]))
