"""The rows a conv or linear layer multiplies by its weights: the layer as a matrix product.

Layer-wise least squares (reconstruction, the ``obs`` criterion) see a layer ``y = W x`` with
``x`` these rows: a linear layer's input vectors, or a convolution's unfolded input patches.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def layer_patches(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``[positions, in_width * kernel]`` rows of what ``layer`` multiplies by its weights."""
    if isinstance(layer, nn.Linear):
        return x.reshape(-1, x.shape[-1])
    padding = layer.padding
    if isinstance(padding, str) or layer.padding_mode != "zeros":
        mode = "constant" if layer.padding_mode == "zeros" else layer.padding_mode
        x = F.pad(x, layer._reversed_padding_repeated_twice, mode=mode)
        padding = (0,) * len(layer.kernel_size)
    kernel, stride, dilation = layer.kernel_size, layer.stride, layer.dilation
    if isinstance(layer, nn.Conv1d):  # as a 2-d convolution of height 1
        x = x.unsqueeze(2)
        kernel, stride = (1, *kernel), (1, *stride)
        dilation, padding = (1, *dilation), (0, *padding)
    cols = F.unfold(x, kernel, dilation=dilation, padding=padding, stride=stride)
    return cols.transpose(1, 2).reshape(-1, cols.shape[1])
