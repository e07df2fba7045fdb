"""Schedules: hand-computed cumulative fractions, and the properties every schedule must have."""

from __future__ import annotations

import itertools

import pytest

import prunekit as pk

# cumulative fraction removed after steps 1..n, worked out by hand (6 decimals)
EXPECTED = {
    # 4 steps to 0.4
    ("oneshot", 4, 0.4): [0.4, 0.4, 0.4, 0.4],
    ("linear", 4, 0.4): [0.1, 0.2, 0.3, 0.4],
    ("constant", 4, 0.4): [0.1, 0.2, 0.3, 0.4],
    # keep 0.6 ** (k/4): 0.880112, 0.774597, 0.681732, 0.6
    ("geometric", 4, 0.4): [0.119888, 0.225403, 0.318268, 0.4],
    # 0.4 * (1 - (1 - k/4)^3): (3/4)^3 = 27/64, (1/2)^3 = 1/8, (1/4)^3 = 1/64
    ("agp", 4, 0.4): [0.23125, 0.35, 0.39375, 0.4],
    # 2 steps to 0.75
    ("oneshot", 2, 0.75): [0.75, 0.75],
    ("linear", 2, 0.75): [0.375, 0.75],
    ("geometric", 2, 0.75): [0.5, 0.75],  # keep sqrt(0.25) = 0.5, then 0.25
    ("agp", 2, 0.75): [0.65625, 0.75],  # 0.75 * 7/8
    # 3 steps to 0.5
    ("linear", 3, 0.5): [0.166667, 0.333333, 0.5],
    ("geometric", 3, 0.5): [0.206299, 0.370039, 0.5],  # keep 0.5^(1/3) = 0.793701, 0.629961
    ("agp", 3, 0.5): [0.351852, 0.481481, 0.5],  # 0.5 * 19/27, 0.5 * 26/27
}


@pytest.mark.parametrize(("name", "steps", "target"), list(EXPECTED))
def test_cumulative_fractions(name, steps, target):
    schedule = pk.make_schedule(name)
    got = [schedule.fraction(k, steps, target) for k in range(1, steps + 1)]
    assert got == pytest.approx(EXPECTED[name, steps, target], abs=1e-6)


def test_schedules_differ_in_how_early_they_prune():
    """After the first of 4 steps to 0.4: agp front-loads most, geometric a little."""
    first = {name: pk.make_schedule(name).fraction(1, 4, 0.4) for name in pk.available("schedules")}
    assert first["oneshot"] > first["agp"] > first["geometric"] > first["linear"] > 0


ALL = ["agp", "constant", "geometric", "linear", "oneshot"]


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("steps", [1, 2, 3, 5, 10])
@pytest.mark.parametrize("target", [0.05, 0.4, 0.9])
def test_every_schedule_is_monotone_positive_and_ends_on_the_target(name, steps, target):
    schedule = pk.make_schedule(name)
    got = [schedule.fraction(k, steps, target) for k in range(1, steps + 1)]
    assert got[-1] == pytest.approx(target, abs=1e-12)
    assert got[0] > 0  # every schedule prunes something at its first step
    assert all(a <= b + 1e-12 for a, b in itertools.pairwise(got)), got
    assert all(f <= target + 1e-12 for f in got), got


@pytest.mark.parametrize("steps", [2, 3, 5])
def test_linear_removes_equal_shares(steps):
    got = [pk.make_schedule("linear").fraction(k, steps, 0.6) for k in range(steps + 1)]
    increments = [b - a for a, b in itertools.pairwise(got)]
    assert increments == pytest.approx([0.6 / steps] * steps)


@pytest.mark.parametrize("steps", [2, 3, 5])
def test_geometric_removes_the_same_share_of_what_remains(steps):
    kept = [1 - pk.make_schedule("geometric").fraction(k, steps, 0.6) for k in range(steps + 1)]
    ratios = [b / a for a, b in itertools.pairwise(kept)]
    assert ratios == pytest.approx([0.4 ** (1 / steps)] * steps)
    assert kept[0] == 1.0


@pytest.mark.parametrize("steps", [3, 5, 10])
def test_agp_increments_shrink(steps):
    got = [pk.make_schedule("agp").fraction(k, steps, 0.6) for k in range(steps + 1)]
    increments = [b - a for a, b in itertools.pairwise(got)]
    assert all(a > b for a, b in itertools.pairwise(increments)), increments


def test_constant_spreads_channels():
    assert pk.make_schedule("constant").space == "channels"
    for name in ("oneshot", "linear", "geometric", "agp"):
        assert pk.make_schedule(name).space == "metric", name


def test_registry_lists_all():
    assert pk.available("schedules") == ALL
