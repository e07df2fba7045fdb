"""``prunekit run``: the files it writes, interrupt and resume, plugins end to end."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import prunekit as pk
from tests.reliability.support import untimed


def read_log(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def test_run_writes_every_file(toy_run):
    for name in ("config.yaml", "log.jsonl", "final.pt", "best.pt", "report.md", "curve.png"):
        assert (toy_run / name).is_file(), name
    assert sorted(p.name for p in (toy_run / "checkpoints").iterdir()) == [
        f"step-{n}.pt" for n in range(4)
    ]
    assert (toy_run / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_run_prunes_as_scheduled(toy_run):
    log = read_log(toy_run)
    assert [r["step"] for r in log] == [0, 1, 2, 3]
    params = [r["params"] for r in log]
    assert params == sorted(params, reverse=True) and len(set(params)) == 4
    target = 0.5  # the toy task's default target: params=0.5, linear schedule
    for r in log[1:]:
        assert r["planned"]["target"] == pytest.approx(target * r["step"] / 3)
        assert r["achieved"]["params"] == pytest.approx(r["planned"]["target"], abs=0.03)
        assert set(r) >= {"macs", "latency_ms", "metrics", "wall_s", "recovery"}
        assert 0.0 <= r["metrics"]["accuracy"] <= 1.0


def test_report_md_has_baseline_and_each_step(toy_run):
    lines = [ln for ln in (toy_run / "report.md").read_text().splitlines() if ln.startswith("|")]
    rows = [ln.split("|")[1].strip() for ln in lines[2:]]  # after header and separator
    assert rows == ["baseline", "1", "2", "3"]
    shown = [ln.split("|")[2].strip() for ln in lines[2:]]
    assert shown[0] == "24k" and all("%" in cell for cell in shown[1:])
    assert "curve.png" in (toy_run / "report.md").read_text()


def test_best_and_final_without_max_drop_are_the_last_step(toy_run):
    last = torch.load(toy_run / "checkpoints" / "step-3.pt", weights_only=True)
    for name in ("final.pt", "best.pt"):
        ckpt = torch.load(toy_run / name, weights_only=True)
        assert ckpt["meta"]["history"] == last["meta"]["history"]


def test_sigint_then_resume_ends_like_an_uninterrupted_run(toy_run, run_args, tmp_path, cli):
    out = tmp_path / "run"
    # batch_delay slows training so that the signal lands inside step 2
    cmd = [sys.executable, "-m", "prunekit", *run_args, "--out", str(out)]
    proc = subprocess.Popen(
        [*cmd, "--set", "toy.batch_delay=0.05"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    log = out / "log.jsonl"
    while proc.poll() is None and not (log.is_file() and len(read_log(log.parent)) >= 2):
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, stderr
    assert f"prunekit run --resume {out}" in stderr
    assert len(read_log(out)) < 4  # interrupted before the end

    code, _, stderr = cli("run", "--resume", str(out), "--quiet")
    assert code == 0, stderr
    assert untimed(read_log(out)) == untimed(read_log(toy_run))
    a = pk.read_checkpoint(out / "final.pt")["model"]
    b = pk.read_checkpoint(toy_run / "final.pt")["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_of_a_finished_run_changes_nothing(toy_run, cli):
    before = (toy_run / "log.jsonl").read_text()
    code, _, err = cli("run", "--resume", str(toy_run), "--quiet")
    assert code == 0, err
    assert (toy_run / "log.jsonl").read_text() == before
    assert len(list((toy_run / "checkpoints").iterdir())) == 4


def test_resume_refuses_config_flags(toy_run, cli):
    code, _, err = cli("run", "--resume", str(toy_run), "--steps", "5")
    assert code == 2 and err.startswith("prunekit: error: --resume")


def test_existing_run_dir_is_not_overwritten(toy_run, run_args, cli):
    code, _, err = cli(*run_args, "--out", str(toy_run))
    assert code == 2 and "already exists" in err and "--resume" in err


def test_plugin_criterion_runs_end_to_end(tmp_path, cli):
    out = tmp_path / "run"
    code, stdout, err = cli("run", "toy", "--criterion", "demo_magnitude", "--out", str(out))
    assert code == 0, err
    assert "criterion demo_magnitude" in stdout and "step 3/3" in stdout
    assert "data: synthetic 4-class" in stdout  # the task's describe_data() banner
    assert [r["step"] for r in read_log(out)] == [0, 1, 2, 3]
    assert (out / "report.md").is_file()


def test_divergence_stops_and_keeps_the_last_good_checkpoint(run_args, tmp_path, cli):
    out = tmp_path / "run"
    code, _, err = cli(
        *run_args, "--out", str(out), "--set", "recovery.options={finetune: {lr: 1e6}}"
    )
    assert code == 2
    assert "diverged" in err and "step-0.pt" in err and len(err.splitlines()) == 1
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step-0.pt"]


def test_python_dash_m_lists_the_plugins():
    result = subprocess.run(
        [sys.executable, "-m", "prunekit", "list"], capture_output=True, text=True, check=True
    )
    assert "toy " in result.stdout and "demo_magnitude " in result.stdout
    assert "Mean absolute weight" in result.stdout  # one-line descriptions
