"""Registries: kind checks, provenance, shadowing, temporary registrations, entry points.

Every test that registers something uses a fresh :class:`Registry` or
:meth:`Registry.temporarily`, so nothing leaks into the process-wide registries.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import warnings
from types import SimpleNamespace

import pytest
import torch

import prunekit as pk
from prunekit.registry import Registry
from prunekit.schedules import Linear

registry_module = importlib.import_module("prunekit.registry")  # pk.registry is a function
HERE = __name__.split(".")[0]  # where a class defined in this file says it comes from
BASE = "prunekit.criteria.base.Criterion"


def fresh() -> Registry:
    return Registry("thing", "prunekit.tests", "prunekit.criteria.base:Criterion")


class Ones(pk.Criterion):
    """Every unit scores one."""

    def score(self, groups, step):
        return [torch.ones(g.num_units) for g in groups]


class Twos(pk.Criterion):
    """Every unit scores two."""

    def score(self, groups, step):
        return [torch.full((g.num_units,), 2.0) for g in groups]


class NotACriterion:
    """Has the right shape but the wrong base class."""

    def score(self, groups, step):
        return []


class FakeEntryPoint:
    """What ``importlib.metadata.entry_points(group=...)`` yields, with a fake distribution."""

    def __init__(self, name, value, load, dist=("prunekit-plugin", "1.2.3")):
        self.name, self.value, self.group = name, value, "prunekit.tests"
        self.dist = SimpleNamespace(name=dist[0], version=dist[1])
        self._load = load
        self.loads = 0

    def load(self):
        self.loads += 1
        return self._load()


def _raise_import_error():
    raise ImportError("No module named 'nowhere'")


@pytest.fixture
def plugins(monkeypatch):
    """Install fake entry points: ``plugins(ep, ...)``; returns the calls made for lookups."""
    calls: list[str] = []

    def install(*eps):
        def entry_points(group):
            calls.append(group)
            return [ep for ep in eps if ep.group == group]

        monkeypatch.setattr(registry_module, "entry_points", entry_points)
        return calls

    return install


def good_and_broken():
    good = FakeEntryPoint("good", "goodpkg:Twos", lambda: Twos, ("prunekit-good", "1.2.3"))
    broken = FakeEntryPoint(
        "broken", "nowhere.module:thing", _raise_import_error, ("prunekit-broken", "0.1")
    )
    return good, broken


# ---------------------------------------------------------------------------- registering
def test_decorator_registers_and_returns_the_class():
    reg = fresh()
    assert reg.register("ones")(Ones) is Ones
    assert reg.get("ones") is Ones
    assert reg.names() == ["ones"]
    assert reg.describe("ones") == "Every unit scores one."


@pytest.mark.parametrize(
    "obj",
    [NotACriterion, Linear, Ones(), lambda groups, step: [], "prunekit.criteria:L1", None],
    ids=["plain-class", "a-schedule", "an-instance", "a-function", "a-string", "none"],
)
def test_registering_anything_but_a_subclass_of_the_base_is_refused(obj):
    reg = fresh()
    with pytest.raises(pk.PrunekitError, match=f"as thing 'x'.*must be a subclass of {BASE}$"):
        reg.register("x")(obj)
    assert reg.names() == []
    with pytest.raises(pk.PrunekitError, match="must be a subclass"), reg.temporarily("x", obj):
        pytest.fail("entered the block")  # pragma: no cover
    assert reg.names() == []


def test_the_built_in_registries_check_their_own_base_class():
    try:
        with pytest.raises(pk.PrunekitError, match="must be a subclass of prunekit.criteria.base"):
            pk.register_criterion("unit_test_linear")(Linear)
        with pytest.raises(pk.PrunekitError, match="must be a subclass of prunekit.schedules.base"):
            pk.register_schedule("unit_test_ones")(Ones)
        assert "unit_test_linear" not in pk.available("criteria")
        assert "unit_test_ones" not in pk.available("schedules")
    finally:  # should the refusal ever regress, do not leak into later tests
        pk.registry("criteria").unregister("unit_test_linear")
        pk.registry("schedules").unregister("unit_test_ones")


def test_shadowing_a_name_warns_with_both_sources():
    reg = fresh()
    reg.register("ones")(Ones)
    with pytest.warns(UserWarning, match=f"thing 'ones' from {HERE} shadows the one from {HERE}"):
        reg.register("ones")(Twos)
    assert reg.get("ones") is Twos  # the later registration wins


def test_registering_the_same_class_again_is_silent():
    reg = fresh()
    reg.register("ones")(Ones)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reg.register("ones")(Ones)
    assert reg.get("ones") is Ones


def test_unregister_forgets_a_name_and_ignores_unknown_ones():
    reg = fresh()
    reg.register("ones")(Ones)
    reg.register("twos")(Twos)
    reg.unregister("ones")
    reg.unregister("never-registered")
    assert reg.names() == ["twos"]
    with pytest.raises(pk.PrunekitError, match="unknown thing 'ones'"):
        reg.get("ones")


# ---------------------------------------------------------------------------- temporarily
def test_temporarily_registers_for_the_block_only():
    reg = fresh()
    with reg.temporarily("ones", Ones) as obj:
        assert obj is Ones
        assert reg.get("ones") is Ones and reg.source("ones") == HERE
    assert reg.names() == []


def test_temporarily_restores_what_was_there_silently():
    reg = fresh()
    reg.register("ones")(Ones)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a deliberate, temporary override does not warn
        with reg.temporarily("ones", Twos):
            assert reg.get("ones") is Twos
    assert reg.get("ones") is Ones and reg.source("ones") == HERE


def test_temporarily_restores_after_an_exception():
    reg = fresh()
    reg.register("ones")(Ones)
    with (
        pytest.raises(RuntimeError, match="boom"),
        reg.temporarily("ones", Twos),
        reg.temporarily("twos", Twos),
    ):
        raise RuntimeError("boom")
    assert reg.names() == ["ones"] and reg.get("ones") is Ones


def test_temporarily_restores_an_entry_point_it_overrode(plugins):
    good, _ = good_and_broken()
    plugins(good)
    reg = fresh()
    with reg.temporarily("good", Ones):
        assert reg.get("good") is Ones
    # the plugin was loaded before the override, so it is what comes back
    assert reg.get("good") is Twos and reg.source("good") == "prunekit-good 1.2.3"
    assert good.loads == 1


def test_temporarily_on_the_criteria_registry_leaks_nothing():
    assert "unit_test_ones" not in pk.available("criteria")
    with pk.registry("criteria").temporarily("unit_test_ones", Ones):
        assert "unit_test_ones" in pk.available("criteria")
        assert pk.registry("criteria").describe("unit_test_ones") == "Every unit scores one."
        assert isinstance(pk.make_criterion("unit_test_ones"), Ones)
    assert "unit_test_ones" not in pk.available("criteria")
    with pytest.raises(pk.PrunekitError, match="unknown criterion 'unit_test_ones'"):
        pk.make_criterion("unit_test_ones")


# ---------------------------------------------------------------------------- provenance
@pytest.mark.parametrize(
    ("kind", "name"),
    [("criteria", "l1"), ("criteria", "taylor"), ("schedules", "linear"), ("schedules", "agp")],
)
def test_built_in_names_come_from_prunekit(kind, name):
    assert pk.registry(kind).source(name) == "prunekit"


def test_an_installed_plugin_names_its_distribution():
    try:
        version = importlib.metadata.version("prunekit-demo-criterion")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("tests/plugins/prunekit-demo-criterion is not installed")
    criteria = pk.registry("criteria")
    assert criteria.source("demo_magnitude") == f"prunekit-demo-criterion {version}"
    assert criteria.describe("demo_magnitude").startswith("Mean absolute weight")


def test_source_of_an_unknown_name_is_an_error():
    with pytest.raises(pk.PrunekitError, match="unknown criterion 'nope'"):
        pk.registry("criteria").source("nope")


# ---------------------------------------------------------------------------- entry points
def test_entry_points_are_read_lazily_once_from_the_registry_group(plugins):
    good, _ = good_and_broken()
    calls = plugins(good)
    reg = fresh()
    assert calls == []  # building a registry reads nothing
    assert reg.get("good") is Twos
    reg.names()
    reg.broken()
    assert calls == ["prunekit.tests"] and good.loads == 1


def test_a_broken_entry_point_is_reported_once_and_the_rest_stays_usable(plugins):
    good, broken = good_and_broken()
    plugins(good, broken)
    reg = fresh()
    reg.register("ones")(Ones)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # a second report would be recorded too
        assert reg.names() == ["good", "ones"]
        assert reg.get("good") is Twos and reg.get("ones") is Ones
        assert reg.source("good") == "prunekit-good 1.2.3" and reg.source("ones") == HERE
        for _ in range(2):
            with pytest.raises(pk.PrunekitError) as info:
                reg.get("broken")
        reports = reg.broken()
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1, messages
    assert caught[0].category is UserWarning
    assert messages[0] == (
        "thing plugin 'broken' is unavailable: nowhere.module:thing from prunekit-broken 0.1 "
        "failed to import: No module named 'nowhere'; fix or uninstall the distribution that "
        "provides it"
    )
    assert reports == {"broken": messages[0]}
    assert str(info.value) == messages[0]  # looking the broken name up says why
    assert broken.loads == 1


def test_an_entry_point_of_the_wrong_kind_is_reported_not_registered(plugins):
    wrong = FakeEntryPoint("wrong", "wrongpkg:NotACriterion", lambda: NotACriterion)
    plugins(wrong)
    reg = fresh()
    with pytest.warns(UserWarning, match="thing plugin 'wrong' is unavailable") as caught:
        assert reg.names() == []
    (message,) = [str(w.message) for w in caught]
    assert "from prunekit-plugin 1.2.3" in message and f"must be a subclass of {BASE}" in message
    with pytest.raises(pk.PrunekitError, match="thing plugin 'wrong' is unavailable"):
        reg.get("wrong")


def test_an_entry_point_shadowing_an_in_tree_name_warns(plugins):
    good, _ = good_and_broken()
    plugins(good)
    reg = fresh()
    reg.register("good")(Ones)
    shadows = f"thing 'good' from prunekit-good 1.2.3 shadows the one from {HERE}"
    with pytest.warns(UserWarning, match=shadows):
        reg.names()
    assert reg.get("good") is Twos and reg.source("good") == "prunekit-good 1.2.3"


# ---------------------------------------------------------------------------- errors
def test_unknown_name_suggests_and_lists():
    with pytest.raises(pk.PrunekitError, match=r"did you mean 'l1'\? known criteria are .*l2"):
        pk.registry("criteria").get("l11")


def test_unknown_name_without_a_close_match_lists_everything():
    reg = fresh()
    reg.register("ones")(Ones)
    reg.register("twos")(Twos)
    with pytest.raises(pk.PrunekitError) as info:
        reg.get("zzzzzz")
    assert str(info.value) == "unknown thing 'zzzzzz': known things are ones, twos"


def test_unknown_registry_kind():
    with pytest.raises(pk.PrunekitError, match="unknown registry 'widgets'"):
        pk.available("widgets")
