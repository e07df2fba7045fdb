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


class LayerScale(nn.Module):
    """timm's ``LayerScale``: a learned per-channel scale of a residual branch."""

    def __init__(self, dim: int, init_values: float = 1e-5) -> None:
        super().__init__()
        self.gamma = nn.Parameter(init_values * torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Attention(nn.Module):
    """timm's ``Attention``: one packed qkv projection, reshaped to heads, scaled dot-product
    attention, and the heads merged back by ``transpose -> reshape``."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        x = nn.functional.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class VitBlock(nn.Module):
    """timm's ``Block``: pre-norm attention and MLP, each through a layer scale."""

    def __init__(self, dim: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.ls2 = LayerScale(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.fc2(self.act(self.fc1(self.norm2(x)))))


class VisionTransformer(nn.Module):
    """timm's ``VisionTransformer`` (a DeiT-tiny in miniature, ``init_values`` set): patch
    embedding, class token, position embedding, blocks, final norm, the class token's head."""

    def __init__(self, dim: int = 32, depth: int = 2, size: int = 32, patch: int = 8) -> None:
        super().__init__()
        self.patch_embed = nn.Conv2d(3, dim, patch, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, (size // patch) ** 2 + 1, dim) * 0.02)
        self.blocks = nn.Sequential(*(VitBlock(dim, 4, 8 * dim) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        return self.head(self.norm(self.blocks(x))[:, 0])
