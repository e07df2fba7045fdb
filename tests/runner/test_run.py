"""The run loop through the Python API: --max-drop and best.pt, shared baselines, the note on
an unreliable latency."""

from __future__ import annotations

import os

import pytest
from prunekit_toy.task import ToyTask

import prunekit as pk
from prunekit import latency
from prunekit.runner import run
from prunekit.runner.config import resolve


def silent(_message: str) -> None:
    pass


@pytest.fixture
def scripted_accuracy(monkeypatch):
    """Make the toy task report these accuracies, one per evaluation, in order."""
    values: list[float] = []

    def evaluate(self, model):
        return {"accuracy": values.pop(0), "loss": 0.0}

    monkeypatch.setattr(ToyTask, "evaluate", evaluate)
    return values


def fast_config(**sets: object) -> dict:
    overrides = ["baseline.epochs=0", "recovery.methods=[]", *(f"{k}={v}" for k, v in sets.items())]
    return resolve("toy", flags={"prune.criterion": "l1"}, sets=overrides)


def test_max_drop_stops_early_and_keeps_the_last_tolerated_model(tmp_path, scripted_accuracy):
    scripted_accuracy += [0.90, 0.88, 0.70, 0.95]  # baseline, step 1, step 2 (too low), unused
    config = fast_config(**{"stop.max_drop": 0.05, "prune.steps": 3})
    result = run.start(config, tmp_path / "run", quiet=True, echo=silent)
    assert result.stopped_early
    assert [r["step"] for r in result.records] == [0, 1, 2]
    steps = {name: len(pk.read_checkpoint(tmp_path / "run" / name)["meta"]["history"]) - 1
             for name in ("best.pt", "final.pt")}  # fmt: skip
    assert steps == {"best.pt": 1, "final.pt": 2}
    # resuming a stopped run does not go on pruning
    assert [r["step"] for r in run.resume(tmp_path / "run", echo=silent).records] == [0, 1, 2]


def test_max_drop_respects_lower_is_better(tmp_path, scripted_accuracy, monkeypatch):
    monkeypatch.setattr(ToyTask, "higher_is_better", False)
    scripted_accuracy += [0.10, 0.05, 0.30]  # lower is better: step 2 is 0.2 worse
    config = fast_config(**{"stop.max_drop": 0.1, "prune.steps": 2})
    result = run.start(config, tmp_path / "run", quiet=True, echo=silent)
    assert result.stopped_early and len(result.records) == 3


def test_evaluate_must_report_the_primary_metric(tmp_path, monkeypatch):
    monkeypatch.setattr(ToyTask, "evaluate", lambda self, model: {"top1": 1.0})
    with pytest.raises(pk.PrunekitError, match="without its primary metric 'accuracy'"):
        run.start(fast_config(), tmp_path / "run", quiet=True, echo=silent)


def test_a_shared_baseline_is_loaded_not_prepared(tmp_path, monkeypatch):
    config = fast_config(**{"prune.steps": 1})
    record = run.make_baseline(config, tmp_path / "baseline.pt", quiet=True, echo=silent)

    def forbidden(self, model):
        raise AssertionError("the baseline must not be prepared again")

    monkeypatch.setattr(ToyTask, "prepare_baseline", forbidden)
    other = resolve(
        "toy",
        flags={"prune.criterion": "random", "seed": 3},
        sets=["prune.steps=1", f"baseline.checkpoint={tmp_path / 'baseline.pt'}"],
    )
    result = run.start(other, tmp_path / "run", quiet=True, echo=silent)
    assert result.records[0]["metrics"] == record["metrics"]
    assert result.records[0]["baseline"] == f"loaded {tmp_path / 'baseline.pt'}"
    assert result.records[1]["params"] < record["params"]


@pytest.mark.parametrize(("load", "note"), [(5.2, "unreliable: load 5.2 on 2 cores"), (0.0, None)])
def test_a_step_record_notes_an_unreliable_latency(tmp_path, monkeypatch, load, note):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(latency, "_others_ready", lambda: load)
    config = fast_config(**{"prune.steps": 1, "latency.repeats": 1, "latency.warmup": 0})
    result = run.start(config, tmp_path / "run", quiet=True, echo=silent)
    assert [r.get("latency_note") for r in result.records] == [note, note]
    assert ("(unreliable) |" in (tmp_path / "run/report.md").read_text()) == bool(note)


def test_steps_are_timed_on_the_configured_runtime_and_device(tmp_path, monkeypatch):
    calls: list[dict] = []
    real = run.measure_latency

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(run, "measure_latency", spy)
    config = fast_config(**{"prune.steps": 1, "latency.runtime": "onnxruntime"})
    config["latency"].update(repeats=1, warmup=0, batch_size=2)
    run.start(config, tmp_path / "run", quiet=True, echo=silent)
    assert [(c["runtime"], str(c["device"])) for c in calls] == [("onnxruntime", "cpu")] * 2


def test_a_latency_target_is_timed_with_the_runs_latency_settings(tmp_path, monkeypatch):
    seen: list = []
    real = pk.Pruner

    def spy(*args, **kwargs):
        seen.append(kwargs["latency"])
        return real(*args, **kwargs)

    monkeypatch.setattr(run.pk, "Pruner", spy)
    run.start(fast_config(**{"prune.steps": 1}), tmp_path / "a", quiet=True, echo=silent)
    config = fast_config(**{"prune.steps": 1, "latency.repeats": 2, "latency.batch_size": 4})
    config["prune"]["target"] = {"latency": 0.9}
    run.start(config, tmp_path / "b", quiet=True, echo=silent)
    assert seen[0] is None
    assert seen[1]["repeats"] == 2 and seen[1]["batch_size"] == 4
    assert seen[1]["device"] == "cpu" and seen[1]["threads"] == 1  # the toy's run threads


def test_configured_ignored_layers_stay_whole_besides_the_tasks(tmp_path):
    config = fast_config(**{"prune.steps": 1, "prune.ignored_layers": "[features.0]"})
    run.start(config, tmp_path / "run", quiet=True, echo=silent)
    weights = pk.read_checkpoint(tmp_path / "run" / "final.pt")["model"]
    assert weights["features.0.weight"].shape[0] == 16  # ignored by the config
    assert weights["features.4.weight"].shape[0] < 32  # pruned
    assert weights["classifier.weight"].shape[0] == 4  # ignored by the task


def test_a_misspelt_ignored_layer_is_named(tmp_path):
    config = fast_config(**{"prune.ignored_layers": "[features.O]"})
    with pytest.raises(pk.PrunekitError, match=r"ignored_layers: .* has no layer 'features.O'"):
        run.start(config, tmp_path / "run", quiet=True, echo=silent)
