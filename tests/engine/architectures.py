"""Tiny architectures covering every coupling the engine must handle."""

from __future__ import annotations

import torch
from torch import nn


class Fire(nn.Module):
    """SqueezeNet Fire module: squeeze -> [expand1x1, expand3x3] concat (BN after each conv)."""

    def __init__(self, cin: int, squeeze: int, grouped: bool = False, bn: bool = True) -> None:
        super().__init__()
        norm = nn.BatchNorm2d if bn else (lambda c: nn.Identity())
        self.squeeze = nn.Sequential(nn.Conv2d(cin, squeeze, 1), norm(squeeze), nn.ReLU())
        self.expand1x1 = nn.Sequential(
            nn.Conv2d(squeeze, 4 * squeeze, 1), norm(4 * squeeze), nn.ReLU()
        )
        groups = squeeze if grouped else 1
        self.expand3x3 = nn.Sequential(
            nn.Conv2d(squeeze, 4 * squeeze, 3, padding=1, groups=groups),
            norm(4 * squeeze),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze(x)
        return torch.cat([self.expand1x1(x), self.expand3x3(x)], 1)


class SqueezeNet(nn.Module):
    """(a) the paper's SqueezeNet layout (scaled down), or (d) with grouped expand3x3."""

    def __init__(self, grouped: bool = False, bn: bool = True, width: int = 4) -> None:
        super().__init__()
        norm = nn.BatchNorm2d if bn else (lambda c: nn.Identity())
        w = width
        self.conv1 = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), norm(16), nn.ReLU(), nn.MaxPool2d(3, 2, ceil_mode=True)
        )
        self.fire2 = Fire(16, w, grouped, bn)
        self.fire3 = Fire(8 * w, w, grouped, bn)
        self.pool = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.fire4 = Fire(8 * w, 2 * w, grouped, bn)
        self.conv10 = nn.Conv2d(16 * w, 32, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fire3(self.fire2(self.conv1(x)))
        x = self.fire4(self.pool(x))
        return torch.relu(self.conv10(x)).mean((2, 3))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + (x if self.down is None else self.down(x)))


class ResNet(nn.Module):
    """(b) residual adds and a strided 1x1 downsample."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()
        )
        self.layer1 = BasicBlock(16, 16, 1)
        self.layer2 = BasicBlock(16, 32, 2)
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer2(self.layer1(self.stem(x)))
        return self.fc(x.mean((2, 3)))


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int = 4) -> None:
        super().__init__()
        hidden = cin * expand
        self.use_res = stride == 1 and cin == cout
        self.block = nn.Sequential(
            nn.Conv2d(cin, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.use_res else out


class MobileNetV2(nn.Module):
    """(c) inverted residuals with depth-wise convs."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU6()
        )
        self.blocks = nn.Sequential(
            InvertedResidual(16, 16, 1), InvertedResidual(16, 24, 2), InvertedResidual(24, 24, 1)
        )
        self.head = nn.Linear(24, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)).mean((2, 3)))


class EmbeddingHead(nn.Module):
    """(e) conv -> flatten -> Linear -> BatchNorm1d embedding head, with (f) PReLU."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 12, 3, 2, 1)
        self.bn1 = nn.BatchNorm2d(12)
        self.act1 = nn.PReLU(12)
        self.conv2 = nn.Conv2d(12, 16, 3, 2, 1)
        self.bn2 = nn.BatchNorm2d(16)
        self.act2 = nn.PReLU(16)
        self.fc = nn.Linear(16 * 4 * 4, 32)
        self.act3 = nn.PReLU(32)
        self.fc2 = nn.Linear(32, 24)
        self.bn_out = nn.BatchNorm1d(24)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act2(self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x))))))
        x = self.act3(self.fc(torch.flatten(x, 1)))
        return self.bn_out(self.fc2(x))


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet's view -> transpose -> view, with the channel count read at run time."""
    b, c, h, w = x.size()
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).contiguous().view(b, c, h, w)


class ShuffleUnit(nn.Module):
    """A ShuffleNetV2 unit: split the channels (or, downsampling, feed both branches), run one
    half through 1x1 -> depth-wise 3x3 -> 1x1, concatenate, shuffle."""

    def __init__(self, cin: int, cout: int, mid: int, downsample: bool) -> None:
        super().__init__()
        half, stride = cout // 2, 2 if downsample else 1
        self.downsample = downsample
        if downsample:
            self.branch1 = nn.Sequential(
                nn.Conv2d(cin, cin, 3, 2, 1, groups=cin, bias=False),
                nn.BatchNorm2d(cin),
                nn.Conv2d(cin, half, 1, bias=False),
                nn.BatchNorm2d(half),
                nn.ReLU(),
            )
        self.branch2 = nn.Sequential(
            nn.Conv2d(cin if downsample else half, mid, 1, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(),
            nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False),
            nn.BatchNorm2d(mid),
            nn.Conv2d(mid, half, 1, bias=False),
            nn.BatchNorm2d(half),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.downsample:
            y1, x2 = self.branch1(x), x
        else:
            y1, x2 = torch.chunk(x, 2, dim=1)
        return channel_shuffle(torch.cat((y1, self.branch2(x2)), dim=1), 2)


class ShuffleNetV2(nn.Module):
    """(g) channel split, concat and channel shuffle (ShuffleNetV2)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()
        )
        self.units = nn.Sequential(ShuffleUnit(16, 32, 64, True), ShuffleUnit(32, 32, 64, False))
        self.head = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.units(self.stem(x)).mean((2, 3)))


class GhostModule(nn.Module):
    """GhostNet's ghost module: a 1x1 conv makes half the channels, a depth-wise 3x3 of those
    makes the other half, concatenated (channel ``i`` and ``half + i`` are one unit)."""

    def __init__(self, cin: int, cout: int, relu: bool = True) -> None:
        super().__init__()
        half = cout // 2
        act = nn.ReLU() if relu else nn.Identity()
        self.main = nn.Sequential(nn.Conv2d(cin, half, 1, bias=False), nn.BatchNorm2d(half), act)
        self.cheap = nn.Sequential(
            nn.Conv2d(half, half, 3, 1, 1, groups=half, bias=False), nn.BatchNorm2d(half), act
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.main(x)
        return torch.cat((y, self.cheap(y)), dim=1)


class GhostBottleneck(nn.Module):
    """Ghost module -> (strided depth-wise) -> ghost module, plus an identity or conv shortcut."""

    def __init__(self, cin: int, mid: int, cout: int, stride: int) -> None:
        super().__init__()
        self.expand = GhostModule(cin, mid)
        self.dw = (
            nn.Sequential(nn.Conv2d(mid, mid, 3, 2, 1, groups=mid, bias=False), nn.BatchNorm2d(mid))
            if stride == 2
            else nn.Identity()
        )
        self.project = GhostModule(mid, cout, relu=False)
        self.shortcut = (
            nn.Identity()
            if stride == 1 and cin == cout
            else nn.Sequential(
                nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False),
                nn.BatchNorm2d(cin),
                nn.Conv2d(cin, cout, 1, bias=False),
                nn.BatchNorm2d(cout),
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.dw(self.expand(x))) + self.shortcut(x)


class GhostNet(nn.Module):
    """(h) ghost modules: a concat of a conv and a depth-wise conv of its output, summed with
    the block's input (GhostNet)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()
        )
        self.blocks = nn.Sequential(GhostBottleneck(16, 32, 16, 1), GhostBottleneck(16, 48, 24, 2))
        self.head = nn.Linear(24, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)).mean((2, 3)))


class TransformerBlock(nn.Module):
    """Pre-norm transformer block: attention (its width is left whole) and an MLP."""

    def __init__(self, dim: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm1(x)
        x = x + self.attn(y, y, y, need_weights=False)[0]
        return x + self.fc2(self.act(self.fc1(self.norm2(x))))


class ViT(nn.Module):
    """(i) a vision transformer: patch and position embeddings, two blocks whose MLP hidden
    units are the prunable channels (8x the token width, so that most parameters can go; the
    token width feeds the attention's packed projection, which cannot be counted, and is
    left whole)."""

    def __init__(self, dim: int = 32, patch: int = 4, size: int = 16) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, dim, patch, patch)
        self.pos = nn.Parameter(torch.randn(1, (size // patch) ** 2, dim) * 0.02)
        self.blocks = nn.Sequential(*(TransformerBlock(dim, 4, 8 * dim) for _ in range(2)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch(x).flatten(2).transpose(1, 2) + self.pos
        return self.head(self.norm(self.blocks(x)).mean(1))


class SubPixelNet(nn.Module):
    """(j) sub-pixel convolutions (ESPCN-style): ``F.pixel_unshuffle(2)`` turns each of the
    stem's channels into 4 channels of the body's input, and ``nn.PixelShuffle(2)`` merges 4
    of the upsampler's channels (and their BatchNorm's) into one channel of the head's input."""

    def __init__(self, width: int = 8, out: int = 3) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width))
        self.body = nn.Sequential(
            nn.Conv2d(4 * width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU()
        )
        self.up = nn.Sequential(
            nn.Conv2d(2 * width, 4 * 2 * width, 3, padding=1),
            nn.BatchNorm2d(4 * 2 * width),
            nn.ReLU(),
            nn.PixelShuffle(2),
        )
        self.head = nn.Conv2d(2 * width, out, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.pixel_unshuffle(torch.relu(self.stem(x)), 2)
        return self.head(self.up(self.body(x)))


class ShuffleNet(nn.Module):
    """(k) channel shuffles pruned through: two ShuffleNetV2 downsampling units (the concat of
    both branches, shuffled in 2 groups, feeds both branches of the next unit), then a 1x1 conv
    whose output is shuffled in 4 groups by ``reshape -> permute -> reshape``."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()
        )
        self.units = nn.Sequential(ShuffleUnit(16, 32, 32, True), ShuffleUnit(32, 48, 32, True))
        self.mix = nn.Sequential(nn.Conv2d(48, 32, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU())
        self.post = nn.Sequential(nn.Conv2d(32, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.head = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.mix(self.units(self.stem(x)))
        n, c, h, w = x.shape
        x = x.reshape(n, 4, c // 4, h, w).permute(0, 2, 1, 3, 4).reshape(n, c, h, w)
        return self.head(self.post(x).mean((2, 3)))


def _conv_bn_silu(c_in: int, c_out: int, k: int = 1) -> nn.Sequential:
    conv = nn.Conv2d(c_in, c_out, k, padding=k // 2)
    return nn.Sequential(conv, nn.BatchNorm2d(c_out), nn.SiLU())


class C2f(nn.Module):
    """YOLOv8's C2f block: a 1x1 conv's output is chunked in two, a chain of 3x3 convs grows
    from the second half, and every piece (both halves included) is concatenated."""

    def __init__(self, c_in: int, c_out: int, n: int = 2) -> None:
        super().__init__()
        self.c = c_out // 2
        self.cv1 = _conv_bn_silu(c_in, 2 * self.c)
        self.m = nn.ModuleList(_conv_bn_silu(self.c, self.c, 3) for _ in range(n))
        self.cv2 = _conv_bn_silu((2 + n) * self.c, c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = list(self.cv1(x).chunk(2, 1))
        y.extend(m(y[-1]) for m in self.m)
        return self.cv2(torch.cat(y, 1))


class YOLOBackbone(nn.Module):
    """(l) splits into equal pieces pruned through: two C2f blocks, as in YOLOv8's backbone."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = _conv_bn_silu(3, 16, 3)
        self.blocks = nn.Sequential(C2f(16, 32), C2f(32, 32, n=1))
        self.head = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)).mean((2, 3)))


class LayerScaleBlock(nn.Module):
    """A residual block whose branch is scaled per channel by a bare ``nn.Parameter``, as
    ConvNeXt's layer scale (with a BatchNorm where ConvNeXt has a LayerNorm, so that removing
    a channel equals zeroing it)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dw = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.bn = nn.BatchNorm2d(dim)
        self.fc1 = nn.Conv2d(dim, 2 * dim, 1)
        self.fc2 = nn.Conv2d(2 * dim, dim, 1)
        self.gamma = nn.Parameter(torch.linspace(0.5, 1.5, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc2(torch.relu(self.fc1(self.bn(self.dw(x)))))
        return x + y * self.gamma.reshape(1, -1, 1, 1)


class LayerScaleNet(nn.Module):
    """(m) layer scales: two residual blocks whose per-channel scales are bare parameters."""

    def __init__(self, dim: int = 16) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, dim, 3, padding=1), nn.BatchNorm2d(dim))
        self.blocks = nn.Sequential(LayerScaleBlock(dim), LayerScaleBlock(dim))
        self.head = nn.Linear(dim, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)).mean((2, 3)))


ARCHITECTURES = {
    "squeezenet": (lambda: SqueezeNet(), (1, 3, 32, 32)),
    "resnet": (ResNet, (1, 3, 16, 16)),
    "mobilenetv2": (MobileNetV2, (1, 3, 16, 16)),
    "grouped_multiplier": (lambda: SqueezeNet(grouped=True, bn=False), (1, 3, 32, 32)),
    "embedding_head": (EmbeddingHead, (1, 3, 16, 16)),
    "shufflenetv2": (ShuffleNetV2, (1, 3, 16, 16)),
    "shufflenet": (ShuffleNet, (1, 3, 16, 16)),
    "yolo_c2f": (YOLOBackbone, (1, 3, 16, 16)),
    "ghostnet": (GhostNet, (1, 3, 16, 16)),
    "vit": (ViT, (1, 3, 16, 16)),
    "subpixel": (SubPixelNet, (1, 3, 16, 16)),
    "layer_scale": (LayerScaleNet, (1, 3, 16, 16)),
}


def randomize_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give BatchNorm layers non-trivial statistics so that eval outputs depend on them."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=gen) * 0.1)
        if isinstance(m, nn.PReLU):
            m.weight.data.copy_(torch.rand(m.weight.shape, generator=gen) * 0.5)
    return model
