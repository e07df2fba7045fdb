"""Realized speed-up: the paper's SqueezeNet at 113x113 on CPU (2 threads), batch 1 and 32,
before and after removing 40% of its MACs with the engine's defaults (figures, no asserts;
the ratios against the MACs ratio print at the end of a benchmark run).

pytest-benchmark times each model in its own test, minutes apart, so machine drift enters the
ratio of two tests; each pruned test therefore also times itself against the parent in
interleaved rounds (``extra_info["interleaved_ratio"]``), and the summary prints both.

``test_bench_latency_pruned40`` is l1 in local scope (the issue's reference case);
``test_bench_latency_pruned40_by`` covers every built-in criterion in both scopes, and with
``PRUNEKIT_BENCH_GRID=1`` global scope ranked per MAC removed (``rank="per_cost"``).
"""

from __future__ import annotations

import os

import pytest
import torch

import prunekit as pk
from prunekit.latency import measure_latencies
from tests.benchmarks.conftest import SIZE, pruned

BATCHES = [1, 32]
CRITERIA = ["taylor", "l1", "l2", "random", "bn_scale"]


def _pruned(
    parent: torch.nn.Module, criterion: str, scope: str, rank: str = "score"
) -> torch.nn.Module:
    return pruned(parent, criterion, scope, target="macs=0.4", rank=rank).model


def _latency(benchmark, model: torch.nn.Module, batch: int, parent=None) -> None:
    x = torch.randn(batch, 3, SIZE, SIZE)
    if parent is not None:
        rounds = 5 if batch > 1 else 25
        before, after = measure_latencies([parent, model], x[:1], batch, repeats=rounds)
        benchmark.extra_info["interleaved_ratio"] = after["median_ms"] / before["median_ms"]

    def forward():
        with torch.inference_mode():
            model(x)

    benchmark.pedantic(forward, rounds=9 if batch > 1 else 25, warmup_rounds=2)
    benchmark.extra_info["macs"] = pk.measure(model, x[:1])["macs"]
    benchmark.extra_info["batch"] = batch


@pytest.mark.parametrize("batch", BATCHES, ids=lambda b: f"b{b}")
def test_bench_latency_unpruned(benchmark, parent, batch):
    _latency(benchmark, parent, batch)


@pytest.mark.parametrize("batch", BATCHES, ids=lambda b: f"b{b}")
def test_bench_latency_pruned40(benchmark, parent, batch):
    _latency(benchmark, _pruned(parent, "l1", "local"), batch, parent)


#: global scope also ranked per MAC removed (``rank="per_cost"``), with PRUNEKIT_BENCH_GRID=1
SCOPES = [
    pytest.param("local", "score", id="local"),
    pytest.param("global", "score", id="global"),
    pytest.param(
        "global",
        "per_cost",
        id="global-per_cost",
        marks=pytest.mark.skipif(
            os.environ.get("PRUNEKIT_BENCH_GRID") != "1",
            reason="part of the full grid: set PRUNEKIT_BENCH_GRID=1",
        ),
    ),
]


@pytest.mark.parametrize("batch", BATCHES, ids=lambda b: f"b{b}")
@pytest.mark.parametrize(("scope", "rank"), SCOPES)
@pytest.mark.parametrize("criterion", CRITERIA)
def test_bench_latency_pruned40_by(benchmark, parent, criterion, scope, rank, batch):
    _latency(benchmark, _pruned(parent, criterion, scope, rank), batch, parent)
