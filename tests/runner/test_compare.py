"""summarize: mean ± std over seeds and the best criterion per pruning step."""

from __future__ import annotations

import pytest

from prunekit.runner.compare import summarize


def record(step: int, accuracy: float, params: int = 100) -> dict:
    removed = {"params": 1 - params / 100, "macs": 0.0}
    return {
        "step": step, "params": params, "macs": 10, "latency_ms": 1.0,
        "metrics": {"accuracy": accuracy}, "achieved": removed,
    }  # fmt: skip


BASE = record(0, 0.9)
RESULTS = {
    "a": [[BASE, record(1, 0.80, 60)], [BASE, record(1, 0.84, 62)]],
    "b": [[BASE, record(1, 0.85, 60)], [BASE, record(1, 0.85, 60)]],
}


def test_summary_rows_mean_and_std():
    rows = summarize(RESULTS, "accuracy", higher_is_better=True)
    assert [(r["criterion"], r["step"], r["seeds"]) for r in rows] == [
        ("baseline", 0, 1), ("a", 1, 2), ("b", 1, 2),
    ]  # fmt: skip
    mean, std = rows[1]["metrics"]["accuracy"]
    assert mean == pytest.approx(0.82) and std == pytest.approx(0.0282843, rel=1e-5)
    assert rows[1]["params"] == 61 and rows[1]["params_removed"] == pytest.approx(0.39)
    assert rows[2]["metrics"]["accuracy"] == [0.85, 0.0]


@pytest.mark.parametrize(("higher", "best"), [(True, "b"), (False, "a")])
def test_best_per_step_follows_the_metric_direction(higher, best):
    rows = summarize(RESULTS, "accuracy", higher_is_better=higher)
    assert [r["criterion"] for r in rows if r["best"]] == [best]
