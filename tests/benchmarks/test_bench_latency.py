"""Realized speed-up: the paper's SqueezeNet at 113x113, batch 32, CPU, before and after
removing 40% of its MACs with l1 (figures, no asserts; the ratio prints at the end)."""

from __future__ import annotations

import copy

import pytest
import torch

import prunekit as pk

BATCH = 32


@pytest.fixture(scope="module")
def models(paper_squeezenet):
    torch.manual_seed(0)
    parent = paper_squeezenet().eval()
    pruned = copy.deepcopy(parent)
    pk.Pruner(
        pruned, torch.randn(1, 3, 113, 113), criterion="l1", target=pk.Target(macs=0.4)
    ).step()
    return parent, pruned.eval(), torch.randn(BATCH, 3, 113, 113)


def _latency(benchmark, model, x):
    def forward():
        with torch.inference_mode():
            model(x)

    benchmark.pedantic(forward, rounds=9, warmup_rounds=2)
    benchmark.extra_info["macs"] = pk.measure(model, x[:1])["macs"]


def test_bench_latency_unpruned(benchmark, models):
    parent, _, x = models
    _latency(benchmark, parent, x)


def test_bench_latency_pruned40(benchmark, models):
    _, pruned, x = models
    _latency(benchmark, pruned, x)
