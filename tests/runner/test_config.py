"""Configuration resolution: precedence, typing, ranges and error messages."""

from __future__ import annotations

import pytest

from prunekit.errors import PrunekitError
from prunekit.runner.config import DEFAULTS, load_yaml, merge, parse_target, resolve, validate


def test_precedence_defaults_task_file_flags_set(tmp_path):
    config_file = tmp_path / "c.yaml"
    config_file.write_text("prune:\n  steps: 5\n  scope: global\nfinetune:\n  lr: 1e-3\n")
    config = resolve(
        "toy",
        config_file,
        flags={"prune.steps": 6, "seed": None},  # None: flag not given
        sets=["prune.steps=7", "toy.noise=2"],
    )
    assert config["task"] == "toy"
    assert config["seed"] == DEFAULTS["seed"]  # generic default
    assert config["baseline"]["epochs"] == 6  # task default over generic
    assert config["prune"]["scope"] == "global"  # file over task
    assert config["finetune"]["lr"] == 1e-3  # YAML 1.2 float, not the string "1e-3"
    assert config["prune"]["steps"] == 7  # --set over flags over file
    assert config["toy"]["noise"] == 2.0 and isinstance(config["toy"]["noise"], float)


@pytest.mark.parametrize(("value", "expected"), [("auto", "auto"), ("null", None), ("8", 8)])
def test_round_to_takes_auto_null_or_a_positive_integer(value, expected):
    assert resolve("toy")["prune"]["round_to"] == "auto"
    assert resolve("toy", sets=[f"prune.round_to={value}"])["prune"]["round_to"] == expected


@pytest.mark.parametrize("value", ["0", "fast", "2.5", "true"])
def test_round_to_refuses_anything_else(value):
    with pytest.raises(PrunekitError, match=r"'prune\.round_to' must be 'auto', null or an int"):
        resolve("toy", sets=[f"prune.round_to={value}"])


def test_target_is_replaced_not_merged():
    config = resolve("toy", flags={"prune.target": parse_target("macs=0.3")})
    assert config["prune"]["target"] == {"macs": 0.3}


def test_generic_any_key_stays_nullable_when_a_task_sets_it():
    # the toy task sets score_batches: 4, yet null ("a whole epoch") remains allowed
    assert resolve("toy", sets=["prune.score_batches=null"])["prune"]["score_batches"] is None
    with pytest.raises(PrunekitError, match=r"'prune\.score_batches' must be an integer >= 1"):
        resolve("toy", sets=["prune.score_batches=0"])


def test_float_ranges_are_exclusive_and_int_ranges_inclusive():
    assert resolve("toy", sets=["finetune.epochs=0"])["finetune"]["epochs"] == 0
    with pytest.raises(PrunekitError, match=r"'finetune.lr' must be a number > 0\.0, got 0"):
        resolve("toy", sets=["finetune.lr=0"])


def test_bool_is_not_an_integer():
    with pytest.raises(PrunekitError, match=r"'prune\.steps' in --set must be an integer"):
        resolve("toy", sets=["prune.steps=true"])


def test_unknown_key_without_close_match_lists_known_keys():
    with pytest.raises(PrunekitError, match="known keys: task, seed"):
        resolve("toy", sets=["zzzzzz=1"])


def test_validate_fills_in_missing_keys():
    config = validate({"task": "toy", "prune": {"steps": 2}}, "test")
    assert config["prune"]["steps"] == 2 and config["prune"]["criterion"] == "taylor"


def test_merge_leaves_its_inputs_alone():
    base = {"a": {"b": 1}}
    assert merge(base, {"a": {"c": 2}}) == {"a": {"b": 1, "c": 2}}
    assert base == {"a": {"b": 1}}


@pytest.mark.parametrize("text", ["params", "params=x", "=0.4"])
def test_parse_target_rejects_malformed_text(text):
    with pytest.raises(PrunekitError, match="--target expects"):
        parse_target(text)


def test_load_yaml_rejects_a_non_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(PrunekitError, match="must hold a mapping"):
        load_yaml(path)
    assert load_yaml(_empty(tmp_path)) == {}


def _empty(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("")
    return path
