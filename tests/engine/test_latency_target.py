"""Pruning to a measured latency: the table, its cache, planning with it, the correction.

Every test but the last times models with an injected fake: a deterministic function of the
model's layer widths, so that the expected numbers follow from the widths alone.
"""

from __future__ import annotations

import copy
import json
import math
import sys

import pytest
import torch
from torch import nn

import prunekit as pk
import prunekit.pruner
from prunekit.engine.groups import build_graph, find_groups
from prunekit.engine.latency_table import (
    Forecast,
    LatencyTable,
    LatencyTiming,
    build_table,
    measured_widths,
)
from prunekit.engine.measure import mac_positions
from prunekit.engine.planner import FLAT, CostModel, Limits, plan_global, plan_local

X = torch.ones(1, 3, 6, 6)  # traced for shapes only
KEY = {"device": "cpu: fake", "runtime": "fake", "threads": 1, "batch_size": 4}


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    """No test touches ~/.cache."""
    monkeypatch.setenv("PRUNEKIT_CACHE", str(tmp_path / "cache"))


class Net(nn.Module):
    """conv_a (3->a) -> BN -> conv_b (a->b) -> BN -> head (b->10, the output: never pruned).

    Two groups: ``conv_a`` (a units) and ``conv_b`` (b units).
    """

    def __init__(self, a: int = 16, b: int = 24) -> None:
        super().__init__()
        self.conv_a, self.bn_a = nn.Conv2d(3, a, 3, padding=1), nn.BatchNorm2d(a)
        self.conv_b, self.bn_b = nn.Conv2d(a, b, 3, padding=1), nn.BatchNorm2d(b)
        self.head = nn.Conv2d(b, 10, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn_a(self.conv_a(x)))
        return self.head(torch.relu(self.bn_b(self.conv_b(x))))


def net(a: int = 16, b: int = 24) -> Net:
    torch.manual_seed(0)
    return Net(a, b)


def widths(model: nn.Module) -> tuple[int, int]:
    return model.conv_a.out_channels, model.conv_b.out_channels


def linear_ms(model: nn.Module) -> float:
    """Activation-bound: a fixed 10 ms plus 2 ms per channel of conv_a, 3 per channel of b."""
    a, b = widths(model)
    return 10.0 + 2.0 * a + 3.0 * b


def stepped_ms(model: nn.Module) -> float:
    """MAC-bound with blocked kernels: every conv costs as if its channel counts were rounded
    up to multiples of 8 (so 9..16 channels cost the same as 16)."""

    def up(channels: int) -> int:
        return 8 * math.ceil(channels / 8)

    return 1.0 + sum(
        up(m.in_channels) * up(m.out_channels) / 64
        for m in model.modules()
        if isinstance(m, nn.Conv2d)
    )


class Fake:
    """A measure callable timing every model by ``ms(model)``; it records its calls, and the
    ratio of every check of a pruned model against its parent."""

    def __init__(self, ms=linear_ms) -> None:
        self.ms, self.calls, self.checks = ms, [], []

    def __call__(self, models, batch_size, repeats):
        self.calls.append((len(models), batch_size, repeats))
        times = [self.ms(m) for m in models]
        if len(models) == 2:
            self.checks.append(times[1] / times[0])
        return times


def groups_of(model: nn.Module):
    return find_groups(build_graph(model, X), [])


def table_of(model: nn.Module, measure, key=KEY, cache=None, limits=None, **timing):
    groups = groups_of(model)
    return build_table(
        model,
        groups,
        limits or Limits(),
        {g.name: g.num_units for g in groups},
        measure,
        key,
        LatencyTiming(**timing),
        cache,
    )


def hand_table(curves: dict[str, tuple[list[int], list[float]]]) -> LatencyTable:
    return LatencyTable(KEY, curves, batch_size=1, build_s=0.0)


def cost_of(model: nn.Module, table: LatencyTable) -> tuple[CostModel, list]:
    groups = groups_of(model)
    return CostModel(model, groups, mac_positions(model, X), latency=Forecast(table)), groups


def kept(cost: CostModel, groups) -> dict[str, int]:
    return {g.name: u for g, u in zip(groups, cost.units, strict=True)}


# ---------------------------------------------------------------------------- the table
def test_the_table_interpolates_linearly_between_measured_widths():
    table = hand_table({"g": ([16, 12, 8, 4], [1.0, 0.9, 0.7, 0.6])})
    times = table.times("g", 16)
    assert times[16] == 1.0 and times[12] == 0.9 and times[8] == 0.7
    assert times[14] == pytest.approx(0.95)  # halfway between 12 and 16
    assert times[10] == pytest.approx(0.8)
    assert times[6] == pytest.approx(0.65)
    assert times[0] == times[3] == 0.6  # constant below the narrowest measured width
    assert table.times("g", 9) == times[:10]  # a group narrowed by earlier steps
    assert table.times("unknown", 3) == [1.0] * 4  # nothing known to be saved


def test_the_table_times_each_group_narrowed_alone_against_the_whole_model():
    model, timed = net(), []
    before = {k: v.clone() for k, v in model.state_dict().items()}
    table = table_of(model, Fake(lambda m: (timed.append(m), linear_ms(m))[1]))
    # allowed counts nearest 3/4, 1/2, 1/4 of the units, and the fewest (min_channels=1)
    assert table.curves["conv_a"][0] == [16, 12, 8, 4, 1]
    assert table.curves["conv_b"][0] == [24, 18, 12, 6, 1]
    full = linear_ms(model)
    assert table.curves["conv_a"][1] == [(full - 2 * (16 - w)) / full for w in [16, 12, 8, 4, 1]]
    assert table.curves["conv_b"][1] == [(full - 3 * (24 - w)) / full for w in [24, 18, 12, 6, 1]]
    # each copy lost its group's lowest-index units; the model itself is untouched
    narrowed = next(m for m in timed if widths(m) == (12, 24))
    assert torch.equal(narrowed.conv_a.weight, model.conv_a.weight[4:])
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert table.batch_size == LatencyTiming().batch_size and not table.cached


def test_measured_widths_are_allowed_kept_counts():
    (group,) = [g for g in groups_of(net(a=100)) if g.name == "conv_a"]
    assert measured_widths(group, Limits(), 100) == [72, 48, 24, 8]  # multiples of 8 ("auto")
    assert measured_widths(group, Limits(round_to=None, min_channels=30), 100) == [75, 50, 30]


def test_the_build_is_bounded_by_halving_the_batch():
    """8 narrowed models (2 groups x 4 widths) + 1 whole one per call, (2 + 3) passes each:
    45 passes of 1 s at batch 32 is 45 s; a budget of 10 s halves the batch to 4 (5.6 s)."""
    fake = Fake(lambda m: 1000.0)
    table = table_of(net(), fake, limits=Limits(round_to=None), table_budget_s=10.0)
    assert table.batch_size == 4
    assert fake.calls[0] == (1, 32, 1)  # one pass of the whole model at the full batch
    assert fake.calls[1:] == [(9, 4, 3)]


# ---------------------------------------------------------------------------- the cache
def test_a_second_build_with_the_same_key_reads_the_cache(tmp_path):
    fake = Fake()
    first = table_of(net(), fake, cache=tmp_path)
    calls = len(fake.calls)
    again = table_of(net(), fake, cache=tmp_path)
    assert len(fake.calls) == calls  # not measured again
    assert again.cached and again.curves == first.curves and again.key == first.key


@pytest.mark.parametrize(
    ("a", "key"),
    [
        (16, {**KEY, "device": "cuda: fake"}),  # another device
        (16, {**KEY, "threads": 2}),  # other settings
        (20, KEY),  # another model
    ],
)
def test_a_table_of_another_device_or_model_is_rebuilt(tmp_path, a, key):
    fake = Fake()
    table_of(net(), fake, cache=tmp_path)
    calls = len(fake.calls)
    other = table_of(net(a=a), fake, key=key, cache=tmp_path)
    assert len(fake.calls) > calls and not other.cached
    assert len(list(tmp_path.glob("*.json"))) == 2


@pytest.mark.parametrize("damage", ["key", "text"])
def test_a_cache_file_holding_another_key_or_garbage_is_rebuilt_not_reused(tmp_path, damage):
    fake = Fake()
    table_of(net(), fake, cache=tmp_path)
    (path,) = tmp_path.glob("*.json")
    if damage == "key":  # as if another device's table sat under this name
        data = json.loads(path.read_text())
        data["key"]["device"] = "cpu: another"
        path.write_text(json.dumps(data))
    else:
        path.write_text("{not json")
    calls = len(fake.calls)
    table = table_of(net(), fake, cache=tmp_path)
    assert len(fake.calls) > calls and not table.cached
    assert LatencyTable.read(path, table.key).cached  # rewritten with the right key


def test_the_pruner_caches_under_prunekit_cache():
    fake = Fake()
    pk.Pruner(net(), X, criterion="l1", target="latency=0.7", measure=fake)
    calls = len(fake.calls)
    pruner = pk.Pruner(net(), X, criterion="l1", target="latency=0.7", measure=fake)
    assert pruner.latency_table.cached and len(fake.calls) == calls


# ---------------------------------------------------------------------------- planning
def test_global_ranks_by_score_per_time_saved():
    """conv_a scores lowest but saves no time: conv_b goes first. With a channel target the
    cheap scores of conv_a would go first."""
    table = hand_table({"conv_a": ([16, 1], [1.0, 1.0]), "conv_b": ([24, 1], [1.0, 0.5])})
    model = net()
    cost, groups = cost_of(model, table)
    scores = [torch.full((g.num_units,), 0.01 if g.name == "conv_a" else 1.0) for g in groups]
    plan_global(cost, scores, "latency", 0.1, Limits(round_to=None))
    assert kept(cost, groups) == {"conv_a": 16, "conv_b": 19}  # 5 units of b save 5/46 > 0.1
    cost, groups = cost_of(model, table)
    plan_global(cost, scores, "channels", 5, Limits(round_to=None))
    assert kept(cost, groups) == {"conv_a": 11, "conv_b": 24}


def test_global_prefers_the_unit_that_saves_more_per_score():
    """A unit of conv_a saves 3% of the time for score 1.5, of conv_b 1% for score 1: conv_a's
    units cost 0.5 per percent, conv_b's 1, so conv_a goes first despite its higher score; a
    fourth unit of conv_a would overshoot the 10% by more than a unit of conv_b saves, so
    conv_b's units fill the gap."""
    table = hand_table({"conv_a": ([16, 0], [1.0, 0.52]), "conv_b": ([24, 0], [1.0, 0.76])})
    cost, groups = cost_of(net(), table)
    scores = [torch.full((g.num_units,), 1.5 if g.name == "conv_a" else 1.0) for g in groups]
    plan_global(cost, scores, "latency", 0.1, Limits(round_to=None))
    assert kept(cost, groups) == {"conv_a": 13, "conv_b": 22}
    assert 0.1 <= 1 - cost.totals()["latency"] < 0.11


@pytest.mark.parametrize("amount", [0.05, 0.2, 0.35])
def test_local_bisects_one_fraction_until_the_predicted_time_meets_the_budget(amount):
    table = hand_table({"conv_a": ([16, 0], [1.0, 0.7]), "conv_b": ([24, 0], [1.0, 0.4])})
    cost, groups = cost_of(net(), table)
    scores = [torch.arange(g.num_units, dtype=torch.float64) for g in groups]
    plan = plan_local(cost, scores, "latency", amount, Limits(round_to=None))
    assert cost.latency() <= 1.0 - amount
    # the same share of each group (to within a unit), the lowest-scoring units
    a, b = kept(cost, groups)["conv_a"], kept(cost, groups)["conv_b"]
    assert abs((16 - a) / 16 - (24 - b) / 24) <= 1 / 16
    assert all(sorted(units) == list(range(len(units))) for units in plan.values())
    # one unit fewer from each group would not have met it: the fraction is the smallest
    assert cost.latency([k + 1 for k in cost.units]) > 1.0 - amount


# conv_a timed at 16, 12, 8, 4, 1 channels costs 16, 16, 8, 8, 8 (rounded up to 8): from 12 up
# it is as slow as 16, from 1 up to 8 as slow as 8. conv_b (24, 18, 12, 6, 1): 24, 24, 16, 8, 8.
FLAT_A = set(range(12, 16)) | set(range(1, 8))
FLAT_B = set(range(18, 24)) | set(range(1, 6))


def unprobed_stepped_table() -> LatencyTable:
    """The table of ``stepped_ms`` measured at the widths of no rounding (no multiples probed)."""
    return table_of(net(), Fake(stepped_ms), limits=Limits(round_to=None))


def test_the_stepped_table_shows_the_flat_steps():
    table = unprobed_stepped_table()
    for name, flat, n in [("conv_a", FLAT_A, 16), ("conv_b", FLAT_B, 24)]:
        times = table.times(name, n)
        on_flat = {k for k in range(1, n) if times[k] >= min(times[k + 1 :]) - FLAT}
        assert on_flat == flat


@pytest.mark.parametrize("scope", ["global", "local"])
def test_auto_rounding_never_keeps_a_width_on_a_flat_step_of_the_table(scope):
    table = unprobed_stepped_table()
    landed = set()
    for amount in [i / 100 for i in range(1, 60, 3)]:
        cost, groups = cost_of(net(), table)
        scores = [
            torch.rand(g.num_units, generator=torch.Generator().manual_seed(0)) for g in groups
        ]
        {"global": plan_global, "local": plan_local}[scope](
            cost, scores, "latency", amount, Limits()
        )
        a, b = kept(cost, groups)["conv_a"], kept(cost, groups)["conv_b"]
        assert a not in FLAT_A and b not in FLAT_B, (amount, a, b)
        landed.add((a, b))
    assert len(landed) > 3  # it did prune to several widths


def test_without_auto_rounding_plans_may_keep_a_width_on_a_flat_step():
    table = unprobed_stepped_table()
    flat = []
    for amount in [i / 100 for i in range(1, 60, 3)]:
        cost, groups = cost_of(net(), table)
        scores = [torch.ones(g.num_units) for g in groups]
        plan_local(cost, scores, "latency", amount, Limits(round_to=None))
        a, b = kept(cost, groups)["conv_a"], kept(cost, groups)["conv_b"]
        flat += [amount] if a in FLAT_A or b in FLAT_B else []
    assert flat  # units removed for nothing: what "auto" prevents


def test_the_probe_narrows_each_class_to_odd_multiples_and_keeps_what_runs_faster():
    """Both test groups are narrow (< 64 units): probed at odd multiples of 1, 2, 4, 8, 16.
    ``stepped_ms`` rounds channels up to 8, so 15, 14 and 12 of conv_a's 16 run as slowly as
    16 and the class keeps multiples of 8; linear timing keeps the defaults."""
    timed = []
    fake = Fake(lambda m: (timed.append(widths(m)), stepped_ms(m))[1])
    table = table_of(net(), fake)
    # after the batch's one pass and the whole model of the first call
    assert timed[2:7] == [(15, 23), (14, 22), (12, 20), (8, 8), (16, 16)]
    assert table.multiples == (8, 8)  # narrow from the probe, wide: no wide group, default
    # 15 ms in all; at (8, 8): 1 + 8*8/64 + 8*8/64 + 8*16/64 = 5 ms
    # conv_b alone at 16 (conv_a has no odd multiple of 16 below 16): 11 ms
    assert table.probe == {
        **{"narrow/1": 1.0, "narrow/2": 1.0, "narrow/4": 1.0},
        **{"narrow/8": 0.3333, "narrow/16": 0.7333},
    }
    # the table then measures multiples of 8 only
    assert table.curves["conv_a"][0] == [16, 8] and table.curves["conv_b"][0] == [24, 16, 8]
    assert table_of(net(), Fake(linear_ms), key={**KEY, "runtime": "linear"}).multiples == (1, 8)


def test_the_probe_finds_a_wide_class_that_wants_multiples_of_16():
    """conv_a has 64 units (wide): odd multiples of 8 cost as much as the next multiple of
    16; conv_b (narrow) is linear."""

    def ms(model: nn.Module) -> float:
        a, b = widths(model)
        return 10.0 + 2.0 * 16 * math.ceil(a / 16) + 3.0 * b

    table = table_of(net(a=64), Fake(ms))
    assert table.multiples == (1, 16)
    assert all(w % 16 == 0 for w in table.curves["conv_a"][0])


def test_an_explicit_rounding_is_not_probed():
    timed = []
    fake = Fake(lambda m: (timed.append(widths(m)), stepped_ms(m))[1])
    table = table_of(net(), fake, limits=Limits(round_to=4))
    assert table.multiples is None
    assert all(a % 4 == 0 and b % 4 == 0 for a, b in timed)


def test_the_pruner_keeps_the_probed_multiples(tmp_path):
    fake = Fake(stepped_ms)
    pruner = pk.Pruner(net(), X, criterion="l1", target="latency=0.8", measure=fake)
    assert pruner.limits.multiples == (8, 8)
    assert {g.round_to for g in pruner.describe().groups} == {8}
    report = pruner.step()
    assert report.layers["conv_a"][1] % 8 == 0 and report.layers["conv_b"][1] % 8 == 0
    assert widths(pruner.model) != (16, 24)
    again = pk.Pruner(net(), X, criterion="l1", target="latency=0.8", measure=fake)
    assert again.latency_table.cached and again.limits.multiples == (8, 8)  # from the cache


def test_kept_at_raises_a_flat_count_to_the_top_of_its_step():
    times = [0.5, 0.5, 0.6, 0.7, 0.8, 0.8, 0.8, 1.0, 1.0]  # by kept count: 4, 5 as slow as 6
    limits = Limits()
    assert limits.kept_sequence(8, times=times) == [6, 3, 2, 1]  # 7 is as slow as 8
    assert limits.kept_at(8, 0.1, times=times) == 8  # 7 would save nothing
    assert limits.kept_at(8, 0.25, times=times) == 6
    assert limits.kept_at(8, 0.5, times=times) == 6  # 4 is on 6's step: keep 6
    assert limits.kept_at(8, 0.6, times=times) == 3
    # an explicit rounding, or none, keeps today's counts
    assert Limits(round_to=None).kept_sequence(8, times=times) == list(range(7, 0, -1))
    assert Limits(round_to=None).kept_at(8, 0.5, times=times) == 4


# ---------------------------------------------------------------------------- the pruner
def short_of_the_table(model: nn.Module) -> float:
    """20% less saved than the table (of ``linear_ms``) predicts: the measurement of a model
    whose groups' savings overlap, say."""
    full = linear_ms(net())
    a, b = widths(model)
    predicted = (full - 2 * (16 - a)) / full * (full - 3 * (24 - b)) / full
    return full * (1 - 0.8 * (1 - predicted))


@pytest.mark.parametrize("steps", [2, 3])
@pytest.mark.parametrize("scope", ["local", "global"])
def test_a_step_off_its_prediction_corrects_the_next(monkeypatch, scope, steps):
    monkeypatch.setattr(prunekit.pruner, "CORRECTIONS", 0)  # no second plan within a step
    fake = Fake()
    pruner = pk.Pruner(
        net(), X, criterion="l1", target="latency=0.6", steps=steps, scope=scope, measure=fake
    )
    fake.ms = short_of_the_table  # the table is built; from now on it is 20% off
    first = pruner.step()
    share = 0.4 / steps  # of the time, removed by the linear schedule's first step
    assert first.measured_latency - first.predicted_latency == pytest.approx(0.2 * share, abs=0.01)
    later = [pruner.step() for _ in range(steps - 1)]
    for report in later:  # planned with the savings scaled by 0.8: predicted as measured
        assert report.measured_latency == pytest.approx(report.predicted_latency)
        assert report.measured_latency == pytest.approx(1 - report.planned["target"], abs=0.03)
    assert later[-1].measured_latency == pytest.approx(0.6, abs=0.03)
    assert later[-1].achieved["latency"] == pytest.approx(1 - later[-1].measured_latency)


@pytest.mark.parametrize("scope", ["local", "global"])
def test_a_step_far_off_its_share_is_planned_again(scope):
    fake = Fake()
    pruner = pk.Pruner(net(), X, criterion="l1", target="latency=0.6", scope=scope, measure=fake)
    fake.ms = short_of_the_table
    calls = len(fake.calls)
    report = pruner.step()
    checks = fake.calls[calls:]
    assert len(checks) == 2 and all(c[0] == 2 for c in checks)  # the parent and the model
    assert report.measured_latency == pytest.approx(0.6, abs=0.03)
    assert report.measured_latency == pytest.approx(report.predicted_latency)
    assert report.planned["target"] == pytest.approx(0.4)


def quadratic(model: nn.Module) -> float:
    """Savings not proportional to the table's: twice the square of what it predicts (0.4
    predicted saves 0.32, 0.5 saves 0.5)."""
    full = linear_ms(net())
    a, b = widths(model)
    predicted = (full - 2 * (16 - a)) / full * (full - 3 * (24 - b)) / full
    return full * (1 - 2 * (1 - predicted) ** 2)


def test_a_third_plan_interpolates_the_scale_between_the_tries_around_the_goal():
    """Scaled by the last try alone the plans would swing from one side of 0.6 to the other;
    the secant through the two tries that bracket it lands nearer than both."""
    fake = Fake()
    pruner = pk.Pruner(net(), X, criterion="l1", target="latency=0.6", measure=fake)
    fake.ms = quadratic
    pruner.step()
    first, second, third = fake.checks[:3]
    assert min(first, second) < 0.6 < max(first, second)
    assert abs(third - 0.6) < min(abs(first - 0.6), abs(second - 0.6))


def test_without_a_try_in_the_window_the_nearest_is_planned_again_and_kept():
    """The test net's widths are too coarse for any plan to measure within [0.57, 0.60] under
    quadratic savings: after the last correction the try nearest the window is made again."""
    fake = Fake()
    pruner = pk.Pruner(net(), X, criterion="l1", target="latency=0.6", measure=fake)
    fake.ms = quadratic
    report = pruner.step()
    tries = fake.checks[:-1]
    assert len(tries) == 1 + prunekit.pruner.CORRECTIONS
    assert all(prunekit.pruner._miss(r, 0.6) > 0 for r in tries)  # none in the window
    nearest = min(tries, key=lambda r: prunekit.pruner._miss(r, 0.6))
    assert fake.checks[-1] == nearest == report.measured_latency


def test_a_correction_that_would_time_the_same_plan_again_ends_the_step():
    """Nothing the table predicts is saved: the scale falls to its floor, where a third plan
    would be the second again; the nearest try (the first, by order) is planned once more."""
    fake = Fake()
    pruner = pk.Pruner(net(), X, criterion="l1", target="latency=0.6", measure=fake)
    fake.ms = lambda m: linear_ms(net())
    pruner.step()
    assert fake.checks == [1.0, 1.0, 1.0]  # not 1 + CORRECTIONS tries of the same plan


def test_the_first_try_measured_in_the_window_is_kept():
    fake = Fake()
    pruner = pk.Pruner(net(), X, criterion="l1", target="latency=0.6", measure=fake)
    report = pruner.step()
    *missed, kept = fake.checks
    assert kept == report.measured_latency
    assert 0.6 - prunekit.pruner.WINDOW <= kept <= 0.6
    assert all(prunekit.pruner._miss(r, 0.6) > 0 for r in missed)


def test_the_report_shows_predicted_and_measured_latency():
    pruner = pk.Pruner(net(), X, criterion="l1", target="latency=0.7", measure=Fake())
    report = pruner.step()
    assert set(report.planned) >= {"target", "params", "macs", "channels", "latency"}
    assert report.as_dict()["measured_latency"] == report.measured_latency
    lines = str(report).splitlines()
    assert "latency ratio=" in lines[0] and any(ln.startswith("latency ") for ln in lines)


def test_resuming_a_latency_run_rebases_on_the_measured_ratio():
    fake = Fake()
    model = net()
    pruner = pk.Pruner(model, X, criterion="l1", target="latency=0.6", steps=2, measure=fake)
    first = pruner.step()
    state = pruner.state_dict()
    assert state["target"] == {"latency": 0.6}
    resumed = pk.Pruner(
        copy.deepcopy(model), X, criterion="l1", target="latency=0.6", steps=2, measure=fake
    )
    resumed.load_state_dict(state)
    last = resumed.step()
    assert last.measured_latency == pytest.approx(0.6, abs=0.03)  # of the unpruned model
    assert first.measured_latency > last.measured_latency


# ---------------------------------------------------------------------------- bad input
def test_a_target_out_of_reach_says_the_best_reachable_ratio():
    fake = Fake()
    with pytest.raises(pk.PrunekitError) as info:
        pk.Pruner(net(), X, criterion="l1", target="latency=0.1", measure=fake, min_channels=8)
    # the table's prediction with 8 channels kept in each group (linear_ms: 114 ms whole)
    best = (1 - 16 / 114) * (1 - 48 / 114)
    assert str(info.value) == (
        f"target latency=0.1 is out of reach: at best latency={best:.3f} of the parent's time, "
        "by its latency table (ignored layers, outputs and min_channels keep the rest); raise "
        "the ratio"
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_timing_on_missing_cuda_is_one_line():
    with pytest.raises(pk.PrunekitError) as info:
        pk.Pruner(net(), X, criterion="l1", target="latency=0.6", latency={"device": "cuda"})
    assert str(info.value) == "device 'cuda' was requested but CUDA is not available: use cpu"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"latency": {"batch_size": 0}}, "batch_size=0 is invalid"),
        ({"latency": {"speed": 1}}, "speed"),
        ({"target": "params=0.3", "latency": {}}, "latency= and measure= time a latency target"),
        ({"target": "params=0.3", "measure": Fake()}, "but the target is params=0.3"),
    ],
)
def test_bad_timing_arguments_are_one_line(kwargs, message):
    with pytest.raises(pk.PrunekitError, match=message) as info:
        pk.Pruner(net(), X, criterion="l1", **{"target": "latency=0.6", **kwargs})
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------------------- real timing
def test_a_latency_target_runs_with_real_timing():
    """Smoke test: the real measurement runs and fills the report (times are not checked).

    Wide enough and at 32x32 so that the convolutions, not the call overhead, take the time:
    on the 6x6 net a noisy table could find no width fast enough for the target."""
    timing = {"batch_size": 2, "repeats": 2, "warmup": 1, "table_repeats": 1}
    model, x = net(64, 96), torch.ones(1, 3, 32, 32)
    pruner = pk.Pruner(model, x, criterion="l1", target="latency=0.8", latency=timing)
    table = pruner.latency_table
    assert table.build_s > 0 and set(table.curves) == {"conv_a", "conv_b"} and not table.cached
    report = pruner.step()
    assert report.measured_latency > 0 and isinstance(report.predicted_latency, float)
    assert "latency" in report.achieved and "latency ratio=" in str(report)


def test_the_runtime_times_the_table_and_every_check(monkeypatch):
    """``latency={"runtime": ...}`` reaches every measurement the pruner makes, and keys its
    table apart from torch's."""
    import prunekit.engine.latency_table as latency_table

    runtimes = []

    def fake_measure_latencies(models, example_inputs, **kwargs):
        runtimes.append(kwargs["runtime"])
        return [{"median_ms": linear_ms(m)} for m in models]

    monkeypatch.setattr(latency_table, "measure_latencies", fake_measure_latencies)
    pytest.importorskip("onnxruntime")
    timing = {"runtime": "onnxruntime", "repeats": 1, "table_repeats": 1}
    pruner = pk.Pruner(net(), X, criterion="l1", target="latency=0.8", latency=timing)
    pruner.step()
    assert runtimes and set(runtimes) == {"onnxruntime"}
    assert pruner.latency_table.key["runtime"].startswith("onnxruntime ")
    torch_key = pk.Pruner(net(), X, criterion="l1", target="latency=0.8").latency_table.key
    assert torch_key["runtime"] == f"torch {torch.__version__}"


def test_a_runtime_that_is_not_installed_is_refused_before_the_table(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # its import fails
    monkeypatch.setattr(prunekit.pruner, "build_table", lambda *a, **k: pytest.fail("built"))
    with pytest.raises(pk.PrunekitError) as info:
        pk.Pruner(
            net(), X, criterion="l1", target="latency=0.6", latency={"runtime": "onnxruntime"}
        )
    assert str(info.value) == (
        "latency runtime 'onnxruntime' needs the onnxruntime package, which is not installed: "
        "pip install onnxruntime"
    )
