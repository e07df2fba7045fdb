"""The control baseline: what the comparison with the baseline rests on when recovery trains."""

from __future__ import annotations

import json

import pytest
import torch
from prunekit_toy.task import ToyTask

import prunekit as pk
from prunekit.runner import run
from prunekit.runner.checkpoint import restore_run
from prunekit.runner.config import resolve
from prunekit.runner.control import control_note, extra_training
from prunekit.runner.seeding import seed_everything

#: a toy run whose recovery fine-tunes 64 images a step (distill would not count)
SETS = [
    "baseline.epochs=1", "prune.steps=2", "toy.train_samples=128", "toy.test_samples=64",
    "recovery.methods=[finetune]", "recovery.options={finetune: {images: 64, lr: 0.02}}",
]  # fmt: skip


def history(*finetuned: int) -> list[dict]:
    steps = [
        {"step": i + 1, "recovery": {"methods": [{"method": "finetune", "images": n}]}}
        for i, n in enumerate(finetuned)
    ]
    return [{"step": 0, "metrics": {"accuracy": 0.8}}, *steps]


def test_extra_training_counts_the_images_of_the_training_methods_only():
    records = history(64, 32)
    records[1]["recovery"]["methods"].append({"method": "distill", "images": 999})
    assert extra_training(records, ["finetune"]) == {"finetune": 96}


def test_without_extra_training_there_is_nothing_to_say():
    assert control_note(history(64), [], None, "accuracy") == ""
    assert control_note(history(0, 0), ["finetune"], None, "accuracy") == ""


def test_a_control_not_run_is_said_plainly():
    assert control_note(history(64, 32), ["finetune"], None, "accuracy") == (
        "Recovery trained the pruned network beyond the baseline's training: finetune 96 images "
        "over 2 steps. The baseline was not given that training (a control was not run: "
        "`--set baseline.control=true` runs one), so a step that beats the baseline may owe it "
        "to the extra training rather than to pruning."
    )


def test_a_control_run_is_reported_against_the_baseline():
    control = {"metrics": {"accuracy": 0.8625}}
    note = control_note(history(64), ["finetune"], control, "accuracy")
    assert note.endswith(
        "Control: the baseline given the same training measures accuracy 0.8625 (+0.0625 "
        "against the baseline's 0.8000); compare the pruned steps with it."
    )


def test_the_control_is_the_baseline_trained_like_the_steps(tmp_path):
    config = resolve("toy", flags={"prune.criterion": "l1"}, sets=[*SETS, "baseline.control=true"])
    lines: list[str] = []
    result = run.start(config, tmp_path / "run", quiet=True, echo=lines.append)
    control = json.loads((tmp_path / "run" / "control.json").read_text())
    assert control["steps"] == [1, 2] and control["methods"] == ["finetune"]
    assert control["images"] == 128  # 64 a step, as the steps used
    # by hand: the baseline, fine-tuned with each step's seed for 64 images
    task = ToyTask(config)
    model = task.build_model()
    restore_run(tmp_path / "run" / "checkpoints" / "step-0.pt", model, task, rng=False)
    for step in (1, 2):
        seed_everything(config["seed"] + step)
        pk.recover(model, None, ["finetune"], task.recovery_batches, task=task,
                   options={"finetune": {"images": 64, "lr": 0.02}})  # fmt: skip
    model.eval()
    with torch.no_grad():
        by_hand = {k: float(v) for k, v in task.evaluate(model).items()}
    assert control["metrics"] == pytest.approx(by_hand, rel=1e-5)  # the run used 1 thread
    report = (tmp_path / "run" / "report.md").read_text()
    accuracy = control["metrics"]["accuracy"]
    assert f"measures accuracy {accuracy:.4f}" in report
    assert sum(line.startswith("control: ") for line in lines) == 2
    # a finished run re-reported keeps its control: it is not trained again
    lines.clear()
    run.resume(tmp_path / "run", echo=lines.append)
    assert not any(line.startswith("control: ") for line in lines)
    assert f"measures accuracy {accuracy:.4f}" in lines[-1]
    assert [r["step"] for r in result.records] == [0, 1, 2]


def test_without_the_control_the_report_says_it_was_not_run(tmp_path):
    config = resolve("toy", flags={"prune.criterion": "l1"}, sets=SETS)
    run.start(config, tmp_path / "run", quiet=True, echo=lambda _: None)
    report = (tmp_path / "run" / "report.md").read_text()
    assert "finetune 128 images over 2 steps. The baseline was not given that training" in report
    assert not (tmp_path / "run" / "control.json").exists()
