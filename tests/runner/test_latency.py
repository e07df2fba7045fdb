"""measure_latency: shape of the result, and no side effects on the model or torch."""

from __future__ import annotations

import torch
from torch import nn

from prunekit.latency import measure_latency


class TwoInputs(nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        assert a.shape[0] == b.shape[0] == 8
        return a + b


def test_latency_statistics_are_ordered():
    model = nn.Sequential(nn.Linear(16, 16), nn.ReLU())
    result = measure_latency(model, torch.randn(1, 16), batch_size=4, repeats=5, warmup=1)
    assert set(result) == {"median_ms", "p10_ms", "p90_ms"}
    assert 0 < result["p10_ms"] <= result["median_ms"] <= result["p90_ms"]


def test_latency_restores_mode_and_threads():
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout()).train()
    threads = torch.get_num_threads()
    measure_latency(model, torch.randn(1, 4), threads=1, repeats=1, warmup=0)
    assert model.training and torch.get_num_threads() == threads


def test_latency_repeats_every_input_to_the_batch_size():
    inputs = (torch.randn(1, 3), torch.randn(1, 3))
    assert measure_latency(TwoInputs(), inputs, batch_size=8, repeats=1, warmup=0)["median_ms"] > 0
