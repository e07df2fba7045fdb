"""Plots: the drawn figure holds the data, labels and title, and the PNG shows it."""

from __future__ import annotations

import copy

import matplotlib.image
import numpy as np
import pytest
from matplotlib.container import ErrorbarContainer
from matplotlib.figure import Figure

from prunekit.reporting import compare_plot, run_plot

RECORDS = [
    {"step": 0, "params": 100, "metrics": {"accuracy": 0.9, "loss": 0.3}},
    {"step": 1, "params": 60, "metrics": {"accuracy": 0.8, "loss": 0.5}},
    {"step": 2, "params": 30, "metrics": {"accuracy": 0.6, "loss": 0.9}},
]

SUMMARY = [
    {"criterion": "baseline", "step": 0, "params_removed": 0.0,
     "metrics": {"accuracy": [0.9, 0.0]}},
    {"criterion": "l1", "step": 1, "params_removed": 0.4,
     "metrics": {"accuracy": [0.8, 0.02]}},
    {"criterion": "l1", "step": 2, "params_removed": 0.7,
     "metrics": {"accuracy": [0.7, 0.04]}},
    {"criterion": "random", "step": 1, "params_removed": 0.4,
     "metrics": {"accuracy": [0.7, 0.05]}},
    {"criterion": "random", "step": 2, "params_removed": 0.7,
     "metrics": {"accuracy": [0.5, 0.1]}},
]  # fmt: skip


@pytest.fixture
def saved(monkeypatch):
    """The figures the plotting functions save, with where each went (a path or a file)."""
    figures: list[tuple[Figure, object]] = []
    original = Figure.savefig

    def savefig(self, fname, *args, **kwargs):
        figures.append((self, fname))
        return original(self, fname, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", savefig)
    records, summary = copy.deepcopy(RECORDS), copy.deepcopy(SUMMARY)
    yield figures
    assert (records, summary) == (RECORDS, SUMMARY)  # the plots left their inputs alone


def _only_axes(saved, path):
    assert len(saved) == 1  # one figure, saved once
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left
    fig = saved[0][0]
    assert len(fig.axes) == 1
    return fig.axes[0]


def _png(path):
    """The saved image as an array, checked to be 6x4 inches at 120 dpi and not blank."""
    image = matplotlib.image.imread(path)
    assert image.shape[:2] == (480, 720)
    rgb = image[..., :3]
    assert rgb.std() > 0.05  # not a single flat colour
    coloured = (rgb.max(-1) - rgb.min(-1)) > 0.2  # pixels of a coloured line or marker
    return image, coloured


def test_run_plot_draws_one_point_per_step(tmp_path, saved):
    path = tmp_path / "curve.png"
    run_plot(RECORDS, "accuracy", path, "toy / l1")
    ax = _only_axes(saved, path)
    (line,) = ax.get_lines()
    assert list(line.get_xdata()) == [100, 60, 30]
    assert list(line.get_ydata()) == [0.9, 0.8, 0.6]  # the primary metric, not the loss
    assert line.get_marker() == "o" and line.get_linestyle() == "-"
    assert [t.get_text() for t in ax.texts] == ["base", "1", "2"]
    assert [t.xy for t in ax.texts] == [(100, 0.9), (60, 0.8), (30, 0.6)]
    assert ax.get_xlabel() == "parameters" and ax.get_ylabel() == "accuracy"
    assert ax.get_title() == "toy / l1"
    assert ax.xaxis_inverted()  # the full model on the left, the smallest on the right
    _, coloured = _png(path)
    assert coloured.sum() > 200  # the blue curve and its markers


def test_run_plot_of_another_metric(tmp_path, saved):
    run_plot(RECORDS, "loss", tmp_path / "loss.png", "toy")
    ax = _only_axes(saved, tmp_path / "loss.png")
    assert list(ax.get_lines()[0].get_ydata()) == [0.3, 0.5, 0.9]
    assert ax.get_ylabel() == "loss"


def _errorbars(ax):
    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    out = {}
    for bar in bars:
        data_line, _caps, (segments,) = bar.lines
        half = [(seg[1][1] - seg[0][1]) / 2 for seg in segments.get_segments()]
        out[bar.get_label()] = (list(data_line.get_xdata()), list(data_line.get_ydata()), half)
    return out


def test_compare_plot_draws_each_criterion_from_the_shared_baseline(tmp_path, saved):
    path = tmp_path / "compare.png"
    compare_plot(SUMMARY, "accuracy", path, "toy")
    ax = _only_axes(saved, path)
    bars = _errorbars(ax)
    assert list(bars) == ["l1", "random"]
    # x: % removed (the baseline at 0), y: the mean, error bars: +- the std
    assert bars["l1"][:2] == ([0.0, 40.0, 70.0], [0.9, 0.8, 0.7])
    assert bars["l1"][2] == pytest.approx([0.0, 0.02, 0.04])
    assert bars["random"][:2] == ([0.0, 40.0, 70.0], [0.9, 0.7, 0.5])
    assert bars["random"][2] == pytest.approx([0.0, 0.05, 0.1])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["l1", "random"]
    assert ax.get_xlabel() == "% parameters removed" and ax.get_ylabel() == "accuracy"
    assert ax.get_title() == "toy"
    assert not ax.xaxis_inverted()
    image, coloured = _png(path)
    # two differently coloured curves: blue (l1) and orange (random) pixels both present
    rgb = image[..., :3]
    blue = coloured & (rgb[..., 2] > rgb[..., 0] + 0.2)
    orange = coloured & (rgb[..., 0] > rgb[..., 2] + 0.2)
    assert blue.sum() > 100 and orange.sum() > 100


def test_compare_plot_with_a_single_criterion(tmp_path, saved):
    compare_plot(SUMMARY[:3], "accuracy", tmp_path / "one.png", "toy")
    ax = _only_axes(saved, tmp_path / "one.png")
    assert list(_errorbars(ax)) == ["l1"]
    assert np.allclose(ax.get_lines()[0].get_xdata(), [0, 40, 70])
