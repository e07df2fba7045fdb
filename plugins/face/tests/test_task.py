"""The ``face`` task end to end through the CLI, on ORL (real faces) and synthetic data."""

from __future__ import annotations

import json

import pytest

from prunekit.cli.main import main

TINY = [
    "--set",
    "data.size=32",
    "--set",
    "baseline.epochs=3",
    "--set",
    "baseline.lr=0.05",
    "--set",
    "data.batch_size=32",
    "--set",
    "prune.score_batches=2",
    "--set",
    "finetune.epochs=1",
    "--steps",
    "2",
    "--target",
    "params=0.3",
    "--quiet",
]


def _log(run_dir):
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def test_face_task_on_orl(shared, tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNEKIT_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    rc = main(
        [
            "run",
            "face",
            "--criterion",
            "taylor",
            "--data",
            str(shared / "data" / "orl"),
            "--out",
            str(out),
            "--set",
            "data.eval_identities=10",
            *TINY,
        ]
    )
    assert rc == 0
    log = _log(out)
    assert [r["step"] for r in log] == [0, 1, 2]
    # real learning: verification of held-out people well above chance after the baseline
    assert log[0]["metrics"]["accuracy"] > 0.6
    assert log[-1]["params"] < log[0]["params"]
    for name in ("config.yaml", "report.md", "curve.png", "final.pt", "best.pt"):
        assert (out / name).is_file()


def test_face_task_defaults_to_synthetic_and_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("PRUNEKIT_DATA", raising=False)
    out = tmp_path / "run"
    rc = main(
        [
            "run",
            "face",
            "--criterion",
            "l1",
            "--out",
            str(out),
            "--set",
            "data.synthetic_identities=30",
            "--set",
            "data.synthetic_images=6",
            *TINY[:-1],  # not --quiet: the synthetic warning is part of the banner
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "SYNTHETIC faces" in printed and "PRUNEKIT_DATA" in printed
    assert len(_log(out)) == 3


def test_missing_data_dir_is_a_clear_error(tmp_path, capsys):
    rc = main(["run", "face", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "r")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "PRUNEKIT_DATA" in err
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_face_task_on_lfw(shared, tmp_path, monkeypatch):
    """Identity-disjoint LFW training, official pairs of fold 0 (threshold from the others)."""
    monkeypatch.setenv("PRUNEKIT_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    rc = main(
        [
            "run",
            "face",
            "--criterion",
            "l1",
            "--data",
            str(shared / "data"),
            "--out",
            str(out),
            "--set",
            "data.eval_folds=[0,1]",
            *TINY,
        ]
    )
    assert rc == 0
    log = _log(out)
    assert log[0]["metrics"]["accuracy"] > 0.55
