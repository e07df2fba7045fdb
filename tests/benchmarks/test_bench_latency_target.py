"""Pruning to a measured latency: the paper's SqueezeNet (BatchNorm, random weights) and the
authors' released SqueezeFacePoseNet-DWC at 113x113 on CPU (2 threads, batch 32), pruned in
one step with ``Target(latency=0.6)`` by every built-in criterion in both scopes, timed on
torch eager or on ONNX Runtime (figures, no asserts; the verdicts print at the end of a
benchmark run).

A default test run times one case (the paper's network, l1, local, torch: 158 s on a 2-core
CPU); ``PRUNEKIT_BENCH_GRID=1`` runs every case (select with ``-k``: the paper's network on
torch is 860 s on the idle machine). ``bn_scale`` needs BatchNorm, which the released network
does not have.

Each test times the pruned model against its parent in interleaved rounds, on the runtime it
was pruned for, at batch 32 (the ratio the goal is about: at most 0.63 of the parent's time)
and at batch 1 (never slower than the parent). The latency table is built once per machine,
network and runtime and read from the cache by the other cases.
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
NETWORKS = {"paper": "parent", "released": "released_parent"}  # name -> fixture
RUNTIMES = ["torch", "onnxruntime"]
DEFAULT_CASES = {("paper", "torch", "l1", "local")}
GRID = os.environ.get("PRUNEKIT_BENCH_GRID") == "1"
CASES = [
    pytest.param(
        network,
        runtime,
        criterion,
        scope,
        id=f"{network}-{runtime}-{criterion}-{scope}",
        marks=pytest.mark.skipif(
            not GRID and (network, runtime, criterion, scope) not in DEFAULT_CASES,
            reason="part of the full grid: set PRUNEKIT_BENCH_GRID=1",
        ),
    )
    for network in NETWORKS
    for runtime in RUNTIMES
    for criterion in CRITERIA
    if not (network == "released" and criterion == "bn_scale")
    for scope in ("local", "global")
]


def _pruned(parent: torch.nn.Module, criterion: str, scope: str, runtime: str) -> pk.Pruner:
    timing = {"batch_size": BATCH, "threads": 2, "runtime": runtime}  # default repeats, warm-up
    return pruned(parent, criterion, scope, target="latency=0.6", latency=timing)


@pytest.mark.parametrize(("network", "runtime", "criterion", "scope"), CASES)
def test_bench_latency_target(benchmark, request, network, runtime, criterion, scope):
    if runtime == "onnxruntime":
        pytest.importorskip("onnxruntime")
    parent = request.getfixturevalue(NETWORKS[network])
    pruner = benchmark.pedantic(
        _pruned, args=(parent, criterion, scope, runtime), rounds=1, iterations=1
    )
    model, table = pruner.model, pruner.latency_table
    # the channel multiples the table measured, and what its probe timed (see concepts.md)
    benchmark.extra_info["multiples"] = table.multiples
    benchmark.extra_info["probe"] = table.probe
    x = torch.randn(1, 3, SIZE, SIZE)
    for batch, rounds in ((BATCH, 9), (1, 25)):
        before, after = measure_latencies(
            [parent, model], x, batch, threads=2, repeats=rounds, runtime=runtime
        )
        benchmark.extra_info[f"ratio_b{batch}"] = after["median_ms"] / before["median_ms"]
    benchmark.extra_info["params_removed"] = (
        1 - pk.measure(model, x)["params"] / pk.measure(parent, x)["params"]
    )
