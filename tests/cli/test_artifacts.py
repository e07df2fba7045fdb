"""``prunekit report``, ``eval``, ``export`` and ``list`` on a finished run."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import onnxruntime
import pytest
import torch
from prunekit_toy.task import ToyTask

import prunekit as pk
from prunekit.runner.config import resolve


def final_model(run_dir):
    return pk.load(run_dir / "final.pt", ToyTask(resolve("toy")).build_model()).eval()


@pytest.mark.parametrize("fmt", ["plain", "github", "latex", "csv", "json"])
def test_report_formats(fmt, toy_run, cli):
    code, out, err = cli("report", str(toy_run), "--format", fmt)
    assert code == 0, err
    if fmt == "json":
        assert [r["step"] for r in json.loads(out)] == [0, 1, 2, 3]
    elif fmt == "csv":
        assert [r["step"] for r in csv.DictReader(io.StringIO(out))] == ["0", "1", "2", "3"]
    else:
        assert "baseline" in out and "accuracy" in out


def test_eval_prints_the_logged_metrics(toy_run, cli):
    last = json.loads((toy_run / "log.jsonl").read_text().splitlines()[-1])
    code, out, err = cli("eval", str(toy_run / "final.pt"), "--quiet")
    assert code == 0, err
    assert f"accuracy: {last['metrics']['accuracy']:.6g}" in out
    assert f"params {last['params']:,}" in out


def test_eval_of_a_checkpoint_without_task_needs_task(toy_run, tmp_path, cli):
    bare = tmp_path / "bare.pt"
    pk.save(bare, final_model(toy_run))  # no metadata: the task is unknown
    code, _, err = cli("eval", str(bare), "--quiet")
    assert code == 2 and "--task" in err
    code, out, err = cli("eval", str(bare), "--task", "toy", "--quiet")
    assert code == 0 and "accuracy: " in out


def test_export_onnx_matches_pytorch(toy_run, tmp_path, cli):
    path = tmp_path / "model.onnx"
    code, _, err = cli("export", str(toy_run), "--format", "onnx", "--out", str(path))
    assert code == 0, err
    model = final_model(toy_run)
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"input": x.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(got, model(x).numpy(), atol=1e-4)


def test_export_pt2_matches_pytorch(toy_run, tmp_path, cli):
    path = tmp_path / "model.pt2"
    code, _, err = cli("export", str(toy_run / "best.pt"), "--format", "pt2", "--out", str(path))
    assert code == 0, err
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        expected = final_model(toy_run)(x)  # best.pt is final.pt here (no --max-drop)
    torch.testing.assert_close(torch.export.load(path).module()(x), expected, atol=1e-4, rtol=0)


def test_list_names_plugins_with_descriptions(cli):
    code, out, _ = cli("list", "criteria")
    assert code == 0 and "demo_magnitude" in out and "taylor" in out and "tasks:" not in out
    code, out, _ = cli("list")
    assert "tasks:" in out and "toy" in out and "schedules:" in out and "linear" in out
