"""The paper's SqueezeNet: schedules land step by step, targets within one point."""

from __future__ import annotations

import pytest
import torch

import prunekit as pk

models = pytest.importorskip("prunekit_face.models")


@pytest.fixture
def net():
    torch.manual_seed(0)
    return models.squeezefacenet(bn=True), torch.randn(1, 3, 113, 113)


def test_global_taylor_linear_five_equal_increments(net):
    """torch-pruning's global Taylor removed 59% at step 1 and nothing after; we follow plan."""
    model, x = net
    pruner = pk.Pruner(
        model,
        x,
        criterion="taylor",
        schedule="linear",
        target=pk.Target(params=0.5),
        steps=5,
        scope="global",
    )
    gen = torch.Generator().manual_seed(0)
    achieved = []
    while not pruner.done:
        for _ in range(2):
            model(torch.randn(2, 3, 113, 113, generator=gen)).pow(2).mean().backward()
            pruner.accumulate()
        achieved.append(pruner.step().achieved["params"])
    increments = [b - a for a, b in zip([0.0, *achieved[:-1]], achieved)]
    assert all(inc == pytest.approx(0.1, abs=0.02) for inc in increments), increments
    assert achieved[-1] == pytest.approx(0.5, abs=0.01)


# unit by unit or in chunks of 8 channels ("auto"), the target lands within one point: in the
# local scope the groups that step up together at the common fraction step back while they can
@pytest.mark.parametrize("round_to", [None, "auto"])
@pytest.mark.parametrize("scope", ["local", "global"])
@pytest.mark.parametrize("metric", ["params", "macs"])
def test_target_within_one_point(net, scope, metric, round_to):
    model, x = net
    pruner = pk.Pruner(
        model,
        x,
        criterion="l1",
        target=pk.Target(**{metric: 0.4}),
        steps=2,
        scope=scope,
        round_to=round_to,
    )
    while not pruner.done:
        report = pruner.step()
    assert 0.4 - 1e-12 <= report.achieved[metric] <= 0.41
    assert report.achieved[metric] == pytest.approx(
        1 - pk.measure(model, x)[metric] / pruner.base[metric], abs=1e-12
    )
