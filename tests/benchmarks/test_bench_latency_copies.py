"""Whether interleaved timing favours a position: the paper's SqueezeNet (113x113) and eight
identical copies timed together as a latency table's call times them (batch 16, 3 rounds, 2
threads), three calls per runtime. Every copy's time over the first model's should be 1 within
the noise; a bias here is a bias of every ratio to the parent (figures, no asserts).
"""

from __future__ import annotations

import copy
import statistics

import pytest
import torch

from prunekit.latency import measure_latencies
from tests.benchmarks.conftest import SIZE

COPIES, CALLS = 8, 3


def _ratios(parent: torch.nn.Module, runtime: str) -> list[float]:
    x = torch.randn(1, 3, SIZE, SIZE)
    models = [parent, *(copy.deepcopy(parent) for _ in range(COPIES))]
    ratios = []
    for _ in range(CALLS):
        first, *others = measure_latencies(
            models, x, batch_size=16, threads=2, repeats=3, runtime=runtime
        )
        ratios += [o["median_ms"] / first["median_ms"] for o in others]
    return ratios


@pytest.mark.parametrize("runtime", ["torch", "onnxruntime"])
def test_bench_latency_copies(benchmark, parent, runtime):
    if runtime == "onnxruntime":
        pytest.importorskip("onnxruntime")
    ratios = benchmark.pedantic(_ratios, args=(parent, runtime), rounds=1, iterations=1)
    benchmark.extra_info["copy_over_first_median"] = statistics.median(ratios)
    benchmark.extra_info["copy_over_first_min"] = min(ratios)
    benchmark.extra_info["copy_over_first_max"] = max(ratios)
