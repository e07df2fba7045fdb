"""Pruning to a measured latency: the paper's SqueezeNet at 113x113 on CPU (2 threads, batch
32), pruned in one step with ``Target(latency=0.6)`` by every built-in criterion in both
scopes (figures, no asserts; the verdicts print at the end of a benchmark run).

A default test run times one case (l1, local: 158 s on a 2-core CPU); the whole grid of ten
runs with ``PRUNEKIT_BENCH_GRID=1`` (860 s on the idle machine).

Each test times the pruned model against its parent in interleaved rounds at batch 32 (the
ratio the goal is about: at most 0.63 of the parent's time) and at batch 1 (never slower
than the parent). The latency table is built once per machine and read from the cache by
the other cases.
"""

from __future__ import annotations

import os

import pytest
import torch

import prunekit as pk
from prunekit.latency import measure_latencies
from tests.benchmarks.conftest import SIZE, pruned

BATCH = 32
CRITERIA = ["taylor", "l1", "l2", "random", "bn_scale"]
TIMING = {"batch_size": BATCH, "threads": 2}  # the check's default repeats and warm-up
DEFAULT_CASES = {("l1", "local")}
GRID = os.environ.get("PRUNEKIT_BENCH_GRID") == "1"
CASES = [
    pytest.param(
        criterion,
        scope,
        id=f"{criterion}-{scope}",
        marks=pytest.mark.skipif(
            not GRID and (criterion, scope) not in DEFAULT_CASES,
            reason="part of the full grid: set PRUNEKIT_BENCH_GRID=1",
        ),
    )
    for criterion in CRITERIA
    for scope in ("local", "global")
]


def _pruned(parent: torch.nn.Module, criterion: str, scope: str) -> torch.nn.Module:
    return pruned(parent, criterion, scope, target="latency=0.6", latency=TIMING)


@pytest.mark.parametrize(("criterion", "scope"), CASES)
def test_bench_latency_target(benchmark, parent, criterion, scope):
    model = benchmark.pedantic(_pruned, args=(parent, criterion, scope), rounds=1, iterations=1)
    x = torch.randn(1, 3, SIZE, SIZE)
    for batch, rounds in ((BATCH, 9), (1, 25)):
        before, after = measure_latencies([parent, model], x, batch, threads=2, repeats=rounds)
        benchmark.extra_info[f"ratio_b{batch}"] = after["median_ms"] / before["median_ms"]
    benchmark.extra_info["params_removed"] = (
        1 - pk.measure(model, x)["params"] / pk.measure(parent, x)["params"]
    )
