"""Diverging training is blamed on the phase that diverged, with the setting to change, and
following the advice works."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from prunekit_toy.task import ToyTask

import prunekit as pk
from tests.reliability.support import TOY

RUN = ["run", "toy", "--criterion", "taylor", *TOY]


def error(result: tuple[int, str, str]) -> str:
    code, _, err = result
    assert code == 2 and err.startswith("prunekit: error: ") and err.count("\n") == 1, err
    return err.removeprefix("prunekit: error: ").rstrip("\n")


def edit_config(out: Path, old: str, new: str) -> None:
    config = out / "config.yaml"
    assert old in config.read_text()
    config.write_text(config.read_text().replace(old, new))


def test_a_diverging_baseline_is_blamed_not_the_recovery(cli, tmp_path):
    out = tmp_path / "run"
    # at this rate the weights stay finite but BatchNorm's running variance overflows: the
    # recovery used to take the blame ("recovery 'finetune' diverged ... lower its lr")
    message = error(cli(*RUN, "--set", "baseline.lr=1e4", "--out", str(out)))
    assert message.startswith("the baseline training diverged: 'features.")
    assert message.endswith(
        f"running_var' is not finite; lower baseline.lr in {out / 'config.yaml'}, then "
        f"`prunekit run --resume {out}`"
    )
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml"]
    edit_config(out, "lr: 10000.0", "lr: 0.05")  # what the message says
    code, _, err = cli("run", "--resume", str(out), "--quiet")
    assert code == 0, err
    assert (out / "final.pt").is_file()


def test_a_baseline_whose_weights_overflow(cli, tmp_path):
    out = tmp_path / "run"
    assert error(cli(*RUN, "--set", "baseline.lr=1e12", "--out", str(out))) == (
        "the baseline training diverged: 'features.0.weight' is not finite; lower baseline.lr "
        f"in {out / 'config.yaml'}, then `prunekit run --resume {out}`"
    )


def test_a_baseline_checkpoint_with_nan_weights(cli, tmp_path, toy_run):
    broken = tmp_path / "nan.pt"
    state = torch.load(toy_run / "checkpoints" / "step-0.pt", weights_only=True)
    state["model"]["features.4.weight"][0, 0, 0, 0] = math.nan
    torch.save(state, broken)
    out = tmp_path / "run"
    assert error(cli(*RUN, "--set", f"baseline.checkpoint={broken}", "--out", str(out))) == (
        f"the baseline checkpoint {broken} is broken: 'features.4.weight' is not finite; use "
        "another one"
    )


def test_a_diverging_recovery_names_where_to_change_its_lr(cli, tmp_path):
    out = tmp_path / "run"
    message = error(
        cli(*RUN, "--set", "recovery.options={finetune: {lr: 1.0e+6}}", "--out", str(out))
    )
    assert message.startswith("step 1: recovery 'finetune' diverged: it produced NaN/inf")
    assert message.endswith(
        "lower its lr or drop the method; the last good checkpoint is "
        f"{out / 'checkpoints' / 'step-0.pt'}: a resumed run reads its settings from "
        f"{out / 'config.yaml'}, so make the change there, then resume"
    )
    edit_config(out, "lr: 1000000.0", "lr: 0.02")
    code, _, err = cli("run", "--resume", str(out), "--quiet")
    assert code == 0, err


@pytest.mark.parametrize(
    ("step", "methods", "origin", "fix"),
    [
        (1, "[finetune]", "the baseline training", "start a new run with a lower baseline.lr"),
        (
            2,
            "[finetune]",
            "step 1's recovery (finetune)",
            "delete it, lower recovery.options.finetune.lr in {config} and resume",
        ),
        (  # reconstruct has no learning rate
            2,
            "[reconstruct]",
            "step 1's recovery (reconstruct)",
            "delete it, drop a method from recovery.methods in {config} and resume",
        ),
    ],
)
def test_a_non_finite_scoring_loss_names_the_phase_before_it(
    step, methods, origin, fix, cli, tmp_path, monkeypatch
):
    steps: list[int] = []
    prune, loss = pk.Pruner.step, ToyTask.loss

    def counted(self):
        steps.append(1)
        return prune(self)

    def poisoned(self, model, batch):  # scoring runs in eval mode
        hit = len(steps) == step - 1 and not model.training
        return loss(self, model, batch) * (math.inf if hit else 1.0)

    monkeypatch.setattr(pk.Pruner, "step", counted)
    monkeypatch.setattr(ToyTask, "loss", poisoned)
    out = tmp_path / "run"
    last = out / "checkpoints" / f"step-{step - 1}.pt"
    assert error(cli(*RUN, "--set", f"recovery.methods={methods}", "--out", str(out))) == (
        f"step {step}: the scoring loss is inf: the run stopped; the last good checkpoint is "
        f"{last}, unless the model it holds diverged in {origin}: then "
        + fix.format(config=out / "config.yaml")
    )
