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
    # |filter| + |gamma| + |beta| + |head column|, by hand from the weights set in _setup
    assert l1.tolist() == pytest.approx(
        [1 + 2 + 0.5 + 0.1 + 1, 0.5 + 0.5 + 2 + 0.2 + 1, 3 + 1 + 0.3 + 2]
    )
    assert l2.tolist() == pytest.approx([6.26**0.5, 5.54**0.5, 14.09**0.5])
    for u in range(3):
        owned = torch.cat([t.reshape(-1) for t in _owned(model, u)])
        assert l1[u].item() == pytest.approx(owned.abs().sum().item())
        assert l2[u].item() == pytest.approx(owned.pow(2).sum().sqrt().item())
    assert l1.dtype == l2.dtype == torch.float64


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
        assert crit.scores(groups, 0)[0][u].item() == pytest.approx(float(want.detach()))


def test_taylor_sees_batchnorm_gradients():
    """With every gradient but BatchNorm's zeroed, the score is BN's own (g*w)^2 sum."""
    model, x, groups = _setup()
    crit = pk.make_criterion("taylor")
    _grads(model, x)
    model.conv.weight.grad.zero_()
    model.head.weight.grad.zero_()
    bn = model.bn
    expected = (bn.weight.grad * bn.weight + bn.bias.grad * bn.bias).detach().double() ** 2
    assert expected.abs().min() > 0  # the check below would pass without BN otherwise
    crit.accumulate(groups)
    assert crit.scores(groups, 0)[0].tolist() == pytest.approx(expected.tolist())


def test_taylor_without_backward_is_a_clear_error():
    _, _, groups = _setup()
    crit = pk.make_criterion("taylor")
    with pytest.raises(pk.PrunekitError, match=r"call loss.backward\(\) before"):
        crit.accumulate(groups)
    with pytest.raises(pk.PrunekitError, match="pruner.accumulate"):
        crit.scores(groups, 0)


def test_taylor_layer_without_gradient_scores_zero_with_warning():
    model, x, groups = _setup()
    crit = pk.make_criterion("taylor")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            _grads(model, x)
            model.head.weight.grad = None
            crit.accumulate(groups)
    messages = [str(w.message) for w in caught]
    assert messages == [
        "taylor: head.weight has no gradient (unused in the loss?); it contributes 0"
    ]
    # the other parameters still count, the head's column contributes nothing (both batches
    # were the same, so their mean is the last one's score)
    expected = [
        float(sum((p.grad[i] * p[i]).sum() for p, i in _param_index(model, u)[:3]).detach()) ** 2
        for u in range(3)
    ]
    assert min(expected) > 0
    assert crit.scores(groups, 0)[0].tolist() == pytest.approx(expected)


def test_random_is_reproducible_and_ignores_global_rng():
    _, _, groups = _setup()
    a = pk.make_criterion("random", seed=3).scores(groups, 0)[0]
    torch.manual_seed(123)
    torch.rand(10)
    b = pk.make_criterion("random", seed=3).scores(groups, 0)[0]
    c = pk.make_criterion("random", seed=4).scores(groups, 0)[0]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_random_draws_per_step_so_a_resumed_run_matches():
    _, _, groups = _setup()
    crit = pk.make_criterion("random", seed=3)
    steps = [crit.scores(groups, k)[0] for k in range(3)]
    assert not torch.equal(steps[0], steps[1]) and not torch.equal(steps[1], steps[2])
    resumed = pk.make_criterion("random", seed=3).scores(groups, 2)[0]  # fresh, at step 2
    assert torch.equal(resumed, steps[2])


def test_l2_normalisation_divides_by_the_norm():
    _, _, groups = _setup()
    raw = [4.6, 4.2, 6.3]  # the l1 scores above
    norm = (4.6**2 + 4.2**2 + 6.3**2) ** 0.5  # sqrt(78.49)
    scores = pk.make_criterion("l1", options={"normalize": "l2"}).scores(groups, 0)[0]
    assert scores.tolist() == pytest.approx([r / norm for r in raw])


def test_unknown_normalisation_is_refused():
    with pytest.raises(pk.PrunekitError, match="normalize='max' is unknown"):
        pk.make_criterion("l1", options={"normalize": "max"})


def test_a_criterion_returning_the_wrong_number_of_scores_is_refused():
    class Short(pk.Criterion):
        def score(self, groups, step):
            return [torch.ones(g.num_units - 1) for g in groups]

    _, _, groups = _setup()
    with pytest.raises(pk.PrunekitError, match="Short returned 2 scores for group 'conv' with 3"):
        Short().scores(groups, 0)
