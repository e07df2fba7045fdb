"""``prunekit latency``: every checkpoint of a run or comparison timed beside its MACs."""

from __future__ import annotations

import json
import os
import re

import pytest
import torch

import prunekit as pk
from prunekit import latency
from prunekit.runner import speed


@pytest.fixture(scope="module")
def toy_compare(tmp_path_factory):
    from prunekit.cli.main import main

    out = tmp_path_factory.mktemp("latency") / "cmp"
    argv = ["compare", "toy", "--criteria", "l1,random", "--seeds", "2", "--steps", "2"]
    assert main([*argv, "--out", str(out), "--quiet"]) == 0
    return out


@pytest.fixture
def machine(monkeypatch):
    """``machine(load)``: this process sees 2 cores and ``load`` threads of other processes
    ready to run."""

    def set_machine(load: float) -> None:
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
        monkeypatch.setattr(latency, "_others_ready", lambda: load)

    return set_machine


def test_compare_dir_rows_average_the_seeds(cli, toy_compare, monkeypatch, machine):
    machine(0.0)  # idle, and one pass per round (no spread): every verdict is met or NOT met
    timed = []
    original = speed.measure_latencies

    def counting(models, example, batch, *args, **kwargs):
        timed.append((len(models), batch))
        return original(models, example, batch, *args, **kwargs)

    monkeypatch.setattr(speed, "measure_latencies", counting)
    code, out, err = cli(
        "latency", str(toy_compare), "--batch", "1,4", "--repeats", "1", "--format", "json"
    )
    assert code == 0, err
    rows = json.loads(out[out.index("[\n") :])  # after the fixture's own compare output
    assert [(r["criterion"], r["step"], r["models"]) for r in rows] == [
        ("baseline", 0, 1), ("l1", 1, 2), ("l1", 2, 2), ("random", 1, 2), ("random", 2, 2),
    ]  # fmt: skip
    log = [
        json.loads(x) for x in (toy_compare / "runs/l1-seed0/log.jsonl").read_text().splitlines()
    ]
    assert [r["macs"] for r in rows[:3]] == [r["macs"] for r in log]
    assert rows[0]["latency_b4_ratio"] == 1.0 and rows[0]["goal_met"] is None
    for r in rows[1:]:
        assert r["macs_ratio"] == pytest.approx(r["macs"] / rows[0]["macs"])
        assert r["latency_b4_ratio"] == pytest.approx(r["latency_b4_ms"] / rows[0]["latency_b4_ms"])
        assert isinstance(r["goal_met"], bool) and r["unreliable"] is None
    # the toy's seeds and criteria share layer shapes per step: 3 architectures, timed together
    assert timed == [(3, 1), (3, 4)]


def test_run_dir_uses_its_step_0_as_baseline(cli, toy_compare, machine):
    machine(0.0)
    code, out, err = cli("latency", str(toy_compare / "runs/random-seed1"), "--repeats", "1")
    assert code == 0, err
    lines = out.splitlines()[-9:]  # the table (and its note) ends the output
    assert lines[0].split()[:5] == ["criterion", "step", "models", "params", "MACs"]
    assert [line.split()[:2] for line in lines[2:5]] == [
        ["baseline", "0"],
        ["random", "1"],
        ["random", "2"],
    ]
    assert [line.split()[-1] in ("-", "met") for line in lines[2:5]] == [True] * 3
    assert "goal: no batch slower than the baseline" in out and "trusted" not in out


def test_a_busy_machine_gets_no_verdict_but_the_reason(cli, toy_compare, machine):
    machine(5.2)
    run_dir = str(toy_compare / "runs/random-seed1")
    args = ["latency", run_dir, "--repeats", "1", "--batch", "1", "--threads", "2"]
    code, out, err = cli(*args, "--format", "json")
    assert code == 0, err
    rows = json.loads(out)
    assert [(r["goal_met"], r["unreliable"]) for r in rows] == [(None, "load 5.2 on 2 cores")] * 3
    code, out, err = cli(*args)
    assert code == 0, err
    lines = out.splitlines()
    verdicts = [re.split(r"\s{2,}", line)[-1] for line in lines[2:5]]
    assert verdicts == ["unreliable: load 5.2 on 2 cores"] * 3
    assert "1 thread(s) of 2 requested (capped to the free cores)" in lines[-2]
    assert lines[-1] == (  # no advice to use one thread: it did already
        "The measurement could not be trusted for 3 of 3 rows (load 5.2 on 2 cores): "
        "rerun on an idle machine."
    )


def test_only_the_row_with_scattered_rounds_is_unreliable(cli, toy_compare, machine, monkeypatch):
    machine(0.0)
    original = speed.measure_latencies

    def scattered_last(*args, **kwargs):  # the last architecture: random's step 2
        results = original(*args, **kwargs)
        median = results[-1]["median_ms"]
        results[-1].update(p10_ms=0.8 * median, p90_ms=1.28 * median)
        return results

    monkeypatch.setattr(speed, "measure_latencies", scattered_last)
    run_dir = str(toy_compare / "runs/random-seed1")
    args = ["latency", run_dir, "--repeats", "1", "--threads", "2"]
    code, out, err = cli(*args, "--format", "json")
    assert code == 0, err
    rows = json.loads(out)
    assert [r["unreliable"] for r in rows] == [None, None, "rounds spread 48% > 25% of the median"]
    assert isinstance(rows[1]["goal_met"], bool) and rows[2]["goal_met"] is None
    code, out, err = cli(*args)
    assert code == 0, err
    assert out.splitlines()[-1] == (
        "The measurement could not be trusted for 1 of 3 rows (rounds spread 48% > 25% of the "
        "median): rerun on an idle machine or with --threads 1."
    )


def test_onnxruntime_is_named_in_the_json_and_the_footnote(cli, toy_compare, machine, monkeypatch):
    machine(0.0)
    tables = []
    original = speed.speed_table

    def keeping(*args, **kwargs):  # the table printed, kept for its JSON (exports are slow)
        tables.append(original(*args, **kwargs))
        return tables[-1]

    monkeypatch.setattr(speed, "speed_table", keeping)
    run_dir = str(toy_compare / "runs/random-seed1")
    code, out, err = cli(
        "latency", run_dir, "--runtime", "onnxruntime", "--batch", "2", "--repeats", "1"
    )
    assert code == 0, err
    assert "\nONNX Runtime CPU, BatchNorm folded: latency, median of 1 interleaved" in out
    rows = json.loads(tables[0].render("json"))
    assert [(r["step"], r["runtime"], r["fused"]) for r in rows] == [
        (0, "onnxruntime", True), (1, "onnxruntime", True), (2, "onnxruntime", True),
    ]  # fmt: skip
    assert all(r["latency_b2_ms"] > 0 and isinstance(r["goal_met"], bool) for r in rows[1:])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch", "0,32"], "--batch '0,32' is not a list of positive integers"),
        (["--batch", "a"], "--batch 'a' is not a list of positive integers"),
        (["--repeats", "0"], "repeats=0 is invalid: give an integer in [1, 100000]"),
        (["--threads", "0"], "threads=0 is invalid: give null or an integer in [1, 1024]"),
        (["--runtime", "cuda"], "runtime='cuda' is invalid: give one of torch, onnxruntime"),
    ],
)
def test_bad_arguments_are_refused(cli, toy_compare, args, message):
    code, _, err = cli("latency", str(toy_compare), *args)
    assert code == 2 and message in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_missing_cuda_is_refused_before_loading(cli, toy_compare):
    code, _, err = cli("latency", str(toy_compare), "--device", "cuda")
    assert code == 2 and "device 'cuda' was requested but CUDA is not available" in err


def test_a_folder_without_checkpoints_is_refused(tmp_path):
    with pytest.raises(pk.PrunekitError, match="holds no checkpoints: give a run directory"):
        speed.checkpoints(tmp_path)


def test_plot_redraws_the_comparison_with_the_measured_latency(
    cli, toy_compare, machine, monkeypatch, tmp_path
):
    machine(0.0)
    drawn = {}
    monkeypatch.setattr(
        speed, "compare_plot", lambda summary, primary, path, title, note: drawn.update(locals())
    )
    code, out, err = cli(
        "latency", str(toy_compare), "--batch", "1,4", "--repeats", "1", "--format", "json",
        "--plot", str(tmp_path / "latency.png"),
    )  # fmt: skip
    assert code == 0, err
    rows = json.loads(out[out.index("[\n") :])
    measured = {(r["criterion"], r["step"]): r["latency_b4_ms"] for r in rows}
    summary = drawn["summary"]
    assert [(s["criterion"], s["step"]) for s in summary] == list(measured)
    assert [s["latency_ms"] for s in summary] == list(measured.values())  # not the runs' own
    results = json.loads((toy_compare / "results.json").read_text())
    primary = drawn["primary"]
    assert [s["metrics"][primary][0] for s in summary] == [r[f"{primary}_mean"] for r in results]
    assert drawn["title"] == "toy: l1, random; recovery finetune"  # as compare.png's
    assert drawn["path"] == tmp_path / "latency.png"


def test_a_real_plot_file_is_written(cli, toy_compare, machine, tmp_path):
    machine(0.0)
    png = tmp_path / "latency.png"
    code, _, err = cli(
        "latency", str(toy_compare), "--batch", "2", "--repeats", "1", "--plot", str(png)
    )
    assert code == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_needs_a_finished_comparison(cli, toy_compare, tmp_path):
    code, _, err = cli(
        "latency",
        str(toy_compare / "runs/l1-seed0"),
        "--repeats",
        "1",
        "--plot",
        str(tmp_path / "x.png"),
    )
    assert code == 2 and "--plot needs a finished comparison" in err
