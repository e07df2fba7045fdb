"""Halting forward passes: the tensor at each watched layer, in order, with edits taking effect."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from prunekit.errors import PrunekitError
from prunekit.recovery.lockstep import HaltingForward, watch


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3), nn.ReLU(), nn.Linear(3, 2))


def test_hands_over_each_layers_input_as_a_plain_forward_computes_it():
    net, x = _net(), torch.randn(6, 4)
    layers = [net[0], net[2], net[4]]
    handles = watch(layers, "input")
    forward = HaltingForward(net, x)
    try:
        got = [forward.until(layer) for layer in layers]
    finally:
        forward.close()
        for h in handles:
            h.remove()
    assert torch.equal(got[0], x)
    assert torch.equal(got[1], net[1](net[0](x)).detach())
    assert torch.equal(got[2], net[:4](x).detach())


def test_a_weight_changed_while_halted_is_used_by_the_rest_of_the_pass():
    net, x = _net(), torch.randn(6, 4)
    seen: list[torch.Tensor] = []
    handles = watch([net[2]], "input") + watch([net[4]], "input")
    forward = HaltingForward(net, x)
    try:
        forward.until(net[2])
        with torch.no_grad():
            net[2].weight.mul_(-1)
        seen.append(forward.until(net[4]))
    finally:
        forward.close()
        for h in handles:
            h.remove()
    assert torch.allclose(seen[0], net[:4](x).detach())  # computed with the flipped weights


def test_outputs_and_the_main_thread_untouched_by_the_hooks():
    net, x = _net(), torch.randn(2, 4)
    handles = watch([net[0]], "output")
    try:
        plain = net(x)  # the main thread passes through the hooks
        forward = HaltingForward(net, x)
        out = forward.until(net[0])
        forward.close()
    finally:
        for h in handles:
            h.remove()
    assert torch.equal(out, net[0](x).detach())
    assert torch.equal(plain, net(x))


class _Branchy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(2, 2), nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            return self.b(self.a(x))
        return self.a(self.b(x))


def test_a_pass_reaching_layers_in_another_order_is_an_error():
    net = _Branchy()
    handles = watch([net.a, net.b], "input")
    forward = HaltingForward(net, -torch.ones(1, 2))  # calls b first
    try:
        with pytest.raises(PrunekitError, match="another order"):
            forward.until(net.a)
    finally:
        forward.close()
        for h in handles:
            h.remove()


def test_an_error_inside_the_model_reaches_the_caller():
    net = nn.Sequential(nn.Linear(4, 3), nn.Linear(5, 2))  # the second layer cannot take 3
    handles = watch([net[0]], "input")
    forward = HaltingForward(net, torch.randn(1, 4))
    try:
        forward.until(net[0])
        with pytest.raises(RuntimeError, match="shapes"):
            forward.until(net[1])  # not watched: the pass runs on and fails
    finally:
        forward.close()
        for h in handles:
            h.remove()


def test_close_ends_a_halted_pass():
    net = _net()
    handles = watch([net[0], net[2]], "input")
    forward = HaltingForward(net, torch.randn(1, 4))
    forward.until(net[0])
    forward.close()
    for h in handles:
        h.remove()
    assert not forward._thread.is_alive()
    with pytest.raises(PrunekitError, match="after its forward pass ended"):
        forward.until(net[2])
