"""Configuration resolution: precedence, typing, ranges and error messages."""

from __future__ import annotations

from pathlib import Path

import pytest

import prunekit as pk
from prunekit.errors import PrunekitError
from prunekit.runner.config import (
    RunConfig,
    data_root,
    defaults,
    load_yaml,
    merge,
    resolve,
    validate,
)
from prunekit.settings import keys


def test_precedence_defaults_task_file_flags_set(tmp_path):
    config_file = tmp_path / "c.yaml"
    config_file.write_text("prune:\n  steps: 5\n  scope: global\nbaseline:\n  lr: 1e-3\n")
    config = resolve(
        "toy",
        config_file,
        flags={"prune.steps": 6, "seed": None},  # None: flag not given
        sets=["prune.steps=7", "toy.noise=2"],
    )
    assert config["task"] == "toy"
    assert config["seed"] == RunConfig.model_fields["seed"].default  # the declared default
    assert config["baseline"]["epochs"] == 6  # task default over generic
    assert config["prune"]["scope"] == "global"  # file over task
    assert config["baseline"]["lr"] == 1e-3  # YAML 1.2 float, not the string "1e-3"
    assert config["prune"]["steps"] == 7  # --set over flags over file
    assert config["toy"]["noise"] == 2.0 and isinstance(config["toy"]["noise"], float)


@pytest.mark.parametrize(("value", "expected"), [("auto", "auto"), ("null", None), ("8", 8)])
def test_round_to_takes_auto_null_or_a_positive_integer(value, expected):
    assert resolve("toy")["prune"]["round_to"] == "auto"
    assert resolve("toy", sets=[f"prune.round_to={value}"])["prune"]["round_to"] == expected


@pytest.mark.parametrize("value", ["0", "fast", "2.5", "true"])
def test_round_to_refuses_anything_else(value):
    with pytest.raises(PrunekitError, match=r"'prune\.round_to' in --set must be 'auto', null or"):
        resolve("toy", sets=[f"prune.round_to={value}"])


def test_target_is_replaced_not_merged():
    config = resolve("toy", flags={"prune.target": pk.Target.split("macs=0.3")})
    assert config["prune"]["target"] == {"macs": 0.3}


def test_a_task_default_keeps_the_declared_null_allowed():
    # the toy task sets score_batches: 4, yet null ("a whole epoch") remains allowed
    assert resolve("toy", sets=["prune.score_batches=null"])["prune"]["score_batches"] is None
    with pytest.raises(PrunekitError, match=r"'prune\.score_batches' in --set must be null or an"):
        resolve("toy", sets=["prune.score_batches=0"])


@pytest.mark.parametrize(
    ("key", "value"),
    [("stop.max_drop", 0), ("baseline.epochs", 0), ("toy.noise", 0), ("recovery.methods", "[]")],
)
def test_inclusive_lower_bounds_accept_zero(key, value):
    section, name = key.split(".")
    assert resolve("toy", sets=[f"{key}={value}"])[section][name] in (0, [])


def test_exclusive_bounds_refuse_their_limit():
    with pytest.raises(PrunekitError, match=r"'baseline\.lr' in --set must be a number > 0, got 0"):
        resolve("toy", sets=["baseline.lr=0"])


def test_bool_is_not_an_integer():
    with pytest.raises(PrunekitError, match=r"'prune\.steps' in --set must be an integer >= 1"):
        resolve("toy", sets=["prune.steps=true"])


def test_seed_range_is_checked_up_front():
    with pytest.raises(PrunekitError, match=r"'seed' in --set must be an integer in \[0, "):
        resolve("toy", sets=["seed=99999999999999999999"])


def test_unknown_key_without_close_match_lists_known_keys():
    with pytest.raises(PrunekitError, match="known keys: task, seed"):
        resolve("toy", sets=["zzzzzz=1"])


def test_validate_fills_in_missing_keys():
    config = validate({"task": "toy", "prune": {"steps": 2}}, "test")
    assert config["prune"]["steps"] == 2 and config["prune"]["criterion"] == "taylor"
    assert config["toy"]["width"] == 16  # the task's declared section


def test_merge_is_key_by_key_in_sections_only_and_leaves_its_inputs_alone():
    base = defaults()
    out = merge(base, {"prune": {"steps": 3}})
    out = merge(out, {"prune": {"target": {"macs": 0.3}, "criterion_options": {"variant": "x"}}})
    assert out["prune"]["steps"] == 3 and out["prune"]["scope"] == base["prune"]["scope"]
    assert out["prune"]["target"] == {"macs": 0.3}  # a target is a value
    out = merge(out, {"prune": {"criterion_options": {"normalize": "l2"}}})
    assert out["prune"]["criterion_options"] == {"normalize": "l2"}  # one criterion's options
    assert base["prune"]["steps"] == RunConfig.model_fields["prune"].default_factory().steps


def test_recovery_options_merge_by_method_and_option():
    base = merge(defaults(), {"recovery": {"options": {"distill": {"lr": 1e-3, "flip": True}}}})
    base = merge(base, {"recovery": {"options": {"reconstruct": {"images": 128}}}})
    out = merge(base, {"recovery": {"options": {"distill": {"lr": 3e-4}}}})
    assert out["recovery"]["options"] == {
        "distill": {"lr": 3e-4, "flip": True},
        "reconstruct": {"images": 128},
    }


def test_a_set_changes_one_option_of_the_face_tasks_distillation():
    pytest.importorskip("prunekit_face")
    config = resolve("face", sets=["recovery.options.distill.images=3072"])
    distill = config["recovery"]["options"]["distill"]
    assert distill == {"images": 3072, "flip": True, "batch": 16, "lr": 1e-3}


def test_every_declared_key_has_a_description():
    missing = [key for key, field in keys(RunConfig) if not field.description]
    assert missing == []


def test_data_folder_goes_to_the_tasks_declared_key_as_an_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = resolve("toy", data="here")
    assert config["toy"]["data_dir"] == str(tmp_path / "here")
    assert data_root(config) == str(tmp_path / "here")


def test_data_folder_falls_back_to_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNEKIT_DATA", str(tmp_path))
    assert resolve("toy")["toy"]["data_dir"] == str(tmp_path)
    assert resolve("toy", data=tmp_path / "x")["toy"]["data_dir"] == str(tmp_path / "x")


def test_data_folder_for_a_task_that_reads_none_is_refused(monkeypatch):
    from prunekit_toy.task import ToyTask

    class NoData(ToyTask):
        """A task without a data folder."""

        data_key = None

    message = "reads no data folder, so --data x has no effect"
    with (
        pk.registry("tasks").temporarily("nodata", NoData),
        pytest.raises(PrunekitError, match=message),
    ):
        resolve("nodata", data="x")


def test_unknown_recovery_methods_are_caught_with_a_suggestion():
    with pytest.raises(PrunekitError, match="unknown recovery 'distil': did you mean 'distill'"):
        resolve("toy", sets=["recovery.methods=[distil]"])
    with pytest.raises(PrunekitError, match="unknown recovery 'reconstrut'"):
        resolve("toy", sets=["recovery.options={reconstrut: {}}"])


@pytest.mark.parametrize("text", ["params", "params=x", "=0.4", "flops=0.3"])
def test_target_syntax_is_checked(text):
    with pytest.raises(PrunekitError, match="is malformed: write METRIC=FRACTION"):
        pk.Target.split(text)


def test_load_yaml_rejects_a_non_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(PrunekitError, match="must hold a mapping"):
        load_yaml(path)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_yaml(empty) == {}


def test_a_path_is_a_string_in_the_configuration(tmp_path):
    assert isinstance(resolve("toy", data=Path(tmp_path))["toy"]["data_dir"], str)
