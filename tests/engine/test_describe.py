"""``Pruner.describe()``: every channel group and every layer left out, with the reason."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import prunekit as pk
from prunekit.engine.describe import Description, GroupInfo, LeftOut, Member, description
from prunekit.engine.groups import build_graph
from prunekit.engine.planner import Limits
from tests.reliability.test_silent_results import BatchMix

OUTPUT = "its channels reach the model output"


class Residual(nn.Module):
    """``stem -> bn`` plus ``body`` of itself: the add couples both convs into one group."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.body = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(self.stem(x))
        return self.head(y + self.body(y)).mean((2, 3))


class Grouped(nn.Module):
    """``squeeze`` feeds a grouped conv with 4 filters per group: one unit is one conv group."""

    def __init__(self, split: bool = False) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(3, 8, 1)
        self.expand = nn.Conv2d(8, 32, 3, padding=1, groups=8)
        # a second grouped conv on the same channels, with other groups: no unit fits both
        self.other = nn.Conv2d(8, 32, 3, padding=1, groups=2) if split else None
        self.head = nn.Conv2d(32, 10, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.squeeze(x))
        z = self.expand(y) if self.other is None else self.expand(y) + self.other(y)
        return self.head(torch.relu(z))


class Embedded(nn.Module):
    """An embedding's channels are coupled with no layer's output channels: no group."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(10, 8)
        self.fc = nn.Linear(8, 16)
        self.out = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.fc(self.emb(x)))).sum(1)


def flatten_net() -> nn.Sequential:
    """Two convs, then a flatten of 6 channels x 2 x 2 into a linear classifier."""
    return nn.Sequential(
        nn.Conv2d(3, 4, 3),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 6, 3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(24, 10),
    )


def describe(model: nn.Module, x: torch.Tensor, ignored: tuple[str, ...] = ()) -> Description:
    layers = [model.get_submodule(name) for name in ignored]
    return description(build_graph(model, x), layers, Limits())


def test_a_residual_add_couples_both_convs_and_their_norm_into_one_group():
    got = describe(Residual(), torch.randn(1, 3, 6, 6))
    members = [
        Member("stem", "Conv2d", "out"),
        Member("bn", "BatchNorm2d", "out"),
        Member("body", "Conv2d", "out"),
        Member("body", "Conv2d", "in"),
        Member("head", "Conv2d", "in"),
    ]
    assert got == Description(
        "Residual", [GroupInfo("body", 8, 1, 1, members)], [LeftOut("head", "Conv2d", OUTPUT)]
    )


def test_an_ignored_layer_leaves_out_the_layers_coupled_with_it():
    got = describe(Residual(), torch.randn(1, 3, 6, 6), ignored=("body",))
    assert got.groups == []
    assert got.left_out == [
        LeftOut("stem", "Conv2d", "in ignored_layers", via="body"),
        LeftOut("bn", "BatchNorm2d", "in ignored_layers", via="body"),
        LeftOut("body", "Conv2d", "in ignored_layers"),
        LeftOut("head", "Conv2d", OUTPUT),
    ]


def test_the_pruner_describes_a_flatten_into_a_linear_layer_and_an_ignored_layer():
    model = flatten_net()
    pruner = pk.Pruner(model, torch.randn(1, 3, 6, 6), ignored_layers=["0"], round_to=None)
    got = pruner.describe()
    members = [Member("3", "Conv2d", "out"), Member("6", "Linear", "in")]
    assert got.groups == [GroupInfo("3", 6, 1, 1, members)]
    assert got.left_out == [
        LeftOut("0", "Conv2d", "in ignored_layers"),
        LeftOut("1", "BatchNorm2d", "in ignored_layers", via="0"),
        LeftOut("6", "Linear", OUTPUT),
    ]
    # each of the 6 units owns the 2 x 2 inputs of the linear layer its channel flattens to
    [linear] = [s for s in pruner.groups[0].slices if s.module_name == "6"]
    assert torch.bincount(linear.unit).tolist() == [4] * 6


def test_a_slice_leaves_a_group_whole_with_the_reason():
    with pytest.warns(UserWarning, match="leaves the channels of 'body.2' whole"):
        pruner = pk.Pruner(BatchMix(), torch.randn(4, 8), round_to=None)
    got = pruner.describe()
    members = [Member("body.0", "Linear", "out"), Member("body.2", "Linear", "in")]
    assert got.groups == [GroupInfo("body.0", 16, 1, 1, members)]
    slice_reason = (
        "torch-pruning cannot map its channels through the slice along dim 0 of a [4, 16] "
        "tensor after 'body.2' in forward()"
    )
    assert got.left_out == [
        LeftOut("body.2", "Linear", slice_reason),
        LeftOut("head", "Linear", OUTPUT),
    ]
    assert pruner.left_whole == {"body.2": slice_reason}


def test_a_merged_grouped_conv_keeps_two_groups():
    got = describe(Grouped(), torch.randn(1, 3, 6, 6))
    members = [
        Member("squeeze", "Conv2d", "out"),
        Member("expand", "Conv2d", "out"),
        Member("head", "Conv2d", "in"),
    ]
    assert got.groups == [GroupInfo("squeeze", 8, 2, 1, members)]
    assert got.left_out == [LeftOut("head", "Conv2d", OUTPUT)]


@pytest.mark.parametrize(
    ("split", "ignored", "left_out"),
    [
        pytest.param(
            True,
            (),
            [
                LeftOut(
                    "squeeze",
                    "Conv2d",
                    "the grouped convs reading its channels disagree on the number of groups "
                    "('expand' has 8, 'other' has 2)",
                ),
                LeftOut(
                    "expand",
                    "Conv2d",
                    "the grouped conv 'expand' loses output channels only with whole groups of "
                    "its input channels, and the group of 'squeeze' is not prunable",
                ),
                LeftOut(
                    "other",
                    "Conv2d",
                    "the grouped conv 'expand' loses output channels only with whole groups of "
                    "its input channels, and the group of 'squeeze' is not prunable",
                    via="expand",
                ),
                LeftOut("head", "Conv2d", OUTPUT),
            ],
            id="groups-disagree",
        ),
        pytest.param(
            False,
            ("expand",),
            [
                LeftOut(
                    "squeeze",
                    "Conv2d",
                    "the output channels of the grouped conv 'expand' it feeds are not prunable",
                ),
                LeftOut("expand", "Conv2d", "in ignored_layers"),
                LeftOut("head", "Conv2d", OUTPUT),
            ],
            id="grouped-conv-ignored",
        ),
        pytest.param(
            False,
            ("squeeze",),
            [
                LeftOut("squeeze", "Conv2d", "in ignored_layers"),
                LeftOut(
                    "expand",
                    "Conv2d",
                    "the grouped conv 'expand' loses output channels only with whole groups of "
                    "its input channels, and those are not prunable",
                ),
                LeftOut("head", "Conv2d", OUTPUT),
            ],
            id="its-inputs-ignored",
        ),
    ],
)
def test_a_grouped_conv_that_cannot_be_merged_says_why(split, ignored, left_out):
    got = describe(Grouped(split), torch.randn(1, 3, 6, 6), ignored)
    assert got.groups == []
    assert got.left_out == left_out


def test_a_layer_with_no_channel_group_says_so():
    got = describe(Embedded(), torch.randint(10, (2, 5)))
    assert [g.name for g in got.groups] == ["fc"]
    assert got.left_out == [
        LeftOut(
            "emb",
            "Embedding",
            "no channel group: prunekit prunes the output channels of conv and linear layers "
            "and of the layers coupled with them",
        ),
        LeftOut("out", "Linear", OUTPUT),
    ]


def test_min_units_and_rounding_follow_the_pruner_and_the_unpruned_width():
    model = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 4))
    x = torch.randn(2, 8)
    for round_to, min_channels, expected in [("auto", 10, (16, 8)), (None, 10, (10, 1))]:
        pruner = pk.Pruner(model, x, round_to=round_to, min_channels=min_channels)
        [group] = pruner.describe().groups
        assert (group.units, group.min_units, group.round_to) == (64, *expected)
    pruner = pk.Pruner(model, x, target="params=0.3")
    pruner.step()
    [group] = pruner.describe().groups
    # fewer units now, still rounded as a group of 64: judged on the unpruned width
    assert group.units == model[0].out_features < 64
    assert (group.min_units, group.round_to) == (8, 8)


def test_the_description_is_json_data():
    got = describe(Residual(), torch.randn(1, 3, 6, 6), ignored=("body",))
    data = got.as_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["left_out"][0] == {
        "layer": "stem",
        "type": "Conv2d",
        "reason": "in ignored_layers",
        "via": "body",
    }
