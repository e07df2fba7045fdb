"""Schedules: cumulative fractions against their formulas."""

from __future__ import annotations

import itertools

import pytest

import prunekit as pk


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("oneshot", [0.4, 0.4, 0.4, 0.4]),
        ("linear", [0.1, 0.2, 0.3, 0.4]),
        ("constant", [0.1, 0.2, 0.3, 0.4]),
        ("geometric", [1 - 0.6 ** (k / 4) for k in range(1, 5)]),
        ("agp", [0.4 * (1 - (1 - k / 4) ** 3) for k in range(1, 5)]),
    ],
)
def test_cumulative_fractions(name, expected):
    schedule = pk.make_schedule(name)
    got = [schedule.fraction(k, 4, 0.4) for k in range(1, 5)]
    assert got == pytest.approx(expected)
    assert got[-1] == pytest.approx(0.4)
    assert all(a <= b + 1e-12 for a, b in itertools.pairwise(got))


def test_constant_spreads_channels():
    assert pk.make_schedule("constant").space == "channels"
    assert pk.make_schedule("linear").space == "metric"


def test_registry_lists_all():
    assert pk.available("schedules") == ["agp", "constant", "geometric", "linear", "oneshot"]
