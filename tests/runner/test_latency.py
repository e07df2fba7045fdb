"""measure_latency(ies): shape of the result, interleaving, no side effects, bad settings."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from prunekit.errors import PrunekitError
from prunekit.latency import measure_latencies, measure_latency


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


class Counting(nn.Module):
    def __init__(self, calls: list[str], name: str) -> None:
        super().__init__()
        self.calls, self.name = calls, name
        self.linear = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(self.name)
        return self.linear(x)


def test_several_models_are_timed_in_interleaved_rounds():
    calls: list[str] = []
    a, b = Counting(calls, "a").train(), Counting(calls, "b").eval()
    results = measure_latencies([a, b], torch.randn(1, 4), batch_size=2, repeats=3, warmup=1)
    assert calls == ["a", "b", "a", "b", "a", "b", "a", "b"]  # warm-up each, then 3 rounds
    assert len(results) == 2 and all(r["median_ms"] > 0 for r in results)
    assert a.training and not b.training  # modes restored


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"repeats": 0}, "repeats=0 is invalid: give an integer in [1, 100000]"),
        ({"batch_size": 0}, "batch_size=0 is invalid: give an integer in [1, 100000]"),
        ({"warmup": -1}, "warmup=-1 is invalid: give an integer in [0, 100000]"),
        ({"threads": 0}, "threads=0 is invalid: give null or an integer in [1, 1024]"),
    ],
)
def test_out_of_range_settings_are_refused(kwargs, message):
    with pytest.raises(PrunekitError, match=re.escape(message)):
        measure_latency(nn.Linear(4, 4), torch.randn(1, 4), **kwargs)
