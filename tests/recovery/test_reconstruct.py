"""Least-squares reconstruction: exact when the removed channels are linear combinations of the
kept ones, never worse on its calibration data, per group for grouped convolutions."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from prunekit.recovery import recover
from tests.recovery.nets import ConvNet, batches, prune, randomize_bn


class Pair(nn.Module):
    """Two layers with no nonlinearity in between."""

    def __init__(self, first: nn.Module, second: nn.Module) -> None:
        super().__init__()
        self.first, self.second = first, second

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(self.first(x))


def _dependent(first: nn.Module, mix: torch.Tensor, kept: list[int]) -> None:
    """Make the outputs of ``first`` outside ``kept`` the linear mix ``mix`` of the kept ones."""
    removed = [i for i in range(first.weight.shape[0]) if i not in kept]
    with torch.no_grad():
        w = first.weight.reshape(first.weight.shape[0], -1)
        w[removed] = mix @ w[kept]
        first.bias[removed] = mix @ first.bias[kept]


def _like(layer: nn.Module, inputs: int, outputs: int, groups: int = 1) -> nn.Module:
    """A fresh layer of ``layer``'s kind and geometry with other widths."""
    if isinstance(layer, nn.Linear):
        return nn.Linear(inputs, outputs)
    return type(layer)(
        inputs,
        outputs,
        layer.kernel_size,
        stride=layer.stride,
        padding=layer.padding,
        dilation=layer.dilation,
        groups=groups,
        padding_mode=layer.padding_mode,
    )


def _sliced(parent: Pair, kept: list[int], cols: list[int] | None = None, groups: int = 1) -> Pair:
    """The parent without the outputs of ``first`` outside ``kept``, by hand; ``second`` keeps
    the weight columns ``cols`` (default ``kept``)."""
    f, s = parent.first, parent.second
    first = _like(f, f.weight.shape[1], len(kept))
    second = _like(s, len(kept), s.weight.shape[0], groups)
    with torch.no_grad():
        first.weight.copy_(f.weight[kept])
        first.bias.copy_(f.bias[kept])
        second.weight.copy_(s.weight[:, kept if cols is None else cols])
        second.bias.copy_(s.bias)
    return Pair(first, second)


def _check_exact(parent: Pair, model: Pair, shape: tuple[int, ...]) -> None:
    calib = [torch.randn(16, *shape, generator=torch.Generator().manual_seed(i)) for i in range(4)]
    held_out = torch.randn(8, *shape, generator=torch.Generator().manual_seed(99))
    with torch.no_grad():
        assert (model(held_out) - parent(held_out)).abs().max() > 1e-2  # pruning did hurt
    (report,) = recover(model, parent, "reconstruct", calib)
    assert report.stats["layers"] == 1
    assert report.stats["error_after"] < 1e-8 < report.stats["error_before"]
    with torch.no_grad():
        torch.testing.assert_close(model(held_out), parent(held_out), atol=1e-5, rtol=0)


CONVS = {
    "3x3": lambda: (nn.Conv2d(3, 6, 3, padding=1), nn.Conv2d(6, 4, 3, padding=1), (3, 7, 7)),
    "stride-dilation-reflect": lambda: (
        nn.Conv2d(3, 6, 3, padding=1, padding_mode="reflect"),
        nn.Conv2d(6, 4, 3, stride=2, padding=2, dilation=2, padding_mode="reflect"),
        (3, 9, 9),
    ),
    "same": lambda: (nn.Conv2d(3, 6, 3), nn.Conv2d(6, 4, 4, padding="same"), (3, 8, 8)),
    "conv1d": lambda: (
        nn.Conv1d(3, 6, 3, padding=1),
        nn.Conv1d(6, 4, 3, stride=2, padding=1, dilation=2),
        (3, 11),
    ),
}


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")  # asymmetric: wanted
@pytest.mark.parametrize("kind", CONVS)
def test_conv_conv_is_restored_exactly(kind: str):
    torch.manual_seed(0)
    first, second, shape = CONVS[kind]()
    parent = Pair(first, second).eval()
    kept = [0, 2, 3, 5]
    _dependent(parent.first, torch.randn(2, 4), kept)
    _check_exact(parent, _sliced(parent, kept).eval(), shape)


def test_linear_linear_is_restored_exactly():
    torch.manual_seed(1)
    parent = Pair(nn.Linear(10, 8), nn.Linear(8, 3)).eval()
    kept = [1, 2, 4, 5, 7]
    _dependent(parent.first, torch.randn(3, 5), kept)
    _check_exact(parent, _sliced(parent, kept).eval(), (10,))


def test_grouped_conv_is_restored_exactly_per_group():
    # groups=2 with 2 inputs per group; the second input of each group is a multiple of the
    # first, which is all that is left: each group must be solved on its own input
    torch.manual_seed(2)
    parent = Pair(nn.Conv2d(3, 4, 1), nn.Conv2d(4, 4, 3, padding=1, groups=2)).eval()
    with torch.no_grad():
        for keep, drop, c in ((0, 1, 0.5), (2, 3, -2.0)):
            parent.first.weight[drop] = c * parent.first.weight[keep]
            parent.first.bias[drop] = c * parent.first.bias[keep]
    model = _sliced(parent, [0, 2], cols=[0], groups=2).eval()
    assert model.second.weight.shape == (4, 1, 3, 3)
    _check_exact(parent, model, (3, 6, 6))


class FaceLike(nn.Module):
    """conv -> ReLU -> grouped 3x3 conv with one input channel and 4 filters per group (as in
    the face net's expand3x3) -> ReLU -> pool -> linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.dw = nn.Conv2d(6, 24, 3, padding=1, groups=6)
        self.head = nn.Linear(24, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.dw(torch.relu(self.conv1(x))))
        return self.head(x.mean((2, 3)))


def test_depthwise_multiplier_conv_recovers_perturbed_weights():
    # pruned by the Pruner, dw loses whole groups; its inputs still match the parent's kept
    # channels, so the exact fit of its perturbed weights is the parent's, group by group
    torch.manual_seed(3)
    model = FaceLike().eval()
    parent, kept = prune(model)
    assert model.dw.groups < parent.dw.groups and model.dw.in_channels == model.dw.groups
    with torch.no_grad():
        model.dw.weight.add_(torch.randn_like(model.dw.weight) * 0.1)
        model.dw.bias.add_(0.1)
    captured = {}
    for name, net in (("model", model), ("parent", parent)):
        net.dw.register_forward_hook(lambda m, a, out, name=name: captured.__setitem__(name, out))
    (report,) = recover(model, parent, "reconstruct", batches(4, 8), kept=kept)
    assert report.stats["layers"] == 2  # dw and head
    with torch.no_grad():
        x = torch.randn(4, 3, 8, 8)
        model(x), parent(x)
    want = captured["parent"][:, kept["dw"]]
    torch.testing.assert_close(captured["model"], want, atol=1e-5, rtol=0)


def _layer_io(net: nn.Module, name: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    layer = dict(net.named_modules())[name]
    box = {}
    h1 = layer.register_forward_pre_hook(lambda m, a: box.__setitem__("x", a[0]))
    h2 = layer.register_forward_hook(lambda m, a, out: box.__setitem__("y", out))
    with torch.no_grad():
        net(x)
    h1.remove()
    h2.remove()
    return box["x"], box["y"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reconstruction_error_never_increases(seed: int):
    torch.manual_seed(seed)
    model = randomize_bn(ConvNet(), seed).eval()
    parent, kept = prune(model, 0.4)
    old = {k: v.clone() for k, v in model.state_dict().items()}
    calib = batches(3, 8, seed=seed)
    (report,) = recover(
        model,
        parent,
        "reconstruct",
        calib,
        kept=kept,
        options={"reconstruct": {"max_positions": None}},
    )
    assert report.stats["layers"] == 3  # conv2, dw and head have narrower inputs
    assert report.stats["error_after"] <= report.stats["error_before"]
    x = torch.cat(calib)
    # layer l's inputs depend only on the layers before it, which were final when l was fitted
    for name in ("conv2", "dw", "head"):
        layer = dict(model.named_modules())[name]
        xin, yout = _layer_io(model, name, x)
        _, want = _layer_io(parent, name, x)
        if name in kept:
            want = want[:, kept[name]]
        new_error = (yout - want).pow(2).sum()
        with torch.no_grad():
            w, b = layer.weight.clone(), layer.bias.clone()
            layer.weight.copy_(old[f"{name}.weight"])
            layer.bias.copy_(old[f"{name}.bias"])
            old_error = (layer(xin) - want).pow(2).sum()
            layer.weight.copy_(w)
            layer.bias.copy_(b)
        assert new_error <= old_error * (1 + 1e-6), name
        assert new_error < old_error, name  # and it does help on these nets


def test_layers_all_refits_unpruned_layers_and_logs_skips():
    torch.manual_seed(4)
    model = randomize_bn(ConvNet()).eval()
    parent, kept = prune(model)
    del kept["conv1"]  # conv1's outputs cannot be matched any more
    lines: list[str] = []
    (report,) = recover(
        model,
        parent,
        "reconstruct",
        batches(2, 8),
        kept=kept,
        options={"reconstruct": {"layers": "all"}},
        log=lines.append,
    )
    assert report.stats["layers"] == 3
    assert any("skipped 'conv1'" in line for line in lines)


def test_every_layer_is_refitted_in_one_forward_pass_of_each_network():
    torch.manual_seed(5)
    model = randomize_bn(ConvNet()).eval()
    parent, kept = prune(model)
    calls = {"model": 0, "parent": 0}

    def counter(who: str):
        def count(*_: object) -> None:
            calls[who] += 1

        return count

    model.conv1.register_forward_pre_hook(counter("model"))
    parent.conv1.register_forward_pre_hook(counter("parent"))
    options = {"reconstruct": {"images": 24}}
    (report,) = recover(model, parent, "reconstruct", batches(3, 8), kept=kept, options=options)
    assert report.stats["layers"] == 3  # conv2, dw and head, one after the other
    assert calls == {"model": 3 + 1, "parent": 3}  # + 1 image that finds the forward order


def test_rank_deficient_grams_are_summed_up_in_one_line():
    # Linear(10 -> 8 -> 3) pruned to 5 hidden units, refitted on 3 rows: the second layer's
    # Gram over 5 inputs + bias has rank 3 of 6
    torch.manual_seed(6)
    parent = Pair(nn.Linear(10, 8), nn.Linear(8, 3)).eval()
    model = _sliced(parent, [0, 1, 3, 4, 6]).eval()
    lines: list[str] = []
    recover(model, parent, "reconstruct", [torch.randn(3, 10)], log=lines.append)
    deficient = [line for line in lines if "rank-deficient" in line]
    assert deficient == [
        "reconstruct: 1 of 1 layers have a rank-deficient input Gram (fewest: 'second', rank 3 "
        "of 6); the ridge keeps their old weights where the images do not determine them"
    ]
