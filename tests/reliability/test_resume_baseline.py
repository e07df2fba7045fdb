"""An interrupt during the baseline training: the resumed run goes on from the last finished
epoch (``checkpoints/baseline-epoch.pt``) and ends exactly like an uninterrupted run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from prunekit_toy.task import ToyTask

import prunekit as pk
from prunekit.runner.interrupt import Interrupted
from tests.reliability.support import TAYLOR_RUN as RUN
from tests.reliability.support import log


def checkpoints(run_dir: Path) -> list[str]:
    return sorted(p.name for p in (run_dir / "checkpoints").iterdir())


@pytest.fixture
def interrupted_run(cli, tmp_path, monkeypatch) -> tuple[Path, list[int]]:
    """A run (baseline: 2 epochs) interrupted in the middle of its baseline's 2nd epoch, and
    the list that gets an entry per baseline epoch begun, by it and by later runs."""
    trained: list[int] = []
    train_epoch, epoch_batches = ToyTask.train_epoch, ToyTask.epoch_batches

    def counted(self, model, optimizer):
        trained.append(1)
        return train_epoch(self, model, optimizer)

    def interrupted(self):  # the 2nd batch of the 2nd epoch: epoch 1 is saved, 2 half done
        for index, batch in enumerate(epoch_batches(self)):
            if len(trained) == 2 and index == 1:
                raise Interrupted("SIGINT")
            yield batch

    monkeypatch.setattr(ToyTask, "train_epoch", counted)
    monkeypatch.setattr(ToyTask, "epoch_batches", interrupted)
    out = tmp_path / "run"
    code, _, err = cli(*RUN, "--out", str(out))
    assert code == 130, err
    assert checkpoints(out) == ["baseline-epoch.pt"]  # no step 0 yet
    assert torch.load(out / "checkpoints" / "baseline-epoch.pt")["epochs"] == 1
    monkeypatch.setattr(ToyTask, "epoch_batches", epoch_batches)
    trained.clear()
    return out, trained


def test_resume_continues_the_baseline_after_its_last_epoch(interrupted_run, cli, taylor_run):
    out, trained = interrupted_run
    code, printed, err = cli("run", "--resume", str(out))
    assert code == 0, err
    assert len(trained) == 1  # the 2nd epoch alone, not both
    assert f"baseline: resuming its training after epoch 1 ({out / 'checkpoints'}" in printed
    assert log(out) == log(taylor_run)
    a = pk.read_checkpoint(out / "final.pt")["model"]
    b = pk.read_checkpoint(taylor_run / "final.pt")["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert checkpoints(out) == ["step-0.pt", "step-1.pt", "step-2.pt"]  # the epoch file went


def lower_lr(run_dir: Path) -> None:
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    config["baseline"]["lr"] /= 2
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))


def damage(run_dir: Path) -> None:
    path = run_dir / "checkpoints" / "baseline-epoch.pt"
    path.write_bytes(path.read_bytes()[:100])


@pytest.mark.parametrize(
    ("change", "why"),
    [(lower_lr, "was saved under another configuration"), (damage, "is damaged")],
)
def test_an_epoch_file_of_another_configuration_or_damaged_is_ignored(
    change, why, interrupted_run, cli
):
    out, trained = interrupted_run
    change(out)
    code, printed, err = cli("run", "--resume", str(out))
    assert code == 0, err
    assert len(trained) == 2  # both epochs again
    assert f"note: {out / 'checkpoints' / 'baseline-epoch.pt'} {why}" in printed
    assert "ignored, the baseline trains from its start" in printed
    assert [r["step"] for r in log(out)] == [0, 1, 2]
