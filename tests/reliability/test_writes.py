"""Every write can fail cleanly: an output path that cannot be a file, or a full disk, is one
line and exit status 2, and leaves nothing a rerun or ``--resume`` would trip over."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from tests.reliability.support import TOY


def _leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.rglob("*") if p.name.startswith(".") or "tmp" in p.name)


@pytest.mark.parametrize(
    "command",
    [
        ["export", "RUN/final.pt", "--format", "onnx", "--out", "FILE/model.onnx"],
        ["export", "RUN/final.pt", "--format", "pt2", "--out", "FILE/model.pt2"],
        ["latency", "RUN", "--repeats", "1", "--batch", "1", "--out", "FILE/latency.md"],
        ["run", "toy", "--criterion", "l1", *TOY, "--out", "FILE/run"],
        ["compare", "toy", "--criteria", "l1", *TOY, "--out", "FILE/cmp"],
    ],
    ids=["export-onnx", "export-pt2", "latency", "run", "compare"],
)
def test_an_output_under_a_file_is_one_line(command, cli, tmp_path, finished_run):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    argv = [a.replace("RUN", str(finished_run)).replace("FILE", str(blocker)) for a in command]
    code, _, err = cli(*argv)
    assert code == 2, err
    assert err.startswith("prunekit: error: ") and err.count("\n") == 1
    assert str(blocker) in err
    assert blocker.read_text() == "a file, not a folder"
    assert _leftovers(tmp_path) == []


def test_a_full_disk_at_the_first_file_leaves_a_run_dir_a_rerun_accepts(cli, tmp_path, monkeypatch):
    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)  # every atomic write fails, config.yaml first
    out = tmp_path / "run"
    code, _, err = cli("run", "toy", "--criterion", "l1", *TOY, "--out", str(out))
    assert code == 2 and err.count("\n") == 1
    assert "No space left on device" in err
    assert not (out / "config.yaml").exists()  # never an empty or partial config.yaml
    assert _leftovers(tmp_path) == []
    monkeypatch.undo()
    code, _, err = cli("run", "toy", "--criterion", "l1", *TOY, "--out", str(out), "--quiet")
    assert code == 0, err
    assert (out / "final.pt").exists()
