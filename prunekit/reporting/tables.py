"""Result tables: one structure, rendered for terminals, GitHub, LaTeX, CSV and JSON.

People get formatted cells (``24.1k (-50.2%)``, ``0.9141 ± 0.0031``); machines (CSV, JSON) get
the raw numbers behind them.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from typing import Any

from tabulate import tabulate

from prunekit.errors import PrunekitError
from prunekit.reporting.text import counted

FORMATS = ("plain", "github", "latex", "csv", "json")
_TABULATE_FORMATS = {"plain": "simple", "github": "github", "latex": "latex_booktabs"}


@dataclass
class Table:
    """Formatted ``rows`` under ``headers``, the raw ``records`` they show, and a footnote."""

    headers: list[str]
    rows: list[list[str]]
    records: list[dict[str, Any]]
    note: str = ""

    def render(self, fmt: str = "plain") -> str:
        """The table as ``plain``, ``github``, ``latex``, ``csv`` or ``json`` text."""
        if fmt == "json":
            return json.dumps(self.records, indent=2) + "\n"
        if fmt == "csv":
            out = io.StringIO()
            fields = list(dict.fromkeys(key for record in self.records for key in record))
            writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
            writer.writeheader()
            writer.writerows(self.records)
            return out.getvalue()
        if fmt not in _TABULATE_FORMATS:
            raise PrunekitError(f"unknown table format {fmt!r}: choose one of {', '.join(FORMATS)}")
        text = tabulate(
            self.rows, self.headers, tablefmt=_TABULATE_FORMATS[fmt], disable_numparse=True
        )
        if self.note:
            lines = self.note.splitlines()
            text += "".join(f"\n% {x}" for x in lines) if fmt == "latex" else f"\n\n{self.note}"
        return text + "\n"


def run_table(records: list[dict[str, Any]], primary: str, target: str) -> Table:
    """One row per step of a run (step 0 = baseline), its primary metric's change against the
    baseline beside it; ``target`` is the pruned metric. A latency whose measurement could not
    be trusted (the record's ``latency_note``) is marked."""
    metrics = metric_names(records, primary)
    headers = ["step", "params", "MACs", "latency (ms)", f"{target} removed: plan / got"]
    baseline = records[0]["metrics"][primary]
    rows, flat = [], []
    for r in records:
        planned, achieved = r["planned"]["target"], r["achieved"][target]
        change = r["metrics"][primary] - baseline
        rows.append(
            [
                str(r["step"]) if r["step"] else "baseline",
                size(r["params"], r["achieved"]["params"]),
                size(r["macs"], r["achieved"]["macs"]),
                f"{r['latency_ms']:.2f}" + (" (unreliable)" if "latency_note" in r else ""),
                f"{planned:.1%} / {achieved:.1%}",
                f"{r['metrics'][primary]:.4f}",
                f"{change:+.4f}" if r["step"] else "-",
                *(f"{r['metrics'][m]:.4f}" for m in metrics[1:]),
            ]
        )
        flat.append(
            {
                "step": r["step"],
                "params": r["params"],
                "macs": r["macs"],
                "latency_ms": r["latency_ms"],
                **({"latency_note": r["latency_note"]} if "latency_note" in r else {}),
                "planned_removed": planned,
                "achieved_removed": achieved,
                **{m: r["metrics"][m] for m in metrics},
                f"{primary}_change": change,
            }
        )
    return Table([*headers, primary, f"{primary} vs baseline", *metrics[1:]], rows, flat)


def compare_table(summary: list[dict[str, Any]], primary: str) -> Table:
    """One row per criterion and pruning level from :func:`prunekit.runner.compare.summarize`."""
    metrics = metric_names(summary, primary)
    headers = ["criterion", "step", "params", "MACs", "latency (ms)", *metrics]
    rows, flat = [], []
    for s in summary:
        cells = [f"{s['metrics'][m][0]:.4f} ± {s['metrics'][m][1]:.4f}" for m in metrics]
        if s["best"]:
            cells[0] += " *"
        rows.append(
            [
                s["criterion"],
                str(s["step"]),
                size(s["params"], s["params_removed"]),
                size(s["macs"], s["macs_removed"]),
                f"{s['latency_ms']:.2f}",
                *cells,
            ]
        )
        record = {k: v for k, v in s.items() if k != "metrics"}
        for m in metrics:
            record[f"{m}_mean"], record[f"{m}_std"] = s["metrics"][m]
        flat.append(record)
    seeds = counted(max(s["seeds"] for s in summary), "seed")
    note = f"mean ± std over {seeds}; * best {primary} at that pruning step"
    return Table(headers, rows, flat, note)


def metric_names(records: list[dict[str, Any]], primary: str) -> list[str]:
    """``primary`` first, then every other metric in alphabetical order."""
    others = {m for r in records for m in r["metrics"]} - {primary}
    return [primary, *sorted(others)]


def size(count: float, removed: float) -> str:
    """``24.1k (-50.2%)``: a count with SI suffix and the fraction removed."""
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if count >= factor:
            text = f"{count / factor:.3g}{suffix}"
            break
    else:
        text = f"{count:.0f}"
    return f"{text} (-{removed:.1%})" if removed else text
