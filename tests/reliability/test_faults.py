"""Faults during a run: diverging losses, a full disk, SIGTERM. Each stops the run with the
completed steps' checkpoints intact, and resuming ends where an uninterrupted run ends."""

from __future__ import annotations

import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from prunekit_toy.task import ToyTask

import prunekit as pk
from tests.reliability.support import TAYLOR_RUN as RUN
from tests.reliability.support import log


def checkpoints(run_dir: Path) -> list[str]:
    return sorted(p.name for p in (run_dir / "checkpoints").iterdir())


@pytest.mark.parametrize(
    ("bad", "scoring", "after", "message"),
    [
        (math.nan, False, 2, "step 2: recovery 'finetune' diverged: it produced NaN/inf weights"),
        (math.inf, True, 1, "step 2: the scoring loss is inf: the run stopped"),
    ],
)
def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(
    bad, scoring, after, message, cli, tmp_path, monkeypatch
):
    pruned: list[int] = []  # one entry per pruning step taken
    prune, loss = pk.Pruner.step, ToyTask.loss

    def counted(self):
        pruned.append(1)
        return prune(self)

    def poisoned(self, model, batch):  # scoring runs in eval mode, fine-tuning in train mode
        hit = len(pruned) >= after and model.training != scoring
        return loss(self, model, batch) * (bad if hit else 1.0)

    monkeypatch.setattr(pk.Pruner, "step", counted)
    monkeypatch.setattr(ToyTask, "loss", poisoned)
    out = tmp_path / "run"
    code, _, err = cli(*RUN, "--out", str(out))
    assert code == 2
    assert err.startswith(f"prunekit: error: {message}") and err.count("\n") == 1
    assert f"the last good checkpoint is {out / 'checkpoints' / 'step-1.pt'}" in err
    assert checkpoints(out) == ["step-0.pt", "step-1.pt"]
    monkeypatch.undo()
    code, _, err = cli("run", "--resume", str(out), "--quiet")
    assert code == 0, err
    assert [r["step"] for r in log(out)] == [0, 1, 2]


def test_full_disk_keeps_the_previous_checkpoints(cli, tmp_path, monkeypatch, taylor_run):
    save = torch.save

    def full_disk(obj, f, *args, **kwargs):
        if "step-2" in str(getattr(f, "name", f)):
            raise OSError(28, "No space left on device")
        return save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_disk)
    out = tmp_path / "run"
    code, _, err = cli(*RUN, "--out", str(out))
    assert code == 2
    assert err == (
        f"prunekit: error: cannot write checkpoint {out / 'checkpoints' / 'step-2.pt'} (No "
        "space left on device): the run stopped and its earlier checkpoints are intact; free "
        "some disk space, then resume it\n"
    )
    assert checkpoints(out) == ["step-0.pt", "step-1.pt"]  # no temporary file left behind
    assert pk.read_checkpoint(out / "checkpoints" / "step-1.pt")["pruner"]["step_index"] == 1
    monkeypatch.undo()
    assert cli("run", "--resume", str(out), "--quiet")[0] == 0
    assert log(out) == log(taylor_run)


def test_sigterm_then_resume_ends_like_an_uninterrupted_run(cli, tmp_path, taylor_run):
    # (SIGINT: tests/cli/test_run.py::test_sigint_then_resume_ends_like_an_uninterrupted_run)
    out = tmp_path / "run"
    # batch_delay slows training (0.3 s a batch) so that the signal lands inside step 2
    cmd = [sys.executable, "-m", "prunekit", *RUN, "--out", str(out)]
    proc = subprocess.Popen(
        [*cmd, "--set", "toy.batch_delay=0.3"], stderr=subprocess.PIPE, text=True
    )
    try:
        log_file = out / "log.jsonl"  # two complete lines: the baseline and step 1
        while proc.poll() is None and not (
            log_file.is_file() and log_file.read_text().count("\n") >= 2
        ):
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    assert stderr.endswith(f"interrupted: continue with `prunekit run --resume {out}`\n")
    assert checkpoints(out) == ["step-0.pt", "step-1.pt"]

    code, _, err = cli("run", "--resume", str(out), "--quiet")
    assert code == 0, err
    assert log(out) == log(taylor_run)
    a = pk.read_checkpoint(out / "final.pt")["model"]
    b = pk.read_checkpoint(taylor_run / "final.pt")["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
