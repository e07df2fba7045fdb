"""Registries: decorators, entry points, helpful errors."""

from __future__ import annotations

import sys

import pytest
import torch

import prunekit as pk
from prunekit.registry import Registry


def test_decorator_registers_a_criterion():
    @pk.register_criterion("unit_test_ones")
    class Ones(pk.Criterion):
        """Every unit scores one."""

        def score(self, groups, step):
            return [torch.ones(g.num_units) for g in groups]

    assert "unit_test_ones" in pk.available("criteria")
    assert pk.registry("criteria").describe("unit_test_ones") == "Every unit scores one."


def test_unknown_name_suggests_and_lists():
    with pytest.raises(pk.PrunekitError, match=r"did you mean 'l1'\? known criteria are"):
        pk.registry("criteria").get("l11")


def test_unknown_registry_kind():
    with pytest.raises(pk.PrunekitError, match="unknown registry 'widgets'"):
        pk.available("widgets")


def test_broken_entry_point_names_the_plugin(monkeypatch):
    class EP:
        name, value, group = "broken", "nowhere.module:thing", "prunekit.tests"

        def load(self):
            raise ImportError("No module named 'nowhere'")

    reg = Registry("thing", "prunekit.tests")
    module = sys.modules["prunekit.registry"]  # pk.registry is the lookup function
    monkeypatch.setattr(module, "entry_points", lambda group: [EP()])
    with pytest.raises(pk.PrunekitError, match="thing plugin 'broken'.*failed to import"):
        reg.names()
