"""Run directories: one writer at a time, and every read of one checked (a damaged
``config.yaml`` or ``log.jsonl`` is one line naming the file and the line)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from prunekit.runner.rundir import LOCK, CompareDir, RunDir
from tests.reliability.support import TAYLOR_RUN, log, snapshot
from tests.reliability.test_bad_input import error_line


@pytest.fixture
def run_copy(finished_run, tmp_path) -> Path:
    """A copy of the finished run, to damage."""
    return Path(shutil.copytree(finished_run, tmp_path / "run"))


# ---------------------------------------------------------------------- one writer
def test_a_second_writer_is_refused_and_a_crash_releases_the_lock(cli, tmp_path, taylor_run):
    out = tmp_path / "run"
    # batch_delay slows training (0.2 s a batch) so that the run is still going when resumed
    cmd = [sys.executable, "-m", "prunekit", *TAYLOR_RUN, "--out", str(out)]
    proc = subprocess.Popen([*cmd, "--set", "toy.batch_delay=0.2"], stderr=subprocess.PIPE)
    try:
        while proc.poll() is None and not (
            (out / "log.jsonl").is_file() and (out / LOCK).read_text().strip()
        ):
            time.sleep(0.02)
        before = (out / "log.jsonl").read_text()
        error_line(
            cli("run", "--resume", str(out), "--quiet"),
            f"{out} is in use by another prunekit process (PID {proc.pid}): one process "
            "writes a run directory at a time; wait for that one to end or stop it",
        )
        assert (out / "log.jsonl").read_text().startswith(before)  # nothing interleaved
        proc.send_signal(signal.SIGKILL)  # a crash: no cleanup runs, the system drops the lock
        proc.wait(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert (out / LOCK).is_file()  # left behind by the crash, but no longer locked
    code, _, err = cli("run", "--resume", str(out), "--quiet")
    assert code == 0, err
    assert log(out) == log(taylor_run)
    assert not (out / LOCK).exists()


def test_a_locked_run_directory_refuses_a_new_run_and_a_resume(cli, run_copy, tmp_path):
    fresh = tmp_path / "fresh"
    before = snapshot(run_copy)
    with RunDir(run_copy).writing(), RunDir(fresh).writing(new=True):
        for args in (["run", "--resume", str(run_copy)], ["run", "toy", "--out", str(fresh)]):
            root = Path(args[-1])
            error_line(
                cli(*args, "--quiet"),
                f"{root} is in use by another prunekit process (PID {os.getpid()})",
            )
    assert snapshot(run_copy) == before
    assert not fresh.exists()  # the lock made it, and took it away again


def test_a_locked_compare_directory_refuses_a_comparison(cli, tmp_path):
    out = tmp_path / "cmp"
    with CompareDir(out).writing():
        error_line(
            cli("compare", "toy", "--criteria", "l1", "--out", str(out), "--quiet"),
            f"{out} is in use by another prunekit process (PID {os.getpid()})",
        )
    assert not out.exists()


def test_a_finished_run_leaves_no_lock(finished_run):
    assert not (finished_run / LOCK).exists()


# ---------------------------------------------------------------------- config.yaml
@pytest.mark.parametrize("command", ["resume", "report"])
@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        pytest.param(
            lambda text: text.replace("\n  epochs:", "\n\tepochs:"),
            "malformed YAML in {config}, line {tab}, column 1: found character '\\t' that cannot "
            "start any token; restore the run's config.yaml or start a new run",
            id="tab",
        ),
        pytest.param(
            lambda text: "- task: toy\n",
            "config file {config} must hold a mapping, not list; restore the run's config.yaml "
            "or start a new run",
            id="list",
        ),
        pytest.param(
            lambda text: text.replace("task: toy\n", ""),
            "{config} names no task: add a line `task: NAME` (see `prunekit list tasks`)",
            id="no-task",
        ),
        pytest.param(
            lambda text: "",
            "{config} names no task: add a line `task: NAME`",
            id="empty",
        ),
    ],
)
def test_damaged_config_yaml(command, damage, expected, cli, run_copy):
    config = run_copy / "config.yaml"
    damaged = damage(config.read_text())
    config.write_text(damaged)
    tabbed = [n for n, line in enumerate(damaged.splitlines(), 1) if line.startswith("\t")]
    before = snapshot(run_copy)
    args = ["run", "--resume", str(run_copy), "--quiet"] if command == "resume" else []
    message = expected.format(config=config, tab=tabbed[0] if tabbed else None)
    error_line(cli(*(args or ["report", str(run_copy)])), message)
    assert snapshot(run_copy) == before


# ---------------------------------------------------------------------- log.jsonl
def test_a_last_line_cut_short_is_left_out_with_a_note(cli, run_copy):
    path = run_copy / "log.jsonl"
    path.write_bytes(path.read_bytes()[:-20])  # a crash while the last record was written
    code, out, err = cli("report", str(run_copy))
    assert code == 0, err
    assert err == (
        f"note: {path}, line 3, was cut short (the run stopped while writing it): left out; "
        "resuming the run rewrites the log from its checkpoints\n"
    )
    rows = [ln.split()[0] for ln in out.splitlines()[2:]]  # after the header and the rule
    assert rows == ["baseline", "1"]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        pytest.param(b'{"step": 1, "par', "line 2, is not a JSON record", id="cut-mid-file"),
        pytest.param(b"\xff\xfe garbage", "line 2, is not a JSON record", id="not-utf8"),
        pytest.param(b"[1, 2]", "line 2, is not a step record (no 'step')", id="a-list"),
        pytest.param(b'{"step": 1}', "line 2, is not a step record (no 'params')", id="partial"),
    ],
)
def test_a_damaged_log_line_is_named(line, expected, cli, run_copy):
    path = run_copy / "log.jsonl"
    lines = path.read_bytes().split(b"\n")
    path.write_bytes(b"\n".join([lines[0], line, *lines[2:]]))
    error_line(
        cli("report", str(run_copy)),
        f"{path}, {expected}: the file is damaged; resume the run "
        f"(`prunekit run --resume {run_copy}`) to rewrite it from its checkpoints",
    )


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        pytest.param(
            lambda r: r["planned"].pop("target"),
            "is not a step record (no 'planned.target')",
            id="no-planned-target",
        ),
        pytest.param(
            lambda r: r.update(achieved=[0.25]),
            "is not a step record ('achieved' is not a mapping)",
            id="achieved-a-list",
        ),
        pytest.param(
            lambda r: r["metrics"].pop(next(iter(r["metrics"]))),
            "has other metrics than the first record",
            id="a-metric-renamed",
        ),
    ],
)
def test_a_damaged_key_inside_a_log_record_is_named(damage, expected, cli, run_copy):
    """A record that still parses but lost a key ``prunekit report`` reads (one byte of junk
    in a key's name) is named, never a KeyError."""
    path = run_copy / "log.jsonl"
    lines = path.read_bytes().split(b"\n")
    record = json.loads(lines[1])
    damage(record)
    path.write_bytes(b"\n".join([lines[0], json.dumps(record).encode(), *lines[2:]]))
    error_line(
        cli("report", str(run_copy)),
        f"{path}, line 2, {expected}: the file is damaged; resume the run "
        f"(`prunekit run --resume {run_copy}`) to rewrite it from its checkpoints",
    )


def test_resume_rewrites_a_damaged_log_from_the_checkpoints(cli, run_copy, finished_run):
    path = run_copy / "log.jsonl"
    path.write_bytes(path.read_bytes().replace(b'"step": 1', b"garbage", 1)[:-20])
    code, _, err = cli("run", "--resume", str(run_copy), "--quiet")
    assert code == 0, err
    assert path.read_bytes() == (finished_run / "log.jsonl").read_bytes()
    assert cli("report", str(run_copy))[0] == 0
