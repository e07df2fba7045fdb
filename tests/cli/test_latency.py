"""``prunekit latency``: every checkpoint of a run or comparison timed beside its MACs."""

from __future__ import annotations

import json

import pytest
import torch

import prunekit as pk
from prunekit.runner import speed


@pytest.fixture(scope="module")
def toy_compare(tmp_path_factory):
    from prunekit.cli.main import main

    out = tmp_path_factory.mktemp("latency") / "cmp"
    argv = ["compare", "toy", "--criteria", "l1,random", "--seeds", "2", "--steps", "2"]
    assert main([*argv, "--out", str(out), "--quiet"]) == 0
    return out


def test_compare_dir_rows_average_the_seeds(cli, toy_compare, monkeypatch):
    timed = []
    original = speed.measure_latencies

    def counting(models, example, batch, *args, **kwargs):
        timed.append((len(models), batch))
        return original(models, example, batch, *args, **kwargs)

    monkeypatch.setattr(speed, "measure_latencies", counting)
    code, out, err = cli(
        "latency", str(toy_compare), "--batch", "1,4", "--repeats", "2", "--format", "json"
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
        assert isinstance(r["goal_met"], bool)
    # the toy's seeds and criteria share layer shapes per step: 3 architectures, timed together
    assert timed == [(3, 1), (3, 4)]


def test_run_dir_uses_its_step_0_as_baseline(cli, toy_compare):
    code, out, err = cli("latency", str(toy_compare / "runs/random-seed1"), "--repeats", "1")
    assert code == 0, err
    lines = out.splitlines()[-9:]  # the table (and its note) ends the output
    assert lines[0].split()[:5] == ["criterion", "step", "models", "params", "MACs"]
    assert [line.split()[:2] for line in lines[2:5]] == [
        ["baseline", "0"],
        ["random", "1"],
        ["random", "2"],
    ]
    assert "goal: no batch slower than the baseline" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch", "0,32"], "--batch '0,32' is not a list of positive integers"),
        (["--batch", "a"], "--batch 'a' is not a list of positive integers"),
        (["--repeats", "0"], "repeats=0 is invalid: give an integer in [1, 100000]"),
        (["--threads", "0"], "threads=0 is invalid: give null or an integer in [1, 1024]"),
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
