"""Same seed on the CPU, same run: architecture, metrics and weights, bit for bit."""

from __future__ import annotations

import torch

import prunekit as pk
from tests.reliability.support import TAYLOR_RUN, log


def test_same_seed_same_pruned_model_and_metrics(cli, tmp_path, taylor_run):
    out = tmp_path / "again"
    assert cli(*TAYLOR_RUN, "--out", str(out))[0] == 0
    assert log(out) == log(taylor_run)  # metrics, sizes, planned and achieved, per step
    a, b = pk.read_checkpoint(out / "final.pt"), pk.read_checkpoint(taylor_run / "final.pt")
    assert a["architecture"] == b["architecture"]
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
