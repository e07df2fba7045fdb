"""The obs criterion: each channel's score is the least-squares error its removal leaves in the
consuming layer after an optimal refit, checked against refits done by hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from prunekit.criteria.obs import OBS
from prunekit.engine.groups import build_graph, find_groups
from prunekit.errors import PrunekitError


class Net(nn.Module):
    """conv (the pruned channels) -> ReLU -> ``head`` (their one dense consumer)."""

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 5, 3, padding=1)
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x)))


def _observed(net: nn.Module, crit: OBS, images: list[torch.Tensor]):
    groups = find_groups(build_graph(net, images[0][:1]), [])
    layers = crit.observed(groups)
    handles = [m.register_forward_pre_hook(lambda m, a: crit.observe(m, a[0])) for m in layers]
    with torch.no_grad():
        for x in images:
            net(x)
    for h in handles:
        h.remove()
    return groups, layers


def _refit_error(head: nn.Conv2d, hidden: torch.Tensor, drop: int) -> float:
    """Least-squares output error of ``head`` refitted without input channel ``drop``,
    relative to its output energy (solved on the unfolded inputs, by hand)."""
    cols = torch.nn.functional.unfold(hidden, head.kernel_size, padding=head.padding)
    x = cols.transpose(1, 2).reshape(-1, cols.shape[1]).double()
    w = head.weight.detach().reshape(head.out_channels, -1).double()
    y = x @ w.T
    k = head.kernel_size[0] * head.kernel_size[1]
    keep = [c for c in range(x.shape[1]) if c // k != drop]
    fit = torch.linalg.lstsq(x[:, keep], y).solution
    return float((x[:, keep] @ fit - y).pow(2).sum() / y.pow(2).sum())


@pytest.mark.parametrize("kernel", [1, 3])
def test_scores_equal_the_error_left_by_a_refit_without_the_channel(kernel: int):
    torch.manual_seed(0)
    net = Net(nn.Conv2d(5, 4, kernel, padding=kernel // 2, bias=False)).eval()
    images = [torch.randn(8, 3, 6, 6) for _ in range(2)]
    crit = OBS(damp=1e-12)
    groups, layers = _observed(net, crit, images)
    assert layers == [net.head]
    (scores,) = crit.scores(groups, 0)
    with torch.no_grad():
        hidden = torch.cat([torch.relu(net.conv(x)) for x in images])
    want = torch.tensor([_refit_error(net.head, hidden, c) for c in range(5)], dtype=torch.float64)
    torch.testing.assert_close(scores, want, rtol=1e-6, atol=1e-12)


def test_a_channel_the_others_carry_scores_zero_however_large_its_weights():
    torch.manual_seed(1)
    net = Net(nn.Conv2d(5, 2, 1, bias=False)).eval()
    with torch.no_grad():
        net.conv.weight[4] = 3 * net.conv.weight[0]  # channel 4 is 3 x channel 0 after ReLU
        net.conv.bias[4] = 3 * net.conv.bias[0]
        net.head.weight[:, 4] = 100.0
    crit = OBS(damp=1e-12)
    groups, _ = _observed(net, crit, [torch.randn(16, 3, 5, 5)])
    (scores,) = crit.scores(groups, 0)
    redundant = max(scores[0], scores[4])  # either copy can go, the other takes over
    assert redundant < 1e-9
    assert bool((scores[1:4] > 1e4 * redundant).all())


def test_sampled_and_diagonal_statistics_still_rank_channels():
    torch.manual_seed(2)
    net = Net(nn.Conv2d(5, 3, 3, padding=1, bias=False)).eval()
    crit = OBS(max_positions=50, max_features=10)  # 5 x 9 = 45 inputs > 10: diagonal only
    groups, _ = _observed(net, crit, [torch.randn(4, 3, 6, 6)])
    (scores,) = crit.scores(groups, 0)
    assert crit.statistics()[0].shape == (45,)
    assert scores.shape == (5,) and bool((scores > 0).all())
    crit.reset()
    assert crit.statistics() == []


def test_scoring_without_forward_passes_says_how_to_feed_it():
    net = Net(nn.Conv2d(5, 2, 1))
    groups = find_groups(build_graph(net, torch.randn(1, 3, 4, 4)), [])
    with pytest.raises(PrunekitError, match="pruner.observing"):
        OBS().scores(groups, 0)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"damp": 0}, "damp=0 is out of range"),
        ({"max_positions": 0}, "max_positions=0 is out of range"),
        ({"max_features": True}, "max_features=True is out of range"),
    ],
)
def test_bad_options_are_one_line_errors(options: dict, message: str):
    with pytest.raises(PrunekitError, match=message):
        OBS(**options)


def test_the_pruner_feeds_it_and_reconstruction_then_restores_the_output_exactly():
    import copy

    import prunekit as pk

    torch.manual_seed(3)
    net = Net(nn.Conv2d(5, 2, 1)).eval()
    with torch.no_grad():  # channel 4 = 3 x channel 1 after the ReLU: the one to remove
        net.conv.weight[4] = 3 * net.conv.weight[1]
        net.conv.bias[4] = 3 * net.conv.bias[1]
        net.head.weight[:, 4] = 5.0
    parent = copy.deepcopy(net)
    images = [torch.randn(16, 3, 5, 5) for _ in range(2)]
    pruner = pk.Pruner(
        net, images[0][:1], criterion="obs", target=pk.Target(channels=0.2), round_to=None
    )
    assert pruner.needs_inputs and not pruner.needs_grad
    with torch.no_grad(), pruner.observing():
        for x in images:
            net(x)
    pruner.step()
    assert net.conv.out_channels == 4 and pruner.kept["conv"] in ([0, 2, 3, 4], [0, 1, 2, 3])
    pk.recover(net, parent, "reconstruct", images, kept=pruner.kept)
    held_out = torch.randn(4, 3, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(net(held_out), parent(held_out), atol=1e-5, rtol=0)


def test_a_run_scores_with_forward_passes_on_the_recovery_batches(tmp_path):
    from prunekit_toy.task import ToyTask

    from prunekit.runner import run
    from prunekit.runner.config import resolve

    config = resolve(
        "toy",
        flags={"prune.criterion": "obs"},
        sets=["baseline.epochs=1", "recovery.methods=[]", "prune.steps=2"],
    )

    def no_loss(self, model, batch):
        raise AssertionError("obs needs no loss")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ToyTask, "loss", no_loss)
        patch.setattr(ToyTask, "prepare_baseline", lambda self, model: "as built")
        result = run.start(config, tmp_path / "run", quiet=True, echo=lambda _: None)
    assert [r["step"] for r in result.records] == [0, 1, 2]
    target = config["prune"]["target"]["params"]
    assert result.records[-1]["achieved"]["params"] == pytest.approx(target, abs=0.01)


def test_a_model_output_feature_scores_its_variance_share_of_the_output_energy():
    """With ``prune_outputs`` the head's channels are the model's output: nothing refits them,
    so each scores the variance of its pre-activation values (its mean, shared by every
    input, left out) over the head's whole output energy."""
    torch.manual_seed(4)
    net = Net(nn.Conv2d(5, 4, 1, bias=False)).eval()
    images = [torch.randn(8, 3, 6, 6) for _ in range(2)]
    crit = OBS()
    groups = find_groups(build_graph(net, images[0][:1]), [], prune_outputs=True)
    head = next(g for g in groups if g.reaches_output)
    assert net.head in crit.observed(groups)
    handles = [
        m.register_forward_pre_hook(lambda m, a: crit.observe(m, a[0]))
        for m in crit.observed(groups)
    ]
    with torch.no_grad():
        for x in images:
            net(x)
        hidden = torch.cat([torch.relu(net.conv(x)) for x in images])
    for h in handles:
        h.remove()
    scores = dict(zip([g.name for g in groups], crit.scores(groups, 0)))[head.name]
    y = net.head(hidden).double().permute(0, 2, 3, 1).reshape(-1, 4)  # rows: image x position
    want = (y - y.mean(0)).pow(2).sum(0) / y.pow(2).sum()
    torch.testing.assert_close(scores, want, rtol=1e-6, atol=1e-12)
