"""The planner: limits on kept counts, the exact cost model, and the local / global planners.

Every expected number is worked out by hand in the comments, on nets small enough to count.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

import prunekit as pk
from prunekit.engine.groups import build_graph, find_groups
from prunekit.engine.measure import mac_positions
from prunekit.engine.planner import CostModel, Limits, plan_global, plan_local

UNROUNDED = Limits(round_to=None)


# ---------------------------------------------------------------------------- tiny nets
class ThreeConvs(nn.Module):
    """conv1 (2->4) -> conv2 (4->3) -> conv3 (3->2, the output: never pruned), 1x1 kernels
    (the widths ``mid1``, ``mid2``; the figures below are for the defaults).

    Two groups: ``conv1`` (4 units: conv1's filters and biases, conv2's input columns) and
    ``conv2`` (3 units: conv2's filters and biases, conv3's input columns). conv2's weight is
    shared: a row belongs to group ``conv2`` and a column to group ``conv1``.
    On a 3x3 input every layer has 9 output positions.
    params: conv1 8+4, conv2 12+3, conv3 6+2 = 35; MACs: 9 * (8 + 12 + 6) = 234.
    """

    def __init__(self, mid1: int = 4, mid2: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, mid1, 1)
        self.conv2 = nn.Conv2d(mid1, mid2, 1)
        self.conv3 = nn.Conv2d(mid2, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(torch.relu(self.conv2(torch.relu(self.conv1(x)))))


class TwoConvs(nn.Module):
    """conv1 (2->4, 3x3, padding 1) -> conv2 (4->3, 1x1, stride 2, the output).

    On a 5x5 input conv1 has 25 output positions and conv2 9.
    params: conv1 72+4, conv2 12+3 = 91; MACs: 72*25 + 12*9 = 1908.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 3, 1, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(torch.relu(self.conv1(x)))


class ConvBNLinear(nn.Module):
    """conv (3->4, 3x3, no bias) -> BN -> flatten (4 channels x 2x2) -> fc (16->5, the output).

    On a 4x4 input the conv has 4 output positions and fc 1; each channel owns 4 fc columns.
    params: conv 108, bn 8, fc 80+5 = 201; MACs: 108*4 + 80 = 512.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(torch.relu(self.bn(self.conv(x))), 1))


class DepthWise(nn.Module):
    """conv1 (2->4, 1x1) -> depth-wise 3x3 (4 groups) -> conv3 (4->2, the output); 3x3 input.

    One group of 4 units: conv1's filters and biases, the depth-wise filters and biases (one
    9-element filter per channel, coupled on both sides) and conv3's input columns.
    params: conv1 8+4, dw 36+4, conv3 8+2 = 62; MACs: 9 * (8 + 36 + 8) = 468.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 4, 1)
        self.dw = nn.Conv2d(4, 4, 3, padding=1, groups=4)
        self.conv3 = nn.Conv2d(4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(self.dw(self.conv1(x)))


class Wide(nn.Module):
    """conv1 (2->16) -> conv2 (16->2, the output): one group of 16 units."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 16, 1)
        self.conv2 = nn.Conv2d(16, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(torch.relu(self.conv1(x)))


NETS = {
    "three": (ThreeConvs, (1, 2, 3, 3)),
    "two": (TwoConvs, (1, 2, 5, 5)),
    "cbl": (ConvBNLinear, (1, 3, 4, 4)),
    "dw": (DepthWise, (1, 2, 3, 3)),
    "wide": (Wide, (1, 2, 3, 3)),
    "wide_narrow": (lambda: ThreeConvs(16, 4), (1, 2, 3, 3)),
}


class Setup:
    """A tiny net, its groups (by name) and a fresh cost model."""

    def __init__(self, net: str, widths: dict[str, int] | None = None) -> None:
        build, shape = NETS[net]
        torch.manual_seed(0)
        self.model, self.x = build(), torch.randn(*shape)
        self.groups = find_groups(build_graph(self.model, self.x), [])
        self.index = {g.name: i for i, g in enumerate(self.groups)}
        self.cost = CostModel(self.model, self.groups, mac_positions(self.model, self.x), widths)

    def scores(self, by_name: dict[str, list[float]]) -> list[torch.Tensor]:
        assert set(by_name) == set(self.index)
        return [torch.tensor(by_name[g.name], dtype=torch.float64) for g in self.groups]

    def named(self, plan: dict[int, list[int]]) -> dict[str, list[int]]:
        return {self.groups[g].name: sorted(units) for g, units in plan.items()}

    def execute(self, plan: dict[int, list[int]]) -> None:
        for g, units in sorted(plan.items()):
            self.groups[g].prune(sorted(units))


# ---------------------------------------------------------------------------- Limits
@pytest.mark.parametrize(
    ("round_to", "width", "rounding"),
    [
        ("auto", 64, 8),  # AUTO_MIN_UNITS and wider: multiples of 8
        ("auto", 200, 8),
        ("auto", 63, 1),  # narrower: unit by unit
        ("auto", 3, 1),
        (None, 64, 1),
        (None, 3, 1),
        (4, 64, 4),
        (4, 3, 4),  # an explicit int applies whatever the width
        (1, 100, 1),
    ],
)
def test_rounding(round_to, width, rounding):
    assert Limits(round_to=round_to).rounding(width) == rounding


@pytest.mark.parametrize(
    ("limits", "n", "kwargs", "kept"),
    [
        (Limits(), 10, {}, 1),
        (Limits(), 1, {}, 1),  # a single unit can never go
        (Limits(), 64, {}, 8),  # auto: one chunk of 8 stays
        (Limits(), 63, {}, 1),
        (Limits(), 40, {"width": 64}, 8),  # judged on the width before pruning
        (Limits(min_channels=4, round_to=None), 5, {}, 4),
        (Limits(min_channels=4, round_to=None), 4, {}, 4),
        (Limits(min_channels=8, round_to=None), 5, {}, 5),  # n below min_channels: untouchable
        (Limits(min_channels=6, round_to=4), 16, {}, 8),  # 6 rounded up to a multiple of 4
        (Limits(round_to=8), 5, {}, 5),  # round_to larger than n: untouchable
        (Limits(round_to=8), 10, {}, 8),
        (Limits(round_to=None), 4, {"floor": 2}, 2),  # grouped convs keep two groups
        (Limits(min_channels=3, round_to=None), 4, {"floor": 2}, 3),
        (Limits(round_to=None), 2, {"floor": 2}, 2),
    ],
)
def test_min_kept(limits, n, kwargs, kept):
    assert limits.min_kept(n, **kwargs) == kept


@pytest.mark.parametrize(
    ("limits", "n", "kwargs", "sequence"),
    [
        (UNROUNDED, 5, {}, [4, 3, 2, 1]),
        (UNROUNDED, 1, {}, []),
        (Limits(min_channels=3, round_to=None), 5, {}, [4, 3]),
        (Limits(min_channels=5, round_to=None), 5, {}, []),
        (Limits(min_channels=8, round_to=None), 5, {}, []),
        (Limits(), 64, {}, [56, 48, 40, 32, 24, 16, 8]),
        (Limits(), 40, {"width": 64}, [32, 24, 16, 8]),
        # a group narrowed to a non-multiple first drops to the multiple below it
        (Limits(), 60, {"width": 64}, [56, 48, 40, 32, 24, 16, 8]),
        (Limits(), 10, {}, [9, 8, 7, 6, 5, 4, 3, 2, 1]),
        (Limits(round_to=8), 5, {}, []),
        (Limits(round_to=8), 10, {}, [8]),
        (Limits(min_channels=6, round_to=4), 16, {}, [12, 8]),
        (Limits(round_to=2), 3, {}, [2]),
        (UNROUNDED, 4, {"floor": 2}, [3, 2]),
    ],
)
def test_kept_sequence(limits, n, kwargs, sequence):
    assert limits.kept_sequence(n, **kwargs) == sequence


def test_kept_sequence_auto_below_the_threshold_is_every_count():
    assert Limits().kept_sequence(63) == list(range(62, 0, -1))


@pytest.mark.parametrize(
    ("limits", "n", "fraction", "kwargs", "kept"),
    [
        (UNROUNDED, 10, 0.0, {}, 10),
        (UNROUNDED, 10, 0.04, {}, 10),  # 9.6 rounds back up to 10
        (UNROUNDED, 10, 0.3, {}, 7),
        (UNROUNDED, 10, 0.62, {}, 4),  # 3.8 -> 4
        (UNROUNDED, 10, 0.99, {}, 1),  # 0.1 -> 0, clamped to one unit
        (UNROUNDED, 10, 1.0, {}, 1),
        (Limits(min_channels=4, round_to=None), 10, 0.9, {}, 4),
        (Limits(min_channels=8, round_to=None), 5, 0.9, {}, 5),  # n below min_channels
        (Limits(), 64, 0.1, {}, 56),  # 57.6 -> 7.2 chunks of 8 -> 7 chunks
        (Limits(), 64, 0.3, {}, 48),  # 44.8 -> 5.6 chunks -> 6 chunks
        (Limits(), 64, 0.99, {}, 8),  # at least one chunk
        (Limits(), 40, 0.3, {"width": 64}, 32),  # 28 -> 3.5 chunks -> 4 (banker's) chunks
        (Limits(), 60, 0.0, {"width": 64}, 60),  # nothing removed: stays at 60
        (Limits(), 60, 0.05, {"width": 64}, 56),
        (Limits(), 40, 0.3, {}, 28),  # 40 < 64: unit by unit
        (Limits(round_to=8), 5, 0.5, {}, 5),  # round_to larger than n: untouchable
        (Limits(min_channels=6, round_to=4), 16, 0.9, {}, 8),
        (Limits(min_channels=6, round_to=4), 16, 0.3, {}, 12),  # 11.2 -> 2.8 -> 3 chunks of 4
        (UNROUNDED, 4, 0.9, {"floor": 2}, 2),
    ],
)
def test_kept_at(limits, n, fraction, kwargs, kept):
    assert limits.kept_at(n, fraction, **kwargs) == kept


@pytest.mark.parametrize("limits", [UNROUNDED, Limits(), Limits(min_channels=3, round_to=4)])
@pytest.mark.parametrize(("n", "width"), [(5, None), (17, None), (64, None), (40, 64), (100, None)])
def test_kept_at_is_monotone_and_allowed(limits, n, width):
    """More removed never keeps more, and every kept count is one kept_sequence allows."""
    allowed = {n, *limits.kept_sequence(n, width=width)}
    kept = [limits.kept_at(n, k / 100, width=width) for k in range(101)]
    assert kept[-1] == limits.min_kept(n, width=width)
    assert all(a >= b for a, b in itertools.pairwise(kept)), kept
    assert set(kept) <= allowed, sorted(set(kept) - allowed)


@pytest.mark.parametrize(
    ("limits", "n"),
    [(UNROUNDED, 100), (Limits(), 92), (Limits(round_to=4), 7), (Limits(round_to=4), 16)],
)
def test_kept_at_fraction_zero_keeps_every_unit(limits, n):
    assert limits.kept_at(n, 0.0) == n


ROUNDS_DOWN_AT_ZERO = pytest.mark.xfail(
    strict=True,
    reason="BUG prunekit/engine/planner.py Limits.kept_at: n*(1-fraction) is rounded to the "
    "nearest multiple of the rounding even at fraction 0, so a group whose size is not a "
    "multiple and whose remainder is below half the rounding loses units (100 -> 96 with "
    "'auto'); 92 -> 92 but 100 -> 96 shows it is not a deliberate snap to a multiple",
)


@ROUNDS_DOWN_AT_ZERO
@pytest.mark.parametrize(
    ("limits", "n"),
    [(Limits(), 100), (Limits(), 65), (Limits(round_to=4), 5), (Limits(round_to=5), 16)],
)
def test_kept_at_fraction_zero_keeps_a_group_that_is_not_a_multiple(limits, n):
    assert limits.kept_at(n, 0.0) == n


# ---------------------------------------------------------------------------- CostModel
def test_cost_model_two_conv_net():
    s = Setup("two")
    (g,) = range(len(s.groups))
    assert s.groups[g].name == "conv1" and s.groups[g].num_units == 4
    assert s.cost.totals() == {"params": 91, "macs": 1908, "channels": 4}
    # unit 1: conv1 filter (2*3*3 = 18) + bias (1) + conv2 column (3) = 22 params;
    # MACs 18*25 + 3*9 = 477
    assert s.cost.remove(g, [1]) == {"params": 22, "macs": 477, "channels": 1}
    assert s.cost.totals() == {"params": 69, "macs": 1431, "channels": 3}
    # two more units from the narrowed tensors: twice as much again
    assert s.cost.remove(g, [0, 3]) == {"params": 44, "macs": 954, "channels": 2}
    assert s.cost.totals() == {"params": 25, "macs": 477, "channels": 1}


def test_cost_model_predicts_what_measure_reports_after_removal():
    s = Setup("two")
    s.cost.remove(0, [0, 2])
    predicted = s.cost.totals()
    assert pk.measure(s.model, s.x) == {"params": 91, "macs": 1908}  # nothing was modified
    s.groups[0].prune([0, 2])
    assert pk.measure(s.model, s.x) == {"params": predicted["params"], "macs": predicted["macs"]}
    assert predicted == {"params": 47, "macs": 954, "channels": 2}
    assert s.model.conv1.out_channels == s.model.conv2.in_channels == 2


def test_cost_model_conv_bn_linear_net():
    s = Setup("cbl")
    assert [g.name for g in s.groups] == ["conv"]
    assert s.cost.totals() == {"params": 201, "macs": 512, "channels": 4}
    # unit 3: conv filter 27, BN weight + bias 2, four fc columns of 5 rows = 20 -> 49;
    # MACs: 27 * 4 positions + 20 * 1 = 128
    assert s.cost.remove(0, [3]) == {"params": 49, "macs": 128, "channels": 1}
    assert s.cost.remove(0, [0]) == {"params": 49, "macs": 128, "channels": 1}
    assert s.cost.totals() == {"params": 103, "macs": 256, "channels": 2}
    s.groups[0].prune([0, 3])
    assert pk.measure(s.model, s.x) == {"params": 103, "macs": 256}
    assert s.model.fc.in_features == 8 and s.model.bn.num_features == 2


def test_cost_model_counts_an_element_shared_by_two_groups_once():
    """conv2's weight loses a column to group conv1 and a row to group conv2: the element at
    their crossing is removed once."""
    s = Setup("three")
    g1, g2 = s.index["conv1"], s.index["conv2"]
    assert s.cost.totals() == {"params": 35, "macs": 234, "channels": 7}
    # conv1 unit 1: conv1 filter 2 + bias 1 + conv2 column 3 = 6; MACs 9 * (2 + 3)
    assert s.cost.remove(g1, [1]) == {"params": 6, "macs": 45, "channels": 1}
    # conv2 unit 2: conv2 row (now 3 wide, not 4) + bias 1 + conv3 column 2 = 6, not 7
    assert s.cost.remove(g2, [2]) == {"params": 6, "macs": 45, "channels": 1}
    assert s.cost.totals() == {"params": 23, "macs": 144, "channels": 5}
    s.execute({g1: [1], g2: [2]})
    assert pk.measure(s.model, s.x) == {"params": 23, "macs": 144}


def test_cost_model_order_of_removal_does_not_matter():
    s = Setup("three")
    g1, g2 = s.index["conv1"], s.index["conv2"]
    assert s.cost.remove(g2, [2]) == {"params": 7, "macs": 54, "channels": 1}  # 4 + 1 + 2
    assert s.cost.remove(g1, [1]) == {"params": 5, "macs": 36, "channels": 1}  # 2 + 1 + 2
    assert s.cost.totals() == {"params": 23, "macs": 144, "channels": 5}


def test_cost_model_depthwise_filter_counted_once():
    """A depth-wise filter is both an input and an output of its channel: removed once."""
    s = Setup("dw")
    assert [g.name for g in s.groups] == ["dw"]
    assert s.cost.totals() == {"params": 62, "macs": 468, "channels": 4}
    # conv1 filter 2 + bias 1, dw filter 9 + bias 1, conv3 column 2 = 15; MACs 9 * 13
    assert s.cost.remove(0, [1]) == {"params": 15, "macs": 117, "channels": 1}
    s.groups[0].prune([1])
    assert pk.measure(s.model, s.x) == {"params": 47, "macs": 351}
    assert s.model.dw.groups == s.model.dw.in_channels == s.model.dw.out_channels == 3


def test_cost_model_widths_default_to_current_units_and_can_be_given():
    assert Setup("wide").cost.widths == [16]
    assert Setup("wide", widths={"conv1": 64}).cost.widths == [64]
    assert Setup("wide", widths={"other": 64}).cost.widths == [16]


# ---------------------------------------------------------------------------- planners
# conv1 unit 1 is the lowest of its group but conv2 unit 2 is the lowest overall
SCORES = {"conv1": [0.5, 0.1, 0.9, 0.3], "conv2": [0.2, 0.8, 0.05]}
PLANNERS = {"global": plan_global, "local": plan_local}


def _plan(scope, amount, metric="channels", limits=UNROUNDED, scores=SCORES, net="three"):
    s = Setup(net)
    plan = PLANNERS[scope](s.cost, s.scores(scores), metric, amount, limits)
    return s, plan


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        (1, {"conv2": [2]}),  # 0.05
        (2, {"conv2": [2], "conv1": [1]}),  # 0.05, 0.1
        (3, {"conv2": [0, 2], "conv1": [1]}),  # ..., 0.2
        (4, {"conv2": [0, 2], "conv1": [1, 3]}),  # ..., 0.3
        (2.5, {"conv2": [0, 2], "conv1": [1]}),  # stops at the first count reaching it
    ],
)
def test_global_removes_the_lowest_scores_across_groups(amount, expected):
    s, plan = _plan("global", amount)
    assert s.named(plan) == expected


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        # the same fraction everywhere: one unit of each group first (conv1 at fraction >
        # 1/8, conv2 at > 1/6), then a second of conv1's at 3/8, though conv2 unit 0 (0.2)
        # scores below conv1 unit 3 (0.3)
        (1, {"conv1": [1]}),
        (2, {"conv1": [1], "conv2": [2]}),
        (3, {"conv1": [1, 3], "conv2": [2]}),
        (4, {"conv1": [1, 3], "conv2": [0, 2]}),
    ],
)
def test_local_removes_the_lowest_scores_within_each_group(amount, expected):
    s, plan = _plan("local", amount)
    assert s.named(plan) == expected


@pytest.mark.parametrize("scope", ["global", "local"])
@pytest.mark.parametrize("metric", ["params", "macs", "channels"])
def test_amount_zero_removes_nothing(scope, metric):
    s, plan = _plan(scope, 0.0, metric=metric)
    assert plan == {}
    assert s.cost.totals() == {"params": 35, "macs": 234, "channels": 7}


@ROUNDS_DOWN_AT_ZERO
@pytest.mark.parametrize("amount", [0.0, -5.0])
def test_local_amount_zero_on_a_group_that_is_not_a_multiple_removes_nothing(amount):
    # Wide's 16 units with round_to=5: kept_at(16, ~0) = 5 * round(3.2) = 15, so the local
    # planner removes the lowest unit although nothing (or less than nothing) is asked for
    # (the global planner removes nothing: the test below)
    s = Setup("wide")
    scores = s.scores({"conv1": [float(u) for u in range(16)]})
    assert plan_local(s.cost, scores, "params", amount, Limits(round_to=5)) == {}


@pytest.mark.parametrize("amount", [0.0, -5.0])
def test_global_amount_zero_on_a_group_that_is_not_a_multiple_removes_nothing(amount):
    s = Setup("wide")
    scores = s.scores({"conv1": [float(u) for u in range(16)]})
    assert plan_global(s.cost, scores, "params", amount, Limits(round_to=5)) == {}


@pytest.mark.parametrize("scope", ["global", "local"])
@pytest.mark.parametrize(("metric", "amount"), [("channels", 100), ("params", 1000)])
def test_amount_beyond_reach_keeps_the_best_unit_of_each_group(scope, metric, amount):
    s, plan = _plan(scope, amount, metric=metric)
    assert s.named(plan) == {"conv1": [0, 1, 3], "conv2": [0, 2]}  # keeps 0.9 and 0.8
    # left: conv1 2 + 1, conv2 1 + 1, conv3 2 + 2 = 9 params; MACs 9 * (2 + 1 + 2) = 45
    assert s.cost.totals() == {"params": 9, "macs": 45, "channels": 2}
    s.execute(plan)
    assert pk.measure(s.model, s.x) == {"params": 9, "macs": 45}


def test_global_params_target_prices_the_shared_element_once():
    # conv2 unit 2 (0.05) frees 7 params; then conv1 unit 1 (0.1) frees 5 (2 + 1 + a conv2
    # column now 2 high), reaching 12 >= 10
    s, plan = _plan("global", 10, metric="params")
    assert s.named(plan) == {"conv2": [2], "conv1": [1]}
    assert s.cost.totals()["params"] == 23
    s.execute(plan)
    assert pk.measure(s.model, s.x)["params"] == 23


@pytest.mark.parametrize(("per_cost", "expected"), [(False, ["conv1", "conv2"]), (True, ["conv2"])])
def test_global_per_cost_ranks_by_score_per_parameter_removed(per_cost, expected):
    # conv1 unit 0 scores 0.1 and frees 6 params (2 + 1 + a conv2 column of 3); conv2 unit 0
    # scores 0.11 and frees 7 (4 + 1 + a conv3 column of 2). By score conv1's goes first and
    # 6 < 7 needs conv2's too; per parameter 0.11 / 7 < 0.1 / 6, and conv2's alone frees 7
    s = Setup("three")
    scores = s.scores({"conv1": [0.1, 0.9, 0.9, 0.9], "conv2": [0.11, 0.9, 0.9]})
    plan = plan_global(s.cost, scores, "params", 7, UNROUNDED, per_cost=per_cost)
    assert s.named(plan) == {name: [0] for name in expected}


def test_global_stops_as_soon_as_the_amount_is_reached():
    # conv2 unit 2 alone frees 9 * (4 + 2) = 54 MACs >= 50
    s, plan = _plan("global", 50, metric="macs")
    assert s.named(plan) == {"conv2": [2]}
    s, plan = _plan("global", 55, metric="macs")
    assert s.named(plan) == {"conv2": [2], "conv1": [1]}  # 54 + 9 * (2 + 2)


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        (30, {"conv2": [0, 1]}),  # conv1's chunk (56) would overshoot by 26 > 19: 19 + 19
        (45, {"conv1": list(range(8))}),  # by 11, less than a unit of conv2 (19): the chunk
    ],
)
def test_global_a_chunk_that_would_overshoot_waits_for_smaller_ones(amount, expected):
    # ThreeConvs(16, 4), 126 parameters: a unit of conv1 holds 2+1 of its own and 4 of conv2's
    # inputs (7), a unit of conv2 16+1 and 2 of conv3's inputs (19); auto rounding judges
    # conv1 wide, so it loses 8 units (56 parameters) at once
    s = Setup("wide_narrow", {"conv1": 64})
    scores = s.scores({"conv1": [0.01] * 16, "conv2": [0.5, 0.6, 0.7, 0.8]})
    plan = plan_global(s.cost, scores, "params", amount, Limits())
    assert s.named(plan) == expected


def test_local_params_target_uses_the_smallest_fraction():
    # conv1 unit 1 alone frees 6 < 10; adding conv2 unit 2 frees 6 + 7 - 1 (shared) = 12
    s, plan = _plan("local", 10, metric="params")
    assert s.named(plan) == {"conv1": [1], "conv2": [2]}
    s, plan = _plan("local", 6, metric="params")
    assert s.named(plan) == {"conv1": [1]}


@pytest.mark.parametrize("scope", ["global", "local"])
def test_ties_are_broken_deterministically_by_index(scope):
    flat = {"conv1": [1.0] * 4, "conv2": [1.0] * 3}
    s, plan = _plan(scope, 3, scores=flat)
    again = Setup("three")
    assert plan == PLANNERS[scope](again.cost, again.scores(flat), "channels", 3, UNROUNDED)
    first, second = (g.name for g in s.groups)
    if scope == "global":  # equal scores: the group listed first until it is down to one unit
        sizes = {"conv1": 4, "conv2": 3}
        if sizes[first] > 3:
            expected = {first: [0, 1, 2]}
        else:
            expected = {first: list(range(sizes[first] - 1)), second: [0]}
    else:  # the same fraction as with distinct scores, the first units of each group
        expected = {"conv1": [0, 1], "conv2": [0]}
    assert s.named(plan) == expected


@pytest.mark.parametrize("scope", ["global", "local"])
def test_min_channels_is_respected(scope):
    limits = Limits(min_channels=2, round_to=None)
    s, plan = _plan(scope, 100, limits=limits)
    assert s.named(plan) == {"conv1": [1, 3], "conv2": [2]}
    # a group below min_channels is not touched at all
    limits = Limits(min_channels=3, round_to=None)
    s, plan = _plan(scope, 100, limits=limits)
    assert s.named(plan) == {"conv1": [1]}


@pytest.mark.parametrize("scope", ["global", "local"])
def test_round_to_keeps_multiples(scope):
    # round_to=2: conv1 may keep 4 or 2, conv2 (3 units) 3 or 2
    limits = Limits(round_to=2)
    s, plan = _plan(scope, 1, limits=limits)
    assert s.named(plan) == {"conv2": [2]}
    s, plan = _plan(scope, 2, limits=limits)  # needs conv1's pair: 3 channels in all
    assert s.named(plan) == {"conv1": [1, 3], "conv2": [2]}
    s, plan = _plan(scope, 100, limits=limits)
    assert s.named(plan) == {"conv1": [1, 3], "conv2": [2]}


@pytest.mark.parametrize("scope", ["global", "local"])
def test_round_to_larger_than_every_group_removes_nothing(scope):
    s, plan = _plan(scope, 100, limits=Limits(round_to=8))
    assert plan == {}
    assert s.cost.totals() == {"params": 35, "macs": 234, "channels": 7}


def test_global_ranks_a_chunk_by_its_mean_score():
    scores = {"conv1": [0.5, 0.01, 0.9, 0.3], "conv2": [0.2, 0.8, 0.1]}
    # unit by unit conv1 unit 1 (0.01) goes first ...
    s, plan = _plan("global", 1, scores=scores)
    assert s.named(plan) == {"conv1": [1]}
    # ... but in pairs conv1's chunk {1, 3} has mean 0.155 > conv2's single unit 2 (0.1)
    s, plan = _plan("global", 1, scores=scores, limits=Limits(round_to=2))
    assert s.named(plan) == {"conv2": [2]}


@pytest.mark.parametrize("scope", ["global", "local"])
def test_auto_rounding_is_judged_on_the_width_before_pruning(scope):
    scores = {"conv1": [float(u) for u in range(16)]}
    for widths, removed in ((None, [0]), ({"conv1": 64}, list(range(8)))):
        s = Setup("wide", widths)
        plan = PLANNERS[scope](s.cost, s.scores(scores), "channels", 1, Limits())
        assert s.named(plan) == {"conv1": removed}


@pytest.mark.parametrize("scope", ["global", "local"])
def test_plans_land_where_the_cost_model_says(scope):
    s, plan = _plan(scope, 0.4 * 35, metric="params")
    predicted = s.cost.totals()
    assert predicted["params"] <= 35 - 0.4 * 35
    s.execute(plan)
    assert pk.measure(s.model, s.x) == {"params": predicted["params"], "macs": predicted["macs"]}
