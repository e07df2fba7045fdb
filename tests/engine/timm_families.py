"""Small re-implementations of three CNN families that pytorchcv lacks, written after timm's
``convnext.py``, ``byobnet.py`` (RepVGG) and ``cspnet.py`` (CSPDarkNet) with the same
forward code paths: timm itself cannot be installed beside the CPU torch wheel (its
torchvision requirement has no CPU build on the package registry for torch 2.13)."""

from __future__ import annotations

import torch
from torch import nn


class LayerNorm2d(nn.LayerNorm):
    """timm's ``LayerNorm2d``: a LayerNorm over the channels of an NCHW tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = nn.functional.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    """timm's ``ConvNeXtBlock`` (``conv_mlp=False``): a 7x7 depth-wise conv, then the norm and
    the MLP channels-last, a layer scale, and the residual add."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv_dw = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.conv_dw(x).permute(0, 2, 3, 1)
        x = self.fc2(self.act(self.fc1(self.norm(x)))).permute(0, 3, 1, 2)
        return shortcut + x.mul(self.gamma.reshape(1, -1, 1, 1))


class ConvNeXt(nn.Module):
    """A patchify stem (4x4, stride 4, LayerNorm2d), stages joined by LayerNorm2d + 2x2 stride-2
    convs, and timm's ``NormMlpClassifierHead`` (pool, LayerNorm2d, linear)."""

    def __init__(self, dims: tuple[int, ...] = (16, 32, 64), depths: tuple[int, ...] = (1, 1, 2)):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, dims[0], 4, 4), LayerNorm2d(dims[0], eps=1e-6))
        stages, prev = [], dims[0]
        for i, (dim, depth) in enumerate(zip(dims, depths, strict=True)):
            down = [] if i == 0 else [LayerNorm2d(prev, eps=1e-6), nn.Conv2d(prev, dim, 2, 2)]
            stages.append(nn.Sequential(*down, *(ConvNeXtBlock(dim) for _ in range(depth))))
            prev = dim
        self.stages = nn.Sequential(*stages)
        self.head_norm = LayerNorm2d(prev, eps=1e-6)
        self.fc = nn.Linear(prev, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x)).mean((2, 3), keepdim=True)
        return self.fc(self.head_norm(x).flatten(1))


def _conv_bn(c_in: int, c_out: int, k: int, stride: int = 1, act: bool = True) -> nn.Sequential:
    layers = [nn.Conv2d(c_in, c_out, k, stride, k // 2, bias=False), nn.BatchNorm2d(c_out)]
    return nn.Sequential(*layers, *([nn.LeakyReLU(0.1)] if act else []))


class RepVggBlock(nn.Module):
    """timm's ``RepVggBlock`` in its training form: a 3x3 conv-BN, a 1x1 conv-BN and, where
    the shape allows, a BatchNorm of the input, summed."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.identity = nn.BatchNorm2d(c_out) if c_in == c_out and stride == 1 else None
        self.conv_kxk = _conv_bn(c_in, c_out, 3, stride, act=False)
        self.conv_1x1 = _conv_bn(c_in, c_out, 1, stride, act=False)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv_kxk(x) + self.conv_1x1(x)
        return self.act(y if self.identity is None else y + self.identity(x))


class RepVGG(nn.Module):
    def __init__(self, widths: tuple[int, ...] = (16, 32, 64), depth: int = 2) -> None:
        super().__init__()
        blocks, prev = [RepVggBlock(3, widths[0], 2)], widths[0]
        for width in widths:
            blocks += [RepVggBlock(prev, width, 2)] + [
                RepVggBlock(width, width, 1) for _ in range(depth - 1)
            ]
            prev = width
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(prev, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.blocks(x).mean((2, 3)))


class DarkBlock(nn.Module):
    """timm's ``DarkBlock``: a 1x1 bottleneck, a 3x3 conv, and the residual add."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = _conv_bn(channels, channels // 2, 1)
        self.conv2 = _conv_bn(channels // 2, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.conv1(x))


class CrossStage(nn.Module):
    """timm's ``CrossStage``: a strided conv, a 1x1 expansion split in two halves by a
    constant size (``x.split(exp // 2, dim=1)``), dark blocks on the second half, a transition
    conv on it, and a 1x1 conv of both halves concatenated."""

    def __init__(self, c_in: int, c_out: int, depth: int) -> None:
        super().__init__()
        self.half = c_out // 2
        self.conv_down = _conv_bn(c_in, c_out, 3, 2)
        self.conv_exp = _conv_bn(c_out, c_out, 1)
        self.blocks = nn.Sequential(*(DarkBlock(self.half) for _ in range(depth)))
        self.conv_transition_b = _conv_bn(self.half, self.half, 1)
        self.conv_transition = _conv_bn(c_out, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xs, xb = self.conv_exp(self.conv_down(x)).split(self.half, dim=1)
        xb = self.conv_transition_b(self.blocks(xb)).contiguous()
        return self.conv_transition(torch.cat([xs, xb], dim=1))


class CSPDarkNet(nn.Module):
    def __init__(self, widths: tuple[int, ...] = (32, 64, 128), depths=(1, 2, 2)) -> None:
        super().__init__()
        self.stem = _conv_bn(3, 16, 3)
        stages, prev = [], 16
        for width, depth in zip(widths, depths, strict=True):
            stages.append(CrossStage(prev, width, depth))
            prev = width
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(prev, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.stages(self.stem(x)).mean((2, 3)))
