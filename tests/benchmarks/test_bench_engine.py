"""Engine overhead on the paper's SqueezeNet at 113x113, batch 32, CPU (figures, no asserts).

Run: ``pytest tests/benchmarks --benchmark-json=bench.json``; the ratios print at the end.
``PRUNEKIT_BENCH_ZOO=1`` adds the prune step on the coverage suite's largest graphs.
"""

from __future__ import annotations

import copy
import os

import pytest
import torch
import torch_pruning as tp

import prunekit as pk
from tests.benchmarks.conftest import STEP_ZOO

BATCH = 32


@pytest.fixture(scope="module")
def setup(paper_squeezenet):
    torch.manual_seed(0)
    model = paper_squeezenet()
    x = torch.randn(BATCH, 3, 113, 113)
    return model, x


def _fwd_bwd(model, x):
    model(x).pow(2).mean().backward()


def test_bench_fwd_bwd_plain(benchmark, setup):
    model, x = setup

    def run():
        _fwd_bwd(model, x)
        model.zero_grad(set_to_none=True)

    benchmark.pedantic(run, rounds=5, warmup_rounds=1)


def test_bench_fwd_bwd_accumulate(benchmark, setup):
    model, x = setup
    model = copy.deepcopy(model)
    pruner = pk.Pruner(model, x[:1], criterion="taylor", target=pk.Target(params=0.4))

    def run():
        _fwd_bwd(model, x)
        pruner.accumulate()

    benchmark.pedantic(run, rounds=5, warmup_rounds=1)
    assert pruner.criterion.statistics()[-1].item() == 6  # every pass was accumulated


def _fresh(setup):
    model, x = setup
    return copy.deepcopy(model), x[:1]


def _step_prunekit(benchmark, setup, rounds: int) -> None:
    """Time prunekit's ``Pruner.step()`` removing 20% of the channels by l1."""

    def prepare():
        model, x = _fresh(setup)
        pruner = pk.Pruner(model, x, criterion="l1", target=pk.Target(channels=0.2))
        return (pruner,), {}

    benchmark.pedantic(lambda pruner: pruner.step(), setup=prepare, rounds=rounds)


def _step_torch_pruning(benchmark, setup, output: str, rounds: int) -> None:
    """Time torch-pruning's ``BasePruner.step()`` on the same channels (``output``: the layer
    it must leave whole, as prunekit does the output layer)."""

    def prepare():
        model, x = _fresh(setup)
        pruner = tp.pruner.BasePruner(
            model,
            x,
            importance=tp.importance.GroupMagnitudeImportance(p=1),
            pruning_ratio=0.2,
            ignored_layers=[getattr(model, output)],
        )
        return (pruner,), {}

    benchmark.pedantic(lambda pruner: pruner.step(), setup=prepare, rounds=rounds)


def test_bench_step_prunekit(benchmark, setup):
    _step_prunekit(benchmark, setup, rounds=5)


def test_bench_step_torch_pruning(benchmark, setup):
    _step_torch_pruning(benchmark, setup, "conv10", rounds=5)


ZOO_ON = os.environ.get("PRUNEKIT_BENCH_ZOO") == "1"


@pytest.fixture(scope="module", params=list(STEP_ZOO))
def zoo_setup(request):
    if not ZOO_ON:
        pytest.skip("the zoo step benchmarks run with PRUNEKIT_BENCH_ZOO=1 (minutes)")
    torch.manual_seed(0)
    model = getattr(pytest.importorskip(STEP_ZOO[request.param]), request.param)().eval()
    return model, torch.randn(1, 3, 224, 224)


def test_bench_step_zoo_prunekit(benchmark, zoo_setup):
    _step_prunekit(benchmark, zoo_setup, rounds=3)


def test_bench_step_zoo_torch_pruning(benchmark, zoo_setup):
    _step_torch_pruning(benchmark, zoo_setup, "output", rounds=3)
