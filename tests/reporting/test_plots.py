"""Plots: the drawn figure holds the data, error bars, axis ranges, labels and title, and the
PNG shows it."""

from __future__ import annotations

import copy

import matplotlib.image
import pytest
from matplotlib.container import ErrorbarContainer
from matplotlib.figure import Figure

from prunekit.reporting import compare_plot, plot_title, run_plot
from prunekit.reporting.plots import MIN_SPAN, compare_figure, fold_std, run_figure
from prunekit.runner.report import write_report
from prunekit.runner.rundir import RunDir

RECORDS = [
    {"step": 0, "params": 1_234_567, "latency_ms": 2.0,
     "metrics": {"accuracy": 0.95, "accuracy_std": 0.010, "loss": 0.30}},
    {"step": 1, "params": 694_056, "latency_ms": 1.5,
     "metrics": {"accuracy": 0.94, "accuracy_std": 0.012, "loss": 0.31}},
    {"step": 2, "params": 350_000, "latency_ms": 1.1,
     "metrics": {"accuracy": 0.93, "accuracy_std": 0.015, "loss": 0.33}},
]  # fmt: skip

SUMMARY = [
    {"criterion": "baseline", "step": 0, "params_removed": 0.0, "latency_ms": 2.0,
     "metrics": {"accuracy": [0.9, 0.0]}},
    {"criterion": "l1", "step": 1, "params_removed": 0.4, "latency_ms": 1.6,
     "metrics": {"accuracy": [0.8, 0.02]}},
    {"criterion": "l1", "step": 2, "params_removed": 0.7, "latency_ms": 1.2,
     "metrics": {"accuracy": [0.7, 0.04]}},
    {"criterion": "random", "step": 1, "params_removed": 0.4, "latency_ms": 1.7,
     "metrics": {"accuracy": [0.7, 0.05]}},
    {"criterion": "random", "step": 2, "params_removed": 0.7, "latency_ms": 1.3,
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


def _errorbars(ax):
    """Label -> (x, y, half the error bar or None) of every error-bar curve of ``ax``."""
    out = {}
    for bar in (c for c in ax.containers if isinstance(c, ErrorbarContainer)):
        data_line, _caps, bar_lines = bar.lines
        half = None
        if bar.has_yerr:
            (segments,) = bar_lines
            half = [(seg[1][1] - seg[0][1]) / 2 for seg in segments.get_segments()]
        out[bar.get_label()] = (list(data_line.get_xdata()), list(data_line.get_ydata()), half)
    return out


def _span(ax):
    lo, hi = ax.get_ylim()
    return hi - lo


def _only_figure(saved, path):
    assert len(saved) == 1  # one figure, saved once
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left
    return saved[0][0]


def _png(path):
    """The saved image as an array, checked to be 11x4.5 inches at 120 dpi and not blank."""
    image = matplotlib.image.imread(path)
    assert image.shape[:2] == (540, 1320)
    rgb = image[..., :3]
    assert rgb.std() > 0.05  # not a single flat colour
    coloured = (rgb.max(-1) - rgb.min(-1)) > 0.2  # pixels of a coloured line or marker
    return image, coloured


def test_plot_title_names_task_data_criterion_and_recovery():
    assert (
        plot_title("face", "lfw", ["taylor"], ["reconstruct+distill"])
        == "face on lfw: taylor, recovery reconstruct+distill"
    )
    assert plot_title("toy", None, ["l1"], ["none"]) == "toy: l1, no recovery"
    assert (
        plot_title("face", "synthetic", ["taylor", "l1"], ["none", "distill"])
        == "face on synthetic: taylor, l1; recovery none, distill"
    )


def test_fold_std_reads_the_primary_metrics_std_where_every_record_carries_it():
    assert fold_std(RECORDS, "accuracy") == [0.010, 0.012, 0.015]
    assert fold_std(RECORDS, "loss") is None  # no loss_std
    partial = copy.deepcopy(RECORDS)
    del partial[1]["metrics"]["accuracy_std"]
    assert fold_std(partial, "accuracy") is None


def test_run_figure_plots_the_metric_against_parameters_and_latency_with_fold_std():
    fig = run_figure(RECORDS, "accuracy", "face on lfw: taylor, recovery distill", note="n: 1")
    assert fig.get_suptitle() == "face on lfw: taylor, recovery distill"
    assert fig.get_supxlabel() == "n: 1"  # the provenance, in small print
    size_ax, latency_ax = fig.axes  # two panels
    for ax, xs in ((size_ax, [1_234_567, 694_056, 350_000]), (latency_ax, [2.0, 1.5, 1.1])):
        (bars,) = _errorbars(ax).values()
        assert bars[0] == xs and bars[1] == [0.95, 0.94, 0.93]  # the primary metric
        assert bars[2] == pytest.approx([0.010, 0.012, 0.015])  # ± the std over folds
        assert [t.get_text() for t in ax.texts] == ["base", "1", "2"]
        assert ax.xaxis_inverted()  # pruning moves right: smaller and faster
    assert list(_errorbars(size_ax)) == ["accuracy ± std over folds"]
    assert [t.get_text() for t in size_ax.get_legend().get_texts()] == ["accuracy ± std over folds"]
    assert size_ax.get_xlabel() == "parameters" and latency_ax.get_xlabel() == "latency (ms)"
    # the y-axis: at least 10 points, inside [0, 1], the data and bars inside, range stated
    lo, hi = size_ax.get_ylim()
    assert latency_ax.get_ylim() == (lo, hi)  # shared
    assert hi - lo >= MIN_SPAN and 0 <= lo <= 0.93 - 0.015 and 0.95 + 0.010 <= hi <= 1
    assert size_ax.get_ylabel() == f"accuracy (y-axis {lo:.2f}–{hi:.2f})"
    # readable parameter counts, no "1e6" offset
    formatter = size_ax.xaxis.get_major_formatter()
    assert [formatter(n) for n in (950, 694_056, 1_234_567, 12_500)] == [
        "950", "694k", "1.23M", "12.5k",
    ]  # fmt: skip
    fig.canvas.draw()
    labels = [t.get_text() for t in size_ax.get_xticklabels() if t.get_text()]
    assert labels and all(label[-1] in "kM" or label == "0" for label in labels)
    assert size_ax.xaxis.get_offset_text().get_text() == ""
    assert latency_ax.xaxis.get_offset_text().get_text() == ""


def test_run_figure_keeps_two_point_noise_flat():
    noisy = [
        {**RECORDS[0], "metrics": {"accuracy": 0.912}},
        {**RECORDS[1], "metrics": {"accuracy": 0.908}},
    ]
    size_ax, _ = run_figure(noisy, "accuracy", "t").axes
    lo, hi = size_ax.get_ylim()
    assert hi - lo >= MIN_SPAN - 1e-12  # not autoscaled to the 0.004 between the points
    assert lo <= 0.908 and hi >= 0.912
    (bars,) = _errorbars(size_ax).values()
    assert bars[2] is None  # no std in the metrics: no error bars
    assert [t.get_text() for t in size_ax.get_legend().get_texts()] == ["accuracy"]


def test_run_figure_near_a_perfect_score_stays_inside_zero_to_one():
    perfect = [
        {**RECORDS[0], "metrics": {"accuracy": 0.995, "accuracy_std": 0.02}},
        {**RECORDS[1], "metrics": {"accuracy": 1.0, "accuracy_std": 0.0}},
    ]
    size_ax, _ = run_figure(perfect, "accuracy", "t").axes
    lo, hi = size_ax.get_ylim()
    assert (lo, hi) == pytest.approx((0.9, 1.0))  # bars past 1 are cut at the bound
    assert size_ax.get_ylabel() == "accuracy (y-axis 0.90–1.00)"


def test_run_figure_of_an_unbounded_metric():
    size_ax, _ = run_figure(RECORDS, "loss", "t").axes
    (bars,) = _errorbars(size_ax).values()
    assert bars[1] == [0.30, 0.31, 0.33] and bars[2] is None
    lo, hi = size_ax.get_ylim()
    assert hi - lo >= MIN_SPAN * 0.33 and lo <= 0.30 and hi >= 0.33
    assert size_ax.get_ylabel().startswith("loss (y-axis ")


def test_run_plot_saves_the_figure_as_a_png(tmp_path, saved):
    path = tmp_path / "curve.png"
    run_plot(RECORDS, "accuracy", path, "toy: l1, no recovery", note="data: synthetic")
    fig = _only_figure(saved, path)
    assert len(fig.axes) == 2 and fig.get_suptitle() == "toy: l1, no recovery"
    _, coloured = _png(path)
    assert coloured.sum() > 400  # the blue curves, markers and bars of both panels


def test_compare_figure_draws_each_criterion_from_the_shared_baseline():
    fig = compare_figure(SUMMARY, "accuracy", "face on lfw: l1, random; no recovery", note="x")
    assert fig.get_suptitle() == "face on lfw: l1, random; no recovery"
    assert fig.get_supxlabel() == "x"
    size_ax, latency_ax = fig.axes
    bars = _errorbars(size_ax)
    assert list(bars) == ["l1", "random"]
    # x: % removed (the baseline at 0), y: the mean, error bars: +- the std over seeds
    assert bars["l1"][:2] == ([0.0, 40.0, 70.0], [0.9, 0.8, 0.7])
    assert bars["l1"][2] == pytest.approx([0.0, 0.02, 0.04])
    assert bars["random"][:2] == ([0.0, 40.0, 70.0], [0.9, 0.7, 0.5])
    assert bars["random"][2] == pytest.approx([0.0, 0.05, 0.1])
    legend = size_ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["l1", "random"]
    assert legend.get_title().get_text() == "mean ± std over seeds"
    assert size_ax.get_xlabel() == "% parameters removed" and not size_ax.xaxis_inverted()
    # the second panel: the same means and bars against the mean latency, faster to the right
    latency = _errorbars(latency_ax)
    assert latency["l1"][0] == [2.0, 1.6, 1.2] and latency["random"][0] == [2.0, 1.7, 1.3]
    assert latency["random"][1:] == bars["random"][1:]
    assert latency_ax.get_xlabel() == "latency (ms)" and latency_ax.xaxis_inverted()
    assert size_ax.get_ylim() == pytest.approx((0.35, 0.95))  # 0.4-0.9 and 10% margins
    assert size_ax.get_ylabel() == "accuracy (y-axis 0.35–0.95)"


def test_compare_plot_saves_two_coloured_curves(tmp_path, saved):
    path = tmp_path / "compare.png"
    compare_plot(SUMMARY, "accuracy", path, "toy")
    _only_figure(saved, path)
    image, coloured = _png(path)
    # two differently coloured curves: blue (l1) and orange (random) pixels both present
    rgb = image[..., :3]
    blue = coloured & (rgb[..., 2] > rgb[..., 0] + 0.2)
    orange = coloured & (rgb[..., 0] > rgb[..., 2] + 0.2)
    assert blue.sum() > 100 and orange.sum() > 100


def test_compare_figure_with_a_single_criterion():
    size_ax, latency_ax = compare_figure(SUMMARY[:3], "accuracy", "toy").axes
    assert list(_errorbars(size_ax)) == ["l1"] == list(_errorbars(latency_ax))


def test_write_report_titles_the_curve_with_task_data_criterion_and_recovery(tmp_path, saved):
    run_dir = RunDir(tmp_path / "run")
    history = []
    for r in RECORDS:
        run_dir.checkpoint(r["step"]).parent.mkdir(parents=True, exist_ok=True)
        run_dir.checkpoint(r["step"]).write_bytes(b"weights")
        removed = 1 - r["params"] / RECORDS[0]["params"]
        history.append(
            {
                **r,
                "macs": 10 * r["params"],
                "planned": {"target": removed},
                "achieved": {"params": removed, "macs": removed},
            }
        )
    history[0]["provenance"] = {"data.source": "lfw", "data.root": "/data/lfw"}
    config = {
        "task": "face",
        "prune": {"criterion": "taylor", "target": {"params": 0.4}},
        "recovery": {"methods": ["reconstruct", "distill"]},
    }
    task = type("Task", (), {"primary_metric": "accuracy"})()
    write_report(run_dir, config, task, history, history[-1], "settings")
    fig = saved[0][0]
    assert fig.get_suptitle() == "face on lfw: taylor, recovery reconstruct+distill"
    assert fig.get_supxlabel() == "data.source: lfw; data.root: /data/lfw"
    assert len(fig.axes) == 2
    assert _errorbars(fig.axes[0])["accuracy ± std over folds"][2] == pytest.approx(
        [0.010, 0.012, 0.015]
    )
    assert run_dir.curve.read_bytes()[:4] == b"\x89PNG"
