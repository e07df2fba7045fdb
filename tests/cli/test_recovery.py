"""Recovery inside runs: recorded per step, compared side by side, resumable mid-recovery."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from prunekit_toy.task import ToyTask

import prunekit as pk
from prunekit.runner.interrupt import Interrupted
from tests.reliability.support import untimed

FAST = ["--steps", "2", "--quiet", "--set", "baseline.epochs=2", "--set", "toy.train_samples=128"]


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def test_every_step_records_what_recovery_did(cli, tmp_path):
    out = tmp_path / "run"
    args = ["run", "toy", "--criterion", "l1", *FAST, "--recovery", "reconstruct,distill"]
    options = "recovery.options={reconstruct: {images: 64}, distill: {images: 100}}"
    budget = "recovery.budget.images=150"  # distill gets what reconstruct leaves
    code, _, err = cli(*args, "--set", options, "--set", budget, "--out", str(out))
    assert code == 0, err
    for r in records(out)[1:]:
        recovery = r["recovery"]
        assert [m["method"] for m in recovery["methods"]] == ["reconstruct", "distill"]
        assert recovery["images"] == sum(m["images"] for m in recovery["methods"]) == 150
        assert recovery["seconds"] >= max(m["seconds"] for m in recovery["methods"])
        assert set(recovery["before"]) == set(r["metrics"])  # metrics before and after


def test_no_recovery_records_nothing_and_evaluates_once(cli, tmp_path, monkeypatch):
    calls = []
    original = ToyTask.evaluate
    monkeypatch.setattr(
        ToyTask, "evaluate", lambda self, model: calls.append(1) or original(self, model)
    )
    out = tmp_path / "run"
    code, _, err = cli(
        "run", "toy", "--criterion", "l1", *FAST, "--recovery", "none", "--out", str(out)
    )
    assert code == 0, err
    assert [r["recovery"] for r in records(out)[1:]] == [
        {"methods": [], "images": 0, "seconds": 0.0}
    ] * 2
    assert len(calls) == 3  # baseline and two steps: no evaluation before a recovery


def test_compare_puts_recovery_recipes_side_by_side(cli, tmp_path):
    out = tmp_path / "cmp"
    code, _, err = cli(
        "compare", "toy", "--criteria", "l1", "--recoveries", "none,reconstruct+distill",
        *FAST, "--out", str(out),
    )  # fmt: skip
    assert code == 0, err
    runs = sorted(p.name for p in (out / "runs").iterdir())
    assert runs == ["l1-none-seed0", "l1-reconstruct+distill-seed0"]
    rows = json.loads((out / "results.json").read_text())
    assert [(r["criterion"], r["step"]) for r in rows] == [
        ("baseline", 0),
        ("l1 / none", 1), ("l1 / none", 2),
        ("l1 / reconstruct+distill", 1), ("l1 / reconstruct+distill", 2),
    ]  # fmt: skip
    none = records(out / "runs" / "l1-none-seed0")
    both = records(out / "runs" / "l1-reconstruct+distill-seed0")
    assert none[1]["params"] == both[1]["params"]  # same baseline, same criterion, same cut
    assert both[1]["recovery"]["methods"] and not none[1]["recovery"]["methods"]


@pytest.mark.parametrize("recipe", ["none+distill", "+"])
def test_a_malformed_recipe_is_refused_before_anything_is_written(cli, tmp_path, recipe):
    out = tmp_path / "cmp"
    code, _, err = cli(
        "compare", "toy", "--criteria", "l1", "--recoveries", recipe, "--out", str(out)
    )
    assert code == 2 and "is malformed: join method names with +" in err
    assert not out.exists()


def test_resume_after_an_interrupt_in_the_middle_of_recovery_ends_like_an_uninterrupted_run(
    cli, tmp_path, monkeypatch
):
    """The resumed run rebuilds the parent from step 0's checkpoint and redoes step 2 whole."""
    args = ["run", "toy", "--criterion", "taylor", *FAST, "--recovery", "reconstruct,distill"]
    batches = ToyTask.recovery_batches
    served: list[int] = []

    def counted(self):
        for batch in batches(self):
            served.append(1)
            yield batch

    monkeypatch.setattr(ToyTask, "recovery_batches", counted)
    reference = tmp_path / "reference"
    assert cli(*args, "--out", str(reference))[0] == 0
    total, served[:] = len(served), []  # recovery batches of both steps

    def interrupted(self):  # three quarters through: in the middle of step 2's recovery
        for batch in counted(self):
            if len(served) == total * 3 // 4:
                raise Interrupted("SIGINT")
            yield batch

    monkeypatch.setattr(ToyTask, "recovery_batches", interrupted)
    out = tmp_path / "run"
    code, _, err = cli(*args, "--out", str(out))
    assert code == 130, err
    assert [r["step"] for r in records(out)] == [0, 1]  # step 2 never finished
    monkeypatch.undo()
    code, _, err = cli("run", "--resume", str(out), "--quiet")
    assert code == 0, err
    assert untimed(records(out)) == untimed(records(reference))
    a = pk.read_checkpoint(out / "final.pt")["model"]
    b = pk.read_checkpoint(reference / "final.pt")["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
