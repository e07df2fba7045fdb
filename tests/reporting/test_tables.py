"""Tables: formatted cells for people, raw numbers for machines, every format."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest

from prunekit.errors import PrunekitError
from prunekit.reporting import compare_table, run_table
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
    assert table.headers == [
        "step", "params", "MACs", "latency (ms)", "params removed: plan / got",
        "accuracy", "accuracy vs baseline", "loss",  # the primary metric first
    ]  # fmt: skip
    assert table.rows == [
        ["baseline", "24k", "2M", "1.23", "0.0% / 0.0%", "0.9000", "-", "0.5000"],
        ["1", "12k (-50.0%)", "2M (-25.0%)", "1.23", "50.0% / 50.0%", "0.8500", "-0.0500",
         "0.5000"],
    ]  # fmt: skip
    assert table.records[1] == {
        "step": 1, "params": 12_000, "macs": 2_000_000, "latency_ms": 1.234,
        "planned_removed": 0.5, "achieved_removed": 0.5, "accuracy": 0.85, "loss": 0.5,
        "accuracy_change": pytest.approx(-0.05),
    }  # fmt: skip


def test_run_table_marks_an_unreliable_latency():
    noted = {**RECORDS[1], "latency_note": "unreliable: load 5.2 on 2 cores"}
    table = run_table([RECORDS[0], noted], "accuracy", "params")
    assert [row[3] for row in table.rows] == ["1.23", "1.23 (unreliable)"]
    assert "latency_note" not in table.records[0]
    assert table.records[1]["latency_note"] == "unreliable: load 5.2 on 2 cores"


def test_every_line_of_a_latex_note_is_a_comment():
    table = run_table(RECORDS, "accuracy", "params")
    table.note = "first line\nsecond line"
    assert table.render("latex").endswith("\\end{tabular}\n% first line\n% second line\n")


def _cells(text: str, fmt: str) -> list[list[str]]:
    """Header and body cells read back from a rendered table."""
    lines = text.rstrip("\n").splitlines()
    if fmt == "plain":
        assert set(lines[1].replace(" ", "")) == {"-"}  # the rule under the header
        return [re.split(r"\s{2,}", line.strip()) for line in [lines[0], *lines[2:]]]
    if fmt == "github":
        assert re.fullmatch(r"(\|-+)+\|", lines[1]), lines[1]
        return [[c.strip() for c in line.strip("|").split("|")] for line in [lines[0], *lines[2:]]]
    assert fmt == "latex"
    assert lines[:2] == ["\\begin{tabular}{llllllll}", "\\toprule"]
    assert lines[3] == "\\midrule" and lines[-2:] == ["\\bottomrule", "\\end{tabular}"]
    rows = [lines[2], *lines[4:-2]]
    assert all(row.endswith("\\\\") for row in rows)
    return [[c.strip().replace("\\%", "%") for c in row[:-2].split("&")] for row in rows]


@pytest.mark.parametrize("fmt", ["plain", "github", "latex"])
def test_text_formats_show_every_cell(fmt):
    table = run_table(RECORDS, "accuracy", "params")
    assert _cells(table.render(fmt), fmt) == [table.headers, *table.rows]


def test_latex_escapes_percent_signs():
    text = run_table(RECORDS, "accuracy", "params").render("latex")
    assert "50.0\\% / 50.0\\%" in text and re.search(r"[^\\]%", text) is None


def test_json_and_csv_carry_the_raw_numbers():
    table = run_table(RECORDS, "accuracy", "params")
    assert json.loads(table.render("json")) == table.records
    rows = list(csv.DictReader(io.StringIO(table.render("csv"))))
    assert [{k: float(v) for k, v in row.items()} for row in rows] == table.records
    assert list(rows[0]) == list(table.records[0])  # the columns in the records' order


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
    assert "over 3 seeds" in table.note and "* best accuracy" in table.note
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
