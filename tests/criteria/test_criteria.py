"""Criteria against hand-computed scores on a two-layer net."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import prunekit as pk
from prunekit.engine.groups import build_graph, find_groups


class TwoLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 1, bias=False)
        self.bn = nn.BatchNorm2d(3)
        self.head = nn.Conv2d(3, 1, 1, bias=False)

    def forward(self, x):
        return self.head(torch.relu(self.bn(self.conv(x)))).mean((2, 3))


def _setup():
    torch.manual_seed(0)
    model = TwoLayer()
    with torch.no_grad():
        model.conv.weight.copy_(
            torch.tensor([[1.0, -2.0], [0.5, 0.5], [3.0, 0.0]]).view(3, 2, 1, 1)
        )
        model.head.weight.copy_(torch.tensor([1.0, -1.0, 2.0]).view(1, 3, 1, 1))
        model.bn.weight.copy_(torch.tensor([0.5, -2.0, 1.0]))
        model.bn.bias.copy_(torch.tensor([0.1, 0.2, 0.3]))
    x = torch.randn(1, 2, 4, 4)
    groups = find_groups(build_graph(model, x), [])
    assert len(groups) == 1 and groups[0].num_units == 3
    return model, x, groups


def _owned(model, unit):
    """Every parameter element channel ``unit`` owns: filter, BN affine, consumer column."""
    return [
        model.conv.weight[unit],
        model.bn.weight[unit],
        model.bn.bias[unit],
        model.head.weight[:, unit],
    ]


def test_l1_and_l2_sum_over_coupled_layers():
    model, _, groups = _setup()
    l1 = pk.make_criterion("l1").scores(groups, 0)[0]
    l2 = pk.make_criterion("l2").scores(groups, 0)[0]
    for u in range(3):
        owned = torch.cat([t.reshape(-1) for t in _owned(model, u)])
        assert l1[u].item() == pytest.approx(owned.abs().sum().item())
        assert l2[u].item() == pytest.approx(owned.pow(2).sum().sqrt().item())


def test_bn_scale_is_abs_gamma():
    _, _, groups = _setup()
    scores = pk.make_criterion("bn_scale").scores(groups, 0)[0]
    assert scores.tolist() == pytest.approx([0.5, 2.0, 1.0])


def _grads(model, x, scale=1.0):
    model.zero_grad()
    model(x * scale).sum().backward()


def test_taylor_is_squared_group_sum_averaged_over_batches():
    model, x, groups = _setup()
    crit = pk.make_criterion("taylor")
    expected = torch.zeros(3, dtype=torch.float64)
    for scale in (1.0, -0.5):
        _grads(model, x, scale)
        for u in range(3):
            gw = sum((p.grad[i] * p[i]).sum() for p, i in _param_index(model, u))
            expected[u] += float(gw.detach()) ** 2 / 2
        crit.accumulate(groups)
    assert crit.scores(groups, 0)[0].tolist() == pytest.approx(expected.tolist())


def _param_index(model, u):
    return [
        (model.conv.weight, u),
        (model.bn.weight, u),
        (model.bn.bias, u),
        (model.head.weight, (slice(None), u)),
    ]


def test_taylor_param_variant_sums_squares():
    model, x, groups = _setup()
    crit = pk.make_criterion("taylor", options={"variant": "param"})
    _grads(model, x)
    crit.accumulate(groups)
    for u in range(3):
        want = sum(((p.grad[i] * p[i]) ** 2).sum() for p, i in _param_index(model, u))
        assert crit.scores(groups, 0)[0][u].item() == pytest.approx(float(want))


def test_taylor_sees_batchnorm_gradients():
    model, x, groups = _setup()
    crit = pk.make_criterion("taylor")
    _grads(model, x)
    crit.accumulate(groups)
    before = crit.scores(groups, 0)[0]
    crit.reset()
    _grads(model, x)
    model.bn.weight.grad *= 1000
    model.bn.bias.grad *= 1000
    crit.accumulate(groups)
    assert not torch.allclose(before, crit.scores(groups, 0)[0])


def test_taylor_without_backward_is_a_clear_error():
    _, _, groups = _setup()
    crit = pk.make_criterion("taylor")
    with pytest.raises(pk.PrunekitError, match=r"call loss.backward\(\) before"):
        crit.accumulate(groups)
    with pytest.raises(pk.PrunekitError, match="pruner.accumulate"):
        crit.scores(groups, 0)


def test_taylor_layer_without_gradient_scores_zero_with_warning():
    model, x, groups = _setup()
    _grads(model, x)
    model.head.weight.grad = None
    crit = pk.make_criterion("taylor")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        crit.accumulate(groups)
    assert any("head.weight has no gradient" in str(w.message) for w in caught)
    assert torch.isfinite(crit.scores(groups, 0)[0]).all()


def test_random_is_reproducible_and_ignores_global_rng():
    _, _, groups = _setup()
    a = pk.make_criterion("random", seed=3).scores(groups, 0)[0]
    torch.manual_seed(123)
    torch.rand(10)
    b = pk.make_criterion("random", seed=3).scores(groups, 0)[0]
    c = pk.make_criterion("random", seed=4).scores(groups, 0)[0]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_l2_normalisation_gives_unit_norm():
    _, _, groups = _setup()
    scores = pk.make_criterion("l1", options={"normalize": "l2"}).scores(groups, 0)[0]
    assert scores.norm().item() == pytest.approx(1.0)
