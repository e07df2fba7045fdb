"""Plots are written as PNG files without a display."""

from __future__ import annotations

from prunekit.reporting import compare_plot, run_plot

PNG = b"\x89PNG\r\n\x1a\n"


def test_run_plot_writes_a_png(tmp_path):
    records = [
        {"step": 0, "params": 100, "metrics": {"accuracy": 0.9}},
        {"step": 1, "params": 60, "metrics": {"accuracy": 0.8}},
    ]
    run_plot(records, "accuracy", tmp_path / "curve.png", "toy / l1")
    assert (tmp_path / "curve.png").read_bytes()[:8] == PNG


def test_compare_plot_writes_a_png(tmp_path):
    summary = [
        {"criterion": "baseline", "step": 0, "params_removed": 0.0,
         "metrics": {"accuracy": [0.9, 0.0]}},
        {"criterion": "l1", "step": 1, "params_removed": 0.4,
         "metrics": {"accuracy": [0.8, 0.02]}},
        {"criterion": "random", "step": 1, "params_removed": 0.4,
         "metrics": {"accuracy": [0.7, 0.05]}},
    ]  # fmt: skip
    compare_plot(summary, "accuracy", tmp_path / "compare.png", "toy")
    assert (tmp_path / "compare.png").read_bytes()[:8] == PNG
