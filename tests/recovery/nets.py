"""Tiny networks and helpers shared by the recovery tests."""

from __future__ import annotations

import copy

import torch
from torch import nn

import prunekit as pk


class ConvNet(nn.Module):
    """conv -> BN -> ReLU -> conv (stride 2) -> ReLU -> grouped conv (4 filters per input
    channel) -> ReLU -> pool -> linear, with dropout: every layer kind recovery handles."""

    def __init__(self, width: int = 8, out: int = 6) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=2, padding=1)
        self.dw = nn.Conv2d(width, 4 * width, 3, padding=1, groups=width)
        self.drop = nn.Dropout(0.2)
        self.head = nn.Linear(4 * width, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.conv2(x))
        x = torch.relu(self.dw(x))
        return self.head(self.drop(x.mean((2, 3))))


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BatchNorm statistics and affine parameters."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(c, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(c, generator=gen) * 0.1)
    return model


def batches(n: int, size: int, shape: tuple[int, ...] = (3, 8, 8), seed: int = 0):
    """``n`` batches of ``size`` random images (a list: re-iterable)."""
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(size, *shape, generator=gen) for _ in range(n)]


def prune(model: nn.Module, level: float = 0.3) -> tuple[nn.Module, dict[str, list[int]]]:
    """``(parent copy, kept)`` after pruning ``model`` in place with the public Pruner."""
    parent = copy.deepcopy(model).eval()
    example = torch.randn(1, 3, 8, 8)
    pruner = pk.Pruner(model, example, criterion="l1", target=f"params={level}", round_to=None)
    report = pruner.step()
    modules = dict(parent.named_modules())
    kept = {}
    for name, sides in report.removed.items():
        m = modules[name]
        if "out" in sides and isinstance(m, (nn.Conv2d, nn.Linear)):
            width = m.out_channels if isinstance(m, nn.Conv2d) else m.out_features
            kept[name] = [i for i in range(width) if i not in set(sides["out"])]
    return parent, kept


def state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of every parameter and buffer."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


class RowCounter:
    """Counts the rows (images) of every input ``module`` receives."""

    def __init__(self, module: nn.Module) -> None:
        self.rows = 0
        self.handle = module.register_forward_pre_hook(self._count)

    def _count(self, module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        self.rows += args[0].shape[0]
