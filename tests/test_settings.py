"""Declared settings: one declaration gives the check, the message and the docs' wording."""

from __future__ import annotations

from typing import Literal

import pytest
from pydantic import Field

import prunekit as pk
from prunekit.latency import LatencySettings
from prunekit.settings import Settings, check, describe, keys, sections


class Inner(Settings):
    n: int = Field(2, ge=1, description="a count")
    mode: Literal["a", "b"] = Field("a", description="a choice")


class Outer(Settings):
    lr: float = Field(0.1, gt=0, description="a rate")
    decay: float = Field(0.0, ge=0, le=1, description="a share")
    inner: Inner = Field(default_factory=Inner)
    target: pk.Target = Field(pk.Target(params=0.4), description="an atomic value")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"lr": 0}, "config key 'lr' in test must be a number > 0, got 0"),
        ({"decay": 1.5}, "config key 'decay' in test must be a number in [0, 1], got 1.5"),
        ({"inner": {"n": 0}}, "config key 'inner.n' in test must be an integer >= 1, got 0"),
        ({"inner": {"n": "3"}}, "must be an integer >= 1, got '3' (str)"),
        ({"inner": {"n": True}}, "must be an integer >= 1, got True (bool)"),
        ({"inner": {"mode": "c"}}, "config key 'inner.mode' in test must be one of a, b"),
        ({"inner": {"nn": 1}}, "unknown config key 'inner.nn' in test: did you mean 'inner.n'?"),
        ({"inner": 3}, "config key 'inner' in test must be a mapping, got 3"),
    ],
)
def test_a_mistake_is_one_line_naming_key_source_and_rule(data, message):
    with pytest.raises(pk.PrunekitError, match=None) as error:
        check(Outer, data, "test")
    assert message in str(error.value) and "\n" not in str(error.value)


def test_the_same_rule_speaks_of_arguments_when_built_directly():
    with pytest.raises(pk.PrunekitError, match=r"^n=0 is invalid: give an integer >= 1$"):
        Inner(n=0)


def test_an_integer_is_a_number_but_not_the_reverse():
    assert check(Outer, {"lr": 1}, "test").lr == 1.0
    with pytest.raises(pk.PrunekitError, match="must be an integer"):
        check(Inner, {"n": 2.0}, "test")


def test_keys_walk_sections_but_not_atomic_values():
    assert [k for k, _ in keys(Outer)] == ["lr", "decay", "inner.n", "inner.mode", "target"]
    assert list(sections(Outer)) == ["inner"]


def test_descriptions_come_from_the_declaration():
    fields = dict(keys(Outer))
    assert describe(fields["decay"].annotation, fields["decay"]) == "a number in [0, 1]"
    assert describe(fields["inner.mode"].annotation, fields["inner.mode"]) == "one of a, b"
    threads = LatencySettings.model_fields["threads"]
    assert describe(threads.annotation, threads) == "null or an integer in [1, 1024]"
