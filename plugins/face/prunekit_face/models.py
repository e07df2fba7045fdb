"""SqueezeNet face-embedding networks: SqueezerFaceNet and SqueezeFacePoseNet-DWC.

Both are fully convolutional (any input of at least 15x15 works; the released model uses
113x113) and end in ``conv10`` -> ReLU -> global average pooling, whose output is the embedding.
Pooling matches the authors' MATLAB layer graph: max-pool 3x3 / stride 2 without padding, rounding
down (``ceil_mode=False``), which maps 113 -> 56 -> 27 -> 13, the 13x13 that the released model's
final average pool expects.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["Fire", "SqueezeFaceNet", "squeezefacenet", "squeezefacenet_dwc"]

CONV1_FILTERS = 64
SQUEEZE_WIDTHS = (16, 16, 32, 32, 48, 48, 64, 64)  # Fire2..Fire9
EXPANSION = 4  # expand1x1 and expand3x3 each have 4x the squeeze width
POOL_AFTER = (4, 8)  # a max-pool follows these Fire modules


class Fire(nn.Module):
    """SqueezeNet Fire module: 1x1 squeeze, then parallel 1x1 and 3x3 expands, concatenated.

    With ``depthwise=True`` the 3x3 expand is a grouped convolution with one group per squeeze
    channel (``expand // squeeze`` filters per group), as in SqueezeFacePoseNet-DWC.
    """

    def __init__(
        self, in_channels: int, squeeze: int, expand: int, *, bn: bool, depthwise: bool
    ) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(in_channels, squeeze, 1, bias=not bn)
        self.squeeze_bn = nn.BatchNorm2d(squeeze) if bn else None
        self.squeeze_relu = nn.ReLU()
        self.expand1x1 = nn.Conv2d(squeeze, expand, 1, bias=not bn)
        self.expand1x1_bn = nn.BatchNorm2d(expand) if bn else None
        self.expand1x1_relu = nn.ReLU()
        groups = squeeze if depthwise else 1
        self.expand3x3 = nn.Conv2d(squeeze, expand, 3, padding=1, groups=groups, bias=not bn)
        self.expand3x3_bn = nn.BatchNorm2d(expand) if bn else None
        self.expand3x3_relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        x = self.squeeze_relu(_maybe(self.squeeze_bn, self.squeeze(x)))
        e1 = self.expand1x1_relu(_maybe(self.expand1x1_bn, self.expand1x1(x)))
        e3 = self.expand3x3_relu(_maybe(self.expand3x3_bn, self.expand3x3(x)))
        return torch.cat([e1, e3], dim=1)


class SqueezeFaceNet(nn.Module):
    """SqueezeNet face network: ``conv1`` -> ``features`` (Fire2..Fire9) -> ``conv10`` -> GAP.

    ``forward`` returns the ``[N, embedding_size]`` embedding (ReLU'd, average-pooled ``conv10``).
    Optional BatchNorm follows every convolution (then convolutions have no bias). ``dropout``
    is applied before ``conv10`` during training, as in the released model's ``drop9``.
    """

    def __init__(
        self,
        *,
        bn: bool,
        depthwise: bool,
        embedding_size: int = 1000,
        width: float = 1.0,
        in_channels: int = 3,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        stem = _scaled(CONV1_FILTERS, width)
        self.conv1 = nn.Conv2d(in_channels, stem, 3, padding=1, bias=not bn)
        self.bn1 = nn.BatchNorm2d(stem) if bn else None
        self.relu1 = nn.ReLU()
        self.pool1 = _max_pool()
        self.features = nn.Sequential()
        channels = stem
        for index, squeeze in enumerate(SQUEEZE_WIDTHS, start=2):
            squeeze = _scaled(squeeze, width)
            expand = EXPANSION * squeeze
            fire = Fire(channels, squeeze, expand, bn=bn, depthwise=depthwise)
            self.features.add_module(f"fire{index}", fire)
            if index in POOL_AFTER:
                self.features.add_module(f"pool{index}", _max_pool())
            channels = 2 * expand
        self.dropout = nn.Dropout(dropout)
        self.conv10 = nn.Conv2d(channels, embedding_size, 1, bias=not bn)
        self.bn10 = nn.BatchNorm2d(embedding_size) if bn else None
        self.relu10 = nn.ReLU()
        self.pool10 = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool1(self.relu1(_maybe(self.bn1, self.conv1(x))))
        x = self.features(x)
        x = self.relu10(_maybe(self.bn10, self.conv10(self.dropout(x))))
        return self.flatten(self.pool10(x))


def squeezefacenet(
    *,
    bn: bool = True,
    embedding_size: int = 1000,
    width: float = 1.0,
    in_channels: int = 3,
    dropout: float = 0.5,
) -> SqueezeFaceNet:
    """SqueezerFaceNet's base network (1,235,496 parameters without BN, 1,239,440 with)."""
    return SqueezeFaceNet(
        bn=bn,
        depthwise=False,
        embedding_size=embedding_size,
        width=width,
        in_channels=in_channels,
        dropout=dropout,
    )


def squeezefacenet_dwc(
    *,
    bn: bool = False,
    embedding_size: int = 1000,
    width: float = 1.0,
    in_channels: int = 3,
    dropout: float = 0.5,
) -> SqueezeFaceNet:
    """The released SqueezeFacePoseNet-DWC topology (694,056 parameters without BN)."""
    return SqueezeFaceNet(
        bn=bn,
        depthwise=True,
        embedding_size=embedding_size,
        width=width,
        in_channels=in_channels,
        dropout=dropout,
    )


def _scaled(channels: int, width: float) -> int:
    return max(1, round(channels * width))


def _max_pool() -> nn.MaxPool2d:
    return nn.MaxPool2d(3, stride=2, padding=0, ceil_mode=False)


def _maybe(bn: nn.BatchNorm2d | None, x: Tensor) -> Tensor:
    return x if bn is None else bn(x)
