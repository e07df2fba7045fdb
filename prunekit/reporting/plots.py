"""Accuracy-vs-size and accuracy-vs-latency plots, drawn off-screen (no display or pyplot
state needed).

Every figure has two panels sharing the y-axis: the primary metric against the model's size
and against its measured latency; pruning moves right in both. The y-axis spans at least
:data:`MIN_SPAN` of the metric's scale, so that evaluation noise does not look like a trend, and
its range is stated in the axis label.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prunekit import atomic

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: metrics named so (``accuracy``, ``val_accuracy``, ``tar@far=1e-3``) are fractions in [0, 1]
FRACTIONS = ("accuracy", "auc", "eer", "tar@", "precision", "recall")
#: the least y-axis span: 10 points of a fraction, 10% of the largest value of another metric
MIN_SPAN = 0.10


def plot_title(task: str, data: str | None, criteria: Sequence[str], recipes: Sequence[str]) -> str:
    """``face on lfw: taylor, recovery reconstruct+distill``. ``data`` is the provenance's
    ``data.source`` (None: not named); a recipe is recovery methods joined by ``+``, or ``none``."""
    head = f"{task} on {data}" if data else task
    recovery = "no recovery"
    if any(r != "none" for r in recipes):
        recovery = "recovery " + ", ".join(recipes)
    return f"{head}: {', '.join(criteria)}{'; ' if len(criteria) > 1 else ', '}{recovery}"


def fold_std(records: list[dict[str, Any]], primary: str) -> list[float] | None:
    """Each record's std of ``primary`` over the evaluation folds (the metric ``<primary>_std``,
    e.g. ``accuracy_std``); None unless every record carries it."""
    key = f"{primary}_std"
    if all(key in r["metrics"] for r in records):
        return [r["metrics"][key] for r in records]
    return None


def run_plot(
    records: list[dict[str, Any]], primary: str, path: Path, title: str, note: str = ""
) -> None:
    """Save :func:`run_figure` as a PNG (atomically)."""
    _save(run_figure(records, primary, title, note), path)


def run_figure(records: list[dict[str, Any]], primary: str, title: str, note: str = "") -> Figure:
    """A run's primary metric against the parameter count and the latency, one point per step,
    ± its std over folds where the metrics carry it; ``note`` (the provenance) in small print."""
    from matplotlib.ticker import FuncFormatter

    fig, axes = _figure(title, note)
    values = [r["metrics"][primary] for r in records]
    stds = fold_std(records, primary)
    label = f"{primary} ± std over folds" if stds else primary
    for ax, key in zip(axes, ("params", "latency_ms")):
        xs = [r[key] for r in records]
        ax.errorbar(xs, values, yerr=stds, marker="o", capsize=3, label=label)
        for r, x, y in zip(records, xs, values):
            step = str(r["step"]) if r["step"] else "base"
            ax.annotate(step, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.invert_xaxis()  # the full model on the left, the smallest (fastest) on the right
    axes[0].xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: _short_count(x)))
    axes[0].legend(fontsize=8)
    _finish(axes, primary, values, stds or [0.0] * len(values), "parameters")
    return fig


def compare_plot(
    summary: list[dict[str, Any]], primary: str, path: Path, title: str, note: str = ""
) -> None:
    """Save :func:`compare_figure` as a PNG (atomically)."""
    _save(compare_figure(summary, primary, title, note), path)


def compare_figure(
    summary: list[dict[str, Any]], primary: str, title: str, note: str = ""
) -> Figure:
    """Mean primary metric ± its std over seeds per criterion, against % parameters removed and
    the mean latency; every curve starts at the shared baseline."""
    fig, axes = _figure(title, note)
    baseline = [s for s in summary if s["step"] == 0]
    means: list[float] = []
    stds: list[float] = []
    for criterion in dict.fromkeys(s["criterion"] for s in summary if s["step"] > 0):
        points = baseline + [s for s in summary if s["criterion"] == criterion]
        ys = [s["metrics"][primary][0] for s in points]
        errs = [s["metrics"][primary][1] for s in points]
        means, stds = means + ys, stds + errs
        removed = [100 * s["params_removed"] for s in points]
        for ax, xs in zip(axes, (removed, [s["latency_ms"] for s in points])):
            ax.errorbar(xs, ys, yerr=errs, marker="o", capsize=3, label=criterion)
    axes[1].invert_xaxis()  # faster to the right, as more is removed
    axes[0].legend(title="mean ± std over seeds", fontsize=8, title_fontsize=8)
    _finish(axes, primary, means, stds, "% parameters removed")
    return fig


def _short_count(n: float) -> str:
    """A parameter count for a tick: ``950``, ``694k``, ``1.2M``."""
    for size, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:.3g}"


def _y_range(
    primary: str, values: list[float], stds: list[float]
) -> tuple[float, float, str] | None:
    """The y-axis limits and their text (``0.80–1.00``): the data ± their error bars plus 10%
    margins, widened to :data:`MIN_SPAN` of the metric's scale, kept in [0, 1] for a fraction
    (:data:`FRACTIONS`) and rounded outwards; None without finite data."""
    ends = [v + s * sign for v, s in zip(values, stds) for sign in (-1, 1)]
    ends = [e for e in ends if math.isfinite(e)]
    if not ends:
        return None
    fraction = any(name in primary for name in FRACTIONS) and all(
        0 <= v <= 1 for v in values if math.isfinite(v)
    )
    lo, hi = min(ends), max(ends)
    if fraction:  # a bar past a bound says no more than the bound
        lo, hi = max(0.0, lo), min(1.0, hi)
    scale = 1.0 if fraction else max(abs(lo), abs(hi)) or 1.0
    margin = max(0.1 * (hi - lo), (MIN_SPAN * scale - (hi - lo)) / 2)
    lo, hi = lo - margin, hi + margin
    if fraction:  # slide inside [0, 1], keeping the span where it fits
        shift = max(0.0, -lo) - max(0.0, hi - 1.0)
        lo, hi = max(0.0, lo + shift), min(1.0, hi + shift)
    digits = max(0, 1 - math.floor(math.log10(hi - lo) + 1e-9))
    step = 10.0**-digits
    lo = round(math.floor(lo / step + 1e-9) * step, digits)
    hi = round(math.ceil(hi / step - 1e-9) * step, digits)
    return lo, hi, f"{lo:.{digits}f}–{hi:.{digits}f}"


def _figure(title: str, note: str) -> tuple[Figure, Any]:
    from matplotlib.figure import Figure  # imported late: it adds ~0.6 s to every CLI start

    fig = Figure(figsize=(11, 4.5), layout="constrained")
    fig.suptitle(title)
    if note:
        fig.supxlabel(textwrap.fill(note, 200), fontsize=6)
    return fig, fig.subplots(1, 2, sharey=True)


def _finish(
    axes: Any, primary: str, values: list[float], stds: list[float], size_label: str
) -> None:
    """Labels, grid and the y-axis range (stated in the label) of both panels."""
    size_ax, latency_ax = axes
    size_ax.set_xlabel(size_label)
    latency_ax.set_xlabel("latency (ms)")
    latency_ax.ticklabel_format(axis="x", useOffset=False)
    size_ax.ticklabel_format(axis="y", useOffset=False)
    found = _y_range(primary, values, stds)
    if found:
        lo, hi, text = found
        size_ax.set_ylim(lo, hi)
        size_ax.set_ylabel(f"{primary} (y-axis {text})")
    else:
        size_ax.set_ylabel(primary)
    for ax in axes:
        ax.grid(alpha=0.3)


def _save(fig: Figure, path: Path) -> None:
    atomic.write_with(path, lambda fh: fig.savefig(fh, dpi=120, format="png"))
