"""Targets: one metric, its range, and the latency target's kept-ratio semantics."""

from __future__ import annotations

import pytest

import prunekit as pk
from prunekit.runner.config import resolve


@pytest.mark.parametrize(
    ("given", "metric", "value", "fraction"),
    [
        ("params=0.4", "params", 0.4, 0.4),
        ({"macs": 0.3}, "macs", 0.3, 0.3),
        ("channels=0.25", "channels", 0.25, 0.25),
        ("latency=0.6", "latency", 0.6, 0.4),  # keep 60% of the time: remove 40%
        ({"latency": 0.6}, "latency", 0.6, 0.4),
    ],
)
def test_a_target_names_one_metric(given, metric, value, fraction):
    target = pk.Target.parse(given)
    assert (target.metric, target.value) == (metric, value)
    assert target.fraction == pytest.approx(fraction)
    assert str(target) == f"{metric}={value:g}"
    assert target.model_dump() == {metric: value}  # the form a configuration holds


@pytest.mark.parametrize("value", [0, 1, 1.5, -0.2])
def test_latency_outside_the_open_unit_interval_is_one_line_naming_the_range(value):
    with pytest.raises(pk.PrunekitError) as info:
        pk.Target(latency=value)
    assert str(info.value) == (
        f"latency={value} is invalid: give a ratio in (0, 1) of the pruned model's latency "
        "to the parent's"
    )


def test_latency_and_another_metric_together_are_refused():
    with pytest.raises(
        pk.PrunekitError, match="name exactly one of params, macs, channels.*latency"
    ):
        pk.Target(params=0.4, latency=0.6)


def test_the_syntax_error_names_latency_too():
    with pytest.raises(pk.PrunekitError, match=r"params\|macs\|channels .* or latency=RATIO"):
        pk.Target.split("speed=0.6")


def test_the_command_line_and_yaml_take_a_latency_target(tmp_path):
    flags = {"prune.target": pk.Target.split("latency=0.6")}  # what --target latency=0.6 gives
    assert resolve("toy", flags=flags)["prune"]["target"] == {"latency": 0.6}
    config = tmp_path / "run.yaml"
    config.write_text("prune:\n  target: {latency: 0.6}\n")
    assert resolve("toy", config)["prune"]["target"] == {"latency": 0.6}


def test_a_latency_target_out_of_range_in_a_config_is_one_line():
    with pytest.raises(pk.PrunekitError, match=r"prune\.target\.latency.*ratio in \(0, 1\)") as e:
        resolve("toy", sets=["prune.target={latency: 1.5}"])
    assert "\n" not in str(e.value)
