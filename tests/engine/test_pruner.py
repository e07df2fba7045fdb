"""Pruning every architecture with every criterion, in both scopes, at 20% and 60%."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import prunekit as pk
from prunekit.engine.planner import AUTO_MIN_UNITS
from tests.engine.architectures import ARCHITECTURES, SqueezeNet, randomize_norms
from tests.engine.equivalence import assert_kept_weights_identical, masked_reference

CRITERIA = ["taylor", "l1", "l2", "random", "bn_scale"]
NO_BN = {
    "layer_scale",
    "grouped_multiplier",
    "embedding_head",
    "vit",
}  # groups without BatchNorm: bn_scale refuses


def _build(name: str) -> tuple[nn.Module, torch.Tensor]:
    build, shape = ARCHITECTURES[name]
    torch.manual_seed(0)
    return randomize_norms(build()).eval(), torch.randn(*shape)


def _feed_gradients(model: nn.Module, pruner: pk.Pruner, shape: tuple[int, ...]) -> None:
    gen = torch.Generator().manual_seed(1)
    for _ in range(2):
        model(torch.randn(4, *shape[1:], generator=gen)).pow(2).sum().backward()
        pruner.accumulate()


# bn_scale refuses groups without BatchNorm (tested below), so it skips those architectures
CASES = [(a, c) for a in ARCHITECTURES for c in CRITERIA if not (c == "bn_scale" and a in NO_BN)]


@pytest.mark.parametrize("level", [0.2, 0.6])
@pytest.mark.parametrize("scope", ["local", "global"])
@pytest.mark.parametrize(("arch", "criterion"), CASES)
def test_prune_is_exact_and_equivalent(arch: str, criterion: str, scope: str, level: float):
    model, x = _build(arch)
    shape = tuple(x.shape)
    # unit by unit (no rounding): the tightest test of the planner's arithmetic
    pruner = pk.Pruner(
        model,
        x,
        criterion=criterion,
        target=pk.Target(params=level),
        steps=2,
        scope=scope,
        seed=0,
        round_to=None,
    )
    while not pruner.done:
        if pruner.needs_grad:
            model.train()
            _feed_gradients(model, pruner, shape)
            model.eval()
        before = copy.deepcopy(model)
        report = pruner.step()
        measured = pk.measure(model, x)
        # the planner's prediction is exact
        assert report.planned["params"] == pytest.approx(report.achieved["params"], abs=1e-12)
        assert report.params == measured["params"] and report.macs == measured["macs"]
        # the pruned model computes what the unpruned one computes without those channels
        reference = masked_reference(before, report)
        with torch.no_grad():
            torch.testing.assert_close(model(x), reference(x), atol=1e-5, rtol=1e-5)
        assert_kept_weights_identical(before, model, report)
        # reported channel counts are the real ones
        for name, (_, after) in report.layers.items():
            module = dict(model.named_modules())[name]
            real = getattr(module, "out_channels", getattr(module, "out_features", None))
            assert real == after
    # the target is met, not overshot by more than a couple of small channel groups
    assert level - 1e-12 <= report.achieved["params"] < level + 0.06  # exactly on it, at best


def test_coupled_layers_stay_consistent_in_fire_modules():
    model, x = _build("squeezenet")
    pruner = pk.Pruner(model, x, criterion="l1", target=pk.Target(channels=0.5), scope="local")
    pruner.step()
    for fire in (model.fire2, model.fire3, model.fire4):
        squeeze = fire.squeeze[0].out_channels
        assert fire.squeeze[1].num_features == squeeze
        assert fire.expand1x1[0].in_channels == fire.expand3x3[0].in_channels == squeeze
    assert model.fire3.squeeze[0].in_channels == (
        model.fire2.expand1x1[0].out_channels + model.fire2.expand3x3[0].out_channels
    )
    assert model.conv10.in_channels == (
        model.fire4.expand1x1[0].out_channels + model.fire4.expand3x3[0].out_channels
    )


@pytest.mark.parametrize("scope", ["local", "global"])
def test_grouped_conv_with_channel_multiplier_loses_whole_groups(scope: str):
    model, x = _build("grouped_multiplier")
    out = model(x)
    before = [f.expand3x3[0].groups for f in (model.fire2, model.fire3, model.fire4)]
    assert before == [4, 4, 8]
    pruner = pk.Pruner(model, x, criterion="l1", target=pk.Target(params=0.6), scope=scope)
    report = pruner.step()
    assert 0.6 <= report.achieved["params"] < 0.66
    after = [f.expand3x3[0].groups for f in (model.fire2, model.fire3, model.fire4)]
    assert sum(after) < sum(before), after  # the grouped convs did lose groups
    for fire in (model.fire2, model.fire3, model.fire4):
        squeeze, e3 = fire.squeeze[0], fire.expand3x3[0]
        assert e3.groups == e3.in_channels == squeeze.out_channels >= 2  # never a plain conv
        assert e3.out_channels == 4 * e3.groups  # the channel multiplier is kept
        assert e3.weight.shape == (4 * e3.groups, 1, 3, 3)
        assert fire.expand1x1[0].in_channels == squeeze.out_channels
    assert model(x).shape == out.shape


def test_exact_channels_removed_by_l1():
    """Zeroed stem filters are exactly the ones l1 removes, with every coupled layer."""
    model, x = _build("resnet")
    with torch.no_grad():
        model.stem[0].weight[[1, 5, 9, 13]] = 0
        model.layer1.conv2.weight[[1, 5, 9, 13]] = 0
        model.layer1.conv1.weight[:, [1, 5, 9, 13]] = 0
        model.layer1.bn2.weight[[1, 5, 9, 13]] = 0
        model.layer1.bn2.bias[[1, 5, 9, 13]] = 0
        model.stem[1].weight[[1, 5, 9, 13]] = 0
        model.stem[1].bias[[1, 5, 9, 13]] = 0
        model.layer2.conv1.weight[:, [1, 5, 9, 13]] = 0
        model.layer2.down[0].weight[:, [1, 5, 9, 13]] = 0
    pruner = pk.Pruner(
        model, x, criterion="l1", target=pk.Target(channels=0.04), scope="global", round_to=None
    )
    report = pruner.step()
    # the stem, layer1's residual and both consumers lose exactly channels 1, 5, 9, 13
    assert sorted(report.removed["stem.0"]["out"]) == [1, 5, 9, 13]
    assert sorted(report.removed["layer1.conv2"]["out"]) == [1, 5, 9, 13]
    assert sorted(report.removed["layer2.down.0"]["in"]) == [1, 5, 9, 13]
    assert model.stem[0].out_channels == 12
    assert model.layer1.conv1.in_channels == 12
    assert model.layer1.bn2.num_features == 12
    assert model.layer2.conv1.in_channels == model.layer2.down[0].in_channels == 12
    assert model.layer1.conv1.out_channels == 16  # an independent group, untouched


def test_output_layers_are_never_pruned():
    model, x = _build("embedding_head")
    pruner = pk.Pruner(model, x, criterion="l1", target=pk.Target(params=0.6), scope="global")
    report = pruner.step()
    assert report.achieved["params"] >= 0.6  # reached by pruning everything else
    assert model.fc.out_features < 32 and model.conv1.out_channels < 12
    assert model.fc2.out_features == 24 and model.bn_out.num_features == 24
    assert "out" not in report.removed.get("fc2", {})
    assert model(x).shape == (1, 24)


def test_prune_outputs_removes_output_features_and_says_which_are_kept():
    model, x = _build("embedding_head")
    parent = copy.deepcopy(model)
    others = [model.conv1, model.conv2, model.fc]  # only the embedding's own channels go
    pruner = pk.Pruner(model, x, criterion="l1", target=pk.Target(channels=0.25),
                       ignored_layers=others, round_to=None, prune_outputs=True)  # fmt: skip
    assert [g.name for g in pruner.groups if g.reaches_output] == ["fc2"]
    assert pruner.output_kept is None  # whole before the step
    pruner.step()
    kept = pruner.output_kept
    assert model.fc2.out_features == model.bn_out.num_features == 24 - 6 == len(kept)
    assert kept == pruner.kept["fc2"] and kept == sorted(kept)
    batch = torch.randn(4, *x.shape[1:])
    with torch.no_grad():  # the pruned model returns the parent's output on the kept features
        torch.testing.assert_close(model(batch), parent(batch)[:, kept], atol=1e-6, rtol=0)


def test_ignored_layers_keep_their_channels():
    model, x = _build("squeezenet")
    pruner = pk.Pruner(
        model, x, criterion="l1", target=pk.Target(params=0.3), ignored_layers=[model.conv1[0]]
    )
    report = pruner.step()
    assert report.achieved["params"] >= 0.3
    assert model.conv1[0].out_channels == 16 and model.fire2.squeeze[0].in_channels == 16
    assert "conv1.0" not in report.removed
    changed = {name for name, (b, a) in report.layers.items() if b != a}
    assert "fire2.squeeze.0" in changed and "conv1.0" not in changed


def test_round_to_keeps_multiples():
    model = SqueezeNet(width=8).eval()
    x = torch.randn(1, 3, 32, 32)
    pruner = pk.Pruner(
        model, x, criterion="l1", target=pk.Target(params=0.3), round_to=4, scope="global"
    )
    report = pruner.step()
    assert 0.3 <= report.achieved["params"] < 0.36
    changed = {name: after for name, (before, after) in report.layers.items() if before != after}
    assert len(changed) >= 3, report.layers
    assert all(after % 4 == 0 for after in changed.values()), changed


@pytest.mark.parametrize("scope", ["local", "global"])
def test_auto_rounding_keeps_multiples_of_8_in_wide_groups(scope: str):
    model = SqueezeNet(width=8).eval()  # expand layers of 32 and 64 channels
    x = torch.randn(1, 3, 32, 32)
    pruner = pk.Pruner(model, x, criterion="l1", target="params=0.4", scope=scope)
    report = pruner.step()
    assert report.achieved["params"] >= 0.4
    wide = {n: after for n, (before, after) in report.layers.items() if before >= AUTO_MIN_UNITS}
    assert wide and all(after % 8 == 0 for after in wide.values()), report.layers


def test_auto_rounding_holds_as_a_group_narrows_below_the_threshold():
    model = SqueezeNet(width=8).eval()  # fire4's expand layers: 64 channels each
    x = torch.randn(1, 3, 32, 32)
    pruner = pk.Pruner(model, x, criterion="l1", target="params=0.7", steps=4)
    widths = []
    while not pruner.done:
        widths.append(pruner.step().layers["fire4.expand1x1.0"][1])
    assert min(widths) < AUTO_MIN_UNITS and all(w % 8 == 0 for w in widths), widths
    # a pruner rebuilt on the pruned model (resume) keeps judging by the original widths
    state = pruner.state_dict()
    resumed = pk.Pruner(model, x, criterion="l1", target="params=0.7", steps=4)
    resumed.load_state_dict(state)
    assert resumed.widths == pruner.widths and resumed.widths["fire4.expand1x1.0"] == 64


def test_auto_rounding_prunes_narrow_groups_unit_by_unit():
    model = SqueezeNet(width=8).eval()
    pruner = pk.Pruner(model, torch.randn(1, 3, 32, 32), criterion="l1", target="params=0.4")
    layers = pruner.step().layers
    assert layers["fire4.expand1x1.0"] == [64, 48]  # 64 >= AUTO_MIN_UNITS: a multiple of 8
    assert layers["fire2.expand1x1.0"] == [32, 23]  # narrower: unit by unit


def test_min_channels_is_respected():
    model, x = _build("resnet")
    pruner = pk.Pruner(
        model,
        x,
        criterion="l1",
        target=pk.Target(channels=0.7),
        min_channels=6,
        scope="global",
        round_to=None,
    )
    report = pruner.step()
    assert report.achieved["channels"] >= 0.7
    widths = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert min(widths) == 6, widths  # the limit was reached, and held


def test_bn_scale_refuses_groups_without_batchnorm():
    model, x = _build("embedding_head")
    pruner = pk.Pruner(model, x, criterion="bn_scale", target=pk.Target(params=0.2))
    with pytest.raises(pk.PrunekitError, match="bn_scale needs a BatchNorm.*'fc'"):
        pruner.step()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"target": pk.Target(params=0.9), "min_channels": 12}, "out of reach"),
        ({"steps": 0}, "steps=0 is .*integer >= 1"),
        ({"scope": "everywhere"}, "scope='everywhere' is .*local.*global"),
        ({"criterion": "tayler"}, "unknown criterion 'tayler': did you mean 'taylor'"),
        ({"schedule": "lin"}, "unknown schedule 'lin'"),
        ({"round_to": 0}, "round_to=0 is .*'auto'.*>= 1"),
        ({"criterion": "taylor", "criterion_options": {"variant": "x"}}, "variant 'x'"),
        ({"criterion": "l1", "criterion_options": {"colour": 1}}, "no option 'colour'"),
    ],
)
def test_bad_arguments_get_one_line_errors(kwargs, message):
    model, x = _build("resnet")
    with pytest.raises(pk.PrunekitError, match=message) as info:
        pk.Pruner(model, x, **{"target": pk.Target(params=0.3), **kwargs})
    assert "\n" not in str(info.value)


def test_untraceable_model_names_the_module():
    class Broken(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3)
            self.bad = nn.Linear(5, 5)

        def forward(self, x):
            return self.bad(self.conv(x))

    with pytest.raises(pk.PrunekitError, match="in module 'bad'"):
        pk.Pruner(Broken(), torch.randn(1, 3, 8, 8), target=pk.Target(params=0.2))


def test_steps_follow_the_linear_schedule():
    model = SqueezeNet(width=8).eval()
    x = torch.randn(1, 3, 32, 32)
    pruner = pk.Pruner(
        model,
        x,
        criterion="l1",
        schedule="linear",
        target=pk.Target(params=0.5),
        steps=5,
        scope="global",
        round_to=None,
    )
    achieved = [pruner.step().achieved["params"] for _ in range(5)]
    for k, value in enumerate(achieved, start=1):
        assert value == pytest.approx(0.5 * k / 5, abs=0.02)
    with pytest.raises(pk.PrunekitError, match="all 5 steps are done"):
        pruner.step()


def test_constant_schedule_removes_equal_channel_counts():
    model = SqueezeNet(width=8).eval()
    x = torch.randn(1, 3, 32, 32)
    pruner = pk.Pruner(
        model,
        x,
        criterion="l1",
        schedule="constant",
        target=pk.Target(params=0.4),
        steps=4,
        scope="global",
        round_to=None,
    )
    counts = [pruner.step().channels for _ in range(4)]
    removed = [a - b for a, b in zip([pruner.base["channels"], *counts[:-1]], counts)]
    assert removed[0] > 0 and max(removed[:3]) - min(removed[:3]) <= 1, removed
    assert 1 - pk.measure(model, x)["params"] / pruner.base["params"] >= 0.4


def test_macs_target():
    model, x = _build("mobilenetv2")
    base = pk.measure(model, x)["macs"]
    report = pk.Pruner(model, x, criterion="l2", target=pk.Target(macs=0.3)).step()
    achieved = 1 - pk.measure(model, x)["macs"] / base
    assert achieved == pytest.approx(report.achieved["macs"], abs=1e-12)
    assert 0.3 <= achieved < 0.36


@pytest.mark.parametrize(
    ("key", "other"),
    [
        ("criterion", {"criterion": "l2"}),
        ("scope", {"scope": "global"}),
        ("rank", {"rank": "per_cost"}),
        ("steps", {"steps": 3}),
    ],
)
def test_resuming_with_other_settings_is_refused(key, other):
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 3))
    example = torch.randn(1, 3, 12, 12)
    settings = {"criterion": "l1", "target": "params=0.3", "steps": 2, "round_to": None}
    first = pk.Pruner(model, example, **settings)
    first.step()
    state = first.state_dict()
    again = pk.Pruner(model, example, **{**settings, **other})
    with pytest.raises(pk.PrunekitError, match=f"the saved pruning state has {key} "):
        again.load_state_dict(state)
    same = pk.Pruner(model, example, **settings)
    same.load_state_dict(state)
    assert same.step_index == 1 and same.kept == first.kept


def test_kept_maps_the_pruned_outputs_to_the_unpruned_layer():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 3))
    with torch.no_grad():  # channels 1, 4 and 6 are the weakest: l1 removes them
        for c, scale in enumerate([5, 0.01, 5, 5, 0.02, 5, 0.03, 5]):
            model[0].weight[c].fill_(scale)
    pruner = pk.Pruner(model, torch.randn(1, 3, 12, 12), criterion="l1", round_to=None,
                       target="channels=0.3", steps=1)  # fmt: skip
    pruner.step()
    assert pruner.kept == {"0": [0, 2, 3, 5, 7]}


def test_ghost_modules_lose_a_channel_and_its_depthwise_copy_together():
    """In a ghost module summed with its input, input channel i and half + i go together:
    one unit (torch-pruning's groups record each position once, which hides it)."""
    model, x = _build("ghostnet")
    pruner = pk.Pruner(model, x, criterion="l1", target=pk.Target(params=0.3), round_to=None)
    group = next(g for g in pruner.groups if g.name == "blocks.1.shortcut.0")
    assert group.num_units == 8  # the 16 channels of the stem and of block 0's output, paired
    assert group.blocks == [[u, u + 8] for u in range(8)]
    before = copy.deepcopy(model)
    report = pruner.step()
    assert report.planned["params"] == pytest.approx(report.achieved["params"], abs=1e-12)
    stem = model.stem[0].out_channels
    assert stem % 2 == 0 and stem < 16
    assert model.blocks[0].project.main[0].out_channels == stem // 2
    with torch.no_grad():
        torch.testing.assert_close(
            model(x), masked_reference(before, report)(x), atol=1e-5, rtol=1e-5
        )


def test_pixel_shuffles_map_one_channel_to_r_squared():
    """Through ``pixel_unshuffle(2)`` a stem channel is 4 channels of the body's input; before
    ``PixelShuffle(2)`` 4 channels of the upsampler (and of its BatchNorm) are one unit."""
    model, x = _build("subpixel")
    pruner = pk.Pruner(model, x, criterion="l1", target=pk.Target(params=0.4), round_to=None)
    assert {g.name: g.num_units for g in pruner.groups} == {"stem.0": 8, "body.0": 16, "up.0": 16}
    up = next(g for g in pruner.groups if g.name == "up.0")
    assert up.blocks == [[4 * u + k for k in range(4)] for u in range(16)]
    pruner.step()
    assert model.body[0].in_channels == 4 * model.stem[0].out_channels < 32
    assert model.up[0].out_channels == model.up[1].num_features == 4 * model.head.in_channels < 64


def test_channel_shuffles_remove_one_channel_of_every_group_together():
    """Channel ``b`` of each of a shuffle's ``g`` groups is one unit (a column), so every
    group keeps the same channels; through ShuffleNetV2's concat + shuffle in 2 groups, a
    channel of one branch goes with the same channel of the other."""
    model, x = _build("shufflenet")
    pruner = pk.Pruner(model, x, criterion="l1", target=pk.Target(params=0.4), round_to=None)
    assert pruner.left_whole == {}
    mix = next(g for g in pruner.groups if g.name == "mix.0")
    assert mix.num_units == 8
    assert mix.blocks == [[b, b + 8, b + 16, b + 24] for b in range(8)]
    pair = next(g for g in pruner.groups if g.name == "units.0.branch2.5")
    assert pair.num_units == 16 and pair.blocks is None
    assert {s.module_name for s in pair.slices} >= {"units.0.branch1.2", "units.0.branch2.5"}
    before = copy.deepcopy(model)
    report = pruner.step()
    unit0 = model.units[0]
    assert unit0.branch1[2].out_channels == unit0.branch2[5].out_channels < 16
    assert model.units[1].branch2[0].in_channels == 2 * unit0.branch2[5].out_channels
    assert model.post[0].in_channels == model.mix[0].out_channels < 32
    assert model.mix[0].out_channels % 4 == 0
    with torch.no_grad():
        torch.testing.assert_close(
            model(x), masked_reference(before, report)(x), atol=1e-5, rtol=1e-5
        )


class _Chunked(nn.Module):
    """A stem whose 8 channels are split in two: one half passes, the other goes through a
    conv, and the halves are concatenated (ShuffleNetV2's unit without its shuffle);
    ``split`` picks how ``forward()`` splits."""

    def __init__(self, split: str = "chunk") -> None:
        super().__init__()
        self.split = split
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.branch = nn.Conv2d(4, 4, 3, padding=1)
        self.head = nn.Conv2d(8, 5, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        if self.split == "chunk":
            a, b = x.chunk(2, 1)
        elif self.split == "constant":
            a, b = torch.split(x, 4, 1)
        elif self.split == "unequal":
            a, b, c = torch.split(x, [4, 2, 2], 1)
            b = torch.cat([b, c], 1)
        else:  # "both": one operation reads both pieces
            a, b = x.chunk(2, 1)
            return self.head(torch.cat([a * b, self.branch(b)], 1))
        return self.head(torch.cat([a, self.branch(b)], 1))


def test_a_chunk_of_the_channels_removes_one_channel_of_every_piece_together():
    """``x.chunk(2, 1)`` keeps its pieces equal only if both lose the same channels: channel
    ``i`` and ``4 + i`` of the stem are one unit, each piece's consumers lose channel ``i``."""
    torch.manual_seed(0)
    model = randomize_norms(_Chunked()).eval()
    x = torch.randn(2, 3, 8, 8)
    pruner = pk.Pruner(model, x, criterion="l1", target=pk.Target(params=0.3), round_to=None)
    assert pruner.left_whole == {}
    stem = next(g for g in pruner.groups if g.name == "stem.0")
    assert stem.num_units == 4 and stem.blocks == [[i, i + 4] for i in range(4)]
    assert {s.module_name for s in stem.slices} == {"stem.0", "stem.1", "branch", "head"}
    before = copy.deepcopy(model)
    report = pruner.step()
    kept = model.stem[0].out_channels
    assert kept % 2 == 0 and kept < 8 and model.stem[1].num_features == kept
    assert model.branch.in_channels == kept // 2
    assert model.head.in_channels == kept // 2 + model.branch.out_channels
    with torch.no_grad():
        torch.testing.assert_close(
            model(x), masked_reference(before, report)(x), atol=1e-5, rtol=1e-5
        )


def test_a_concat_of_both_halves_of_a_chunk_keeps_them_equal():
    """YOLOv8's C2f concatenates both halves of its chunk beside the convs grown from the
    second: each half's channel ``i`` goes together, at its own offset in the concat."""
    model, x = _build("yolo_c2f")
    pruner = pk.Pruner(model, x, criterion="l1", target=pk.Target(params=0.3), round_to=None)
    assert pruner.left_whole == {}
    cv1 = next(g for g in pruner.groups if g.name == "blocks.0.cv1.0")
    assert cv1.num_units == 16 and cv1.blocks == [[i, i + 16] for i in range(16)]
    before = copy.deepcopy(model)
    report = pruner.step()
    block = model.blocks[0]
    half = block.cv1[0].out_channels // 2
    assert block.cv1[0].out_channels == 2 * half < 32 and block.m[0][0].in_channels == half
    grown = block.m[0][0].out_channels + block.m[1][0].out_channels
    assert block.cv2[0].in_channels == 2 * half + grown
    with torch.no_grad():
        torch.testing.assert_close(
            model(x), masked_reference(before, report)(x), atol=1e-5, rtol=1e-5
        )


@pytest.mark.parametrize(
    ("split", "reason"),
    [
        ("constant", "one channel less in each of its pieces broke the model"),
        ("unequal", "its pieces differ in size"),
        ("both", "an operation after it reads several of its pieces at once"),
    ],
)
def test_a_split_that_cannot_follow_the_channels_leaves_its_groups_whole(split, reason):
    """A split by constant sizes (the trace cannot tell ``torch.split(x, 4, 1)`` from
    ``x.chunk(2, 1)``: one unit is tried and undone), into unequal pieces, or read as several
    pieces at once leaves the stem whole, says why, and the rest is pruned."""
    torch.manual_seed(0)
    model = _Chunked(split).eval()
    x = torch.randn(2, 3, 8, 8)
    before = copy.deepcopy(model)
    with pytest.warns(UserWarning, match="torch.split/chunk after 'stem"):
        pruner = pk.Pruner(model, x, criterion="l1", target=pk.Target(params=0.1), round_to=None)
    assert reason in pruner.left_whole["stem.0"]
    assert "stem.0" not in {g.name for g in pruner.groups}
    after = model.state_dict()  # the trial was undone
    assert all(torch.equal(v, after[k]) for k, v in before.state_dict().items())
    pruner.step()
    assert model.stem[0].out_channels == 8


def test_a_pixel_unshuffle_of_the_model_input_leaves_the_layers_after_it_prunable():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.PixelUnshuffle(2), nn.Conv2d(12, 16, 3), nn.ReLU(), nn.Conv2d(16, 4, 1)
    ).eval()
    x = torch.randn(1, 3, 16, 16)
    pruner = pk.Pruner(model, x, criterion="l1", target=pk.Target(params=0.4), round_to=None)
    assert [g.name for g in pruner.groups] == ["1"]
    pruner.step()
    assert model[1].in_channels == 12 and model[1].out_channels == model[3].in_channels < 16
    assert model(x).shape == (1, 4, 6, 6)


def test_groups_found_again_after_a_step_walk_only_the_coupled_ones(monkeypatch):
    """The coupled-blocks walk is redone after a step only for groups that had coupled blocks:
    a group found uncoupled stays uncoupled when whole units go, and the ghost pairs survive."""
    from prunekit.engine import groups as groups_module

    model, x = _build("ghostnet")
    pruner = pk.Pruner(model, x, criterion="l1", target=pk.Target(params=0.3), steps=2)
    coupled = sum(g.blocks is not None for g in pruner.groups)
    total = len(pruner.groups)
    walked = []
    real = groups_module._coupled_blocks
    monkeypatch.setattr(groups_module, "_coupled_blocks", lambda *a: walked.append(1) or real(*a))
    pruner.step()
    assert 0 < coupled < total
    assert len(walked) == coupled
    group = next(g for g in pruner.groups if g.name == "blocks.1.shortcut.0")
    half = group.num_units
    assert group.blocks == [[u, u + half] for u in range(half)]


def test_an_output_made_of_two_layers_has_no_one_order_of_kept_features():
    class TwoHeads(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Conv2d(3, 8, 3)
            self.a, self.b = nn.Conv2d(8, 6, 1), nn.Conv2d(8, 4, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = torch.relu(self.stem(x))
            return torch.cat([self.a(x), self.b(x)], 1).mean((2, 3))

    model = TwoHeads().eval()
    pruner = pk.Pruner(model, torch.randn(1, 3, 8, 8), criterion="l1", round_to=None,
                       ignored_layers=["stem"], target="channels=0.2",
                       prune_outputs=True)  # fmt: skip
    pruner.step()
    assert model.a.out_channels + model.b.out_channels < 10
    with pytest.raises(pk.PrunekitError, match=r"channels of 2 layers \('a', 'b'\)"):
        _ = pruner.output_kept


def test_an_output_that_also_holds_an_ignored_layers_channels_has_no_kept_feature_order():
    class Concat(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Conv2d(3, 8, 3)
            self.fixed, self.head = nn.Conv2d(8, 4, 1), nn.Conv2d(8, 6, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = torch.relu(self.stem(x))
            return torch.cat([self.fixed(x), self.head(x)], 1).mean((2, 3))

    model = Concat().eval()
    pruner = pk.Pruner(model, torch.randn(1, 3, 8, 8), criterion="l1", round_to=None,
                       ignored_layers=["stem", "fixed"], target="channels=0.2",
                       prune_outputs=True)  # fmt: skip
    pruner.step()
    assert model.head.out_channels < 6 and model.fixed.out_channels == 4
    with pytest.raises(pk.PrunekitError, match=r"output has 10 features but .*'head' had 6"):
        _ = pruner.output_kept


def test_a_layer_scale_loses_the_channels_of_its_group():
    """ConvNeXt's layer scale, a bare ``nn.Parameter`` of one channel per element, loses the
    residual stream's channels with the convs around it (torch-pruning would make new
    parameters and leave them out of its report; prunekit prices and reports them)."""
    model, x = _build("layer_scale")
    original = [b.gamma.detach().clone() for b in model.blocks]
    pruner = pk.Pruner(model, x, criterion="l1", target="params=0.4", steps=1, round_to=None)
    report = pruner.step()
    width = model.stem[0].out_channels
    assert width < 16 and report.params == pk.measure(model, x)["params"]
    kept = [i for i in range(16) if i not in report.removed["blocks.0"]["out"]]
    for block, before in zip(model.blocks, original, strict=True):
        assert isinstance(block.gamma, nn.Parameter) and block.gamma.shape == (width,)
        assert torch.equal(block.gamma.detach(), before[kept])
    assert model.head.in_features == width and model(x).shape == (1, 10)


def test_an_undone_step_puts_a_layer_scale_and_its_graph_node_back():
    from prunekit.engine.groups import build_graph, find_groups
    from prunekit.engine.integrity import Snapshot

    model, x = _build("layer_scale")
    graph = build_graph(model, x)
    stream = next(g for g in find_groups(graph, []) if g.name == "blocks.1.fc2")
    gamma = model.blocks[0].gamma
    snapshot = Snapshot(graph)
    stream.prune([0, 1])
    assert model.blocks[0].gamma.shape == (14,) and gamma not in graph.module2node
    snapshot.restore()
    assert model.blocks[0].gamma is gamma and graph.module2node[gamma].module is gamma
    stream.prune([3])  # the restored graph prunes the restored parameter
    assert model.blocks[1].gamma.shape == (15,) and model(x).shape == (1, 10)
