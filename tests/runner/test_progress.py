"""The overall progress line: time so far from the records, the rest estimated per step."""

from __future__ import annotations

import pytest

from prunekit.runner.progress import duration, progress_line, time_split


def records(*walls: float) -> list[dict]:
    return [{"step": i, "wall_s": w} for i, w in enumerate(walls)]


def test_after_the_baseline_the_estimate_waits_for_a_step():
    assert progress_line(records(30.0), 4) == (
        "progress: baseline done, 30 s so far; 4 steps to go, the time left is estimated "
        "after step 1"
    )


def test_the_remaining_steps_are_estimated_at_the_last_steps_time():
    # 60 + 300 + 246 = 606 s so far; 2 steps left at 246 s each = 492 s
    assert progress_line(records(60.0, 300.0, 246.0), 4) == (
        "progress: step 2/4 done, 10.1 min so far; about 8.2 min left (2 steps at ~4.1 min)"
    )


def test_one_step_left_and_none_left():
    assert progress_line(records(10.0, 20.0, 30.0), 3).endswith("about 30 s left (1 step at ~30 s)")
    assert progress_line(records(10.0, 20.0, 30.0, 40.0), 3) == (
        "progress: step 3/3 done, 1.7 min so far; all steps done"
    )


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.4, "0 s"), (89.0, "89 s"), (90.0, "1.5 min"), (5399.0, "90.0 min"), (5400.0, "1.5 h")],
)
def test_duration(seconds, text):
    assert duration(seconds) == text


def test_a_run_prints_its_progress_after_every_step_and_its_table_at_the_end(tmp_path):
    from prunekit.runner import run
    from prunekit.runner.config import resolve

    sets = ["baseline.epochs=0", "recovery.methods=[]", "prune.steps=2"]
    lines: list[str] = []
    result = run.start(
        resolve("toy", flags={"prune.criterion": "l1"}, sets=sets),
        tmp_path / "run",
        quiet=True,
        echo=lines.append,
    )
    progress = [line for line in lines if line.startswith("progress: ")]
    assert [p.split(",")[0] for p in progress] == [
        "progress: baseline done",
        "progress: step 1/2 done",
        "progress: step 2/2 done",
    ]
    assert progress[1].endswith(f"(1 step at ~{duration(result.records[1]['wall_s'])})")
    table = lines[-1].splitlines()
    assert table[0].split()[:2] == ["step", "params"] and "accuracy vs baseline" in table[0]
    change = result.records[2]["metrics"]["accuracy"] - result.records[0]["metrics"]["accuracy"]
    assert table[-1].split()[0] == "2" and f"{change:+.4f}" in table[-1]


def test_the_time_split_names_the_phases_that_took_a_second_or_more():
    record = {"wall_s": 313.0, "phases_s": {"score": 41.2, "prune": 0.4, "recover": 186.0}}
    assert time_split(record) == "5.2 min: score 41 s, recover 3.1 min"
    assert time_split({"wall_s": 12.0}) == "12 s"  # a record written before phases were timed


def test_a_runs_records_time_every_phase(tmp_path):
    from prunekit.runner import run
    from prunekit.runner.config import resolve

    sets = ["baseline.epochs=1", "recovery.methods=[finetune]", "prune.steps=1"]
    result = run.start(
        resolve("toy", flags={"prune.criterion": "taylor"}, sets=sets),
        tmp_path / "run",
        quiet=True,
        echo=lambda line: None,
    )
    baseline, step = result.records
    assert list(baseline["phases_s"]) == ["baseline", "latency", "evaluate"]
    assert list(step["phases_s"]) == [
        "score", "prune", "evaluate_before", "recover", "latency", "evaluate"
    ]  # fmt: skip
    for record in result.records:
        phases = record["phases_s"].values()  # each rounded to the millisecond
        assert 0 < sum(phases) <= record["wall_s"] + 0.0005 * (len(phases) + 1)
