"""Tables: formatted cells for people, raw numbers for machines, every format."""

from __future__ import annotations

import csv
import io
import json

import pytest

from prunekit.errors import PrunekitError
from prunekit.reporting import FORMATS, compare_table, run_table
from prunekit.reporting.tables import size


def record(step: int, params: int, removed: float, accuracy: float) -> dict:
    fractions = {"params": removed, "macs": removed / 2, "channels": 0.0}
    return {
        "step": step, "params": params, "macs": 2_000_000, "latency_ms": 1.234,
        "metrics": {"loss": 0.5, "accuracy": accuracy},
        "planned": {"target": removed, **fractions}, "achieved": fractions,
    }  # fmt: skip


RECORDS = [record(0, 24_000, 0.0, 0.9), record(1, 12_000, 0.5, 0.85)]


def test_run_table_rows_and_columns():
    table = run_table(RECORDS, "accuracy", "params")
    assert table.headers[-2:] == ["accuracy", "loss"]  # primary metric first
    assert table.rows[0][:2] == ["baseline", "24k"]
    assert table.rows[1][:5] == ["1", "12k (-50.0%)", "2M (-25.0%)", "1.23", "50.0% / 50.0%"]
    assert table.records[1] == {
        "step": 1, "params": 12_000, "macs": 2_000_000, "latency_ms": 1.234,
        "planned_removed": 0.5, "achieved_removed": 0.5, "accuracy": 0.85, "loss": 0.5,
    }  # fmt: skip


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_renders_every_row(fmt):
    text = run_table(RECORDS, "accuracy", "params").render(fmt)
    if fmt == "json":
        assert [r["step"] for r in json.loads(text)] == [0, 1]
    elif fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(text)))
        assert [float(r["accuracy"]) for r in rows] == [0.9, 0.85]
    else:
        assert "baseline" in text and "12k" in text
    if fmt == "github":
        assert text.splitlines()[1].startswith("|--")
    if fmt == "latex":
        assert "\\toprule" in text and "\\%" in text  # percent signs escaped


def test_unknown_format_is_an_error():
    with pytest.raises(PrunekitError, match="unknown table format 'html'"):
        run_table(RECORDS, "accuracy", "params").render("html")


def test_compare_table_marks_the_best_and_explains_it():
    summary = [
        {"criterion": "baseline", "step": 0, "seeds": 1, "params": 24_000.0,
         "params_removed": 0.0, "macs": 2e6, "macs_removed": 0.0, "latency_ms": 2.0,
         "metrics": {"accuracy": [0.9, 0.0]}, "best": False},
        {"criterion": "l1", "step": 1, "seeds": 3, "params": 12_000.0, "params_removed": 0.5,
         "macs": 1e6, "macs_removed": 0.5, "latency_ms": 1.0,
         "metrics": {"accuracy": [0.85, 0.01]}, "best": True},
    ]  # fmt: skip
    table = compare_table(summary, "accuracy")
    assert table.rows[1][-1] == "0.8500 ± 0.0100 *"
    assert "over 3 seed(s)" in table.note and "* best accuracy" in table.note
    assert table.records[1]["accuracy_mean"] == 0.85 and table.records[1]["accuracy_std"] == 0.01
    assert table.render("plain").rstrip().endswith(table.note)
    assert "% mean ± std" in table.render("latex")


@pytest.mark.parametrize(
    ("count", "removed", "text"),
    [(950, 0.0, "950"), (24_000, 0.5, "24k (-50.0%)"), (3.5e6, 0.1, "3.5M (-10.0%)"),
     (1.2e9, 0.0, "1.2G")],
)  # fmt: skip
def test_size(count, removed, text):
    assert size(count, removed) == text
