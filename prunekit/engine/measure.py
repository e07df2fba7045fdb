"""Counting parameters and multiply-accumulates (MACs) the way the planner does."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def forward(model: nn.Module, example_inputs: Any) -> Any:
    """Call ``model`` on example inputs given as a tensor, a tuple/list or a dict."""
    if isinstance(example_inputs, dict):
        return model(**example_inputs)
    if isinstance(example_inputs, (tuple, list)):
        return model(*example_inputs)
    return model(example_inputs)


def mac_positions(model: nn.Module, example_inputs: Any) -> dict[nn.Module, int]:
    """For each conv/linear layer: output positions per weight element (its MACs per weight).

    A convolution's MACs are ``H_out * W_out * weight.numel()`` and a linear layer's are
    ``(output.numel() / out_features) * weight.numel()``; the multiplier does not change when
    channels are pruned, so the planner can predict MACs exactly from weight shapes.
    """
    positions: dict[nn.Module, int] = {}

    def hook(module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        channels = (
            module.out_channels
            if isinstance(module, nn.modules.conv._ConvNd)
            else (module.out_features)
        )
        batch = output.shape[0] if output.dim() > 1 else 1
        per_sample = output.numel() // max(batch, 1)
        positions[module] = positions.get(module, 0) + per_sample // max(channels, 1)

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))
    ]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            forward(model, example_inputs)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return positions


def count_params(model: nn.Module) -> int:
    """Elements of all distinct parameters of ``model``."""
    return sum(p.numel() for p in model.parameters())


def measure(model: nn.Module, example_inputs: Any) -> dict[str, int]:
    """``{"params": ..., "macs": ...}`` of ``model`` for one sample of ``example_inputs``.

    MACs are per sample (divided by the batch size of the example inputs); see
    :class:`prunekit.Target` for exactly what is counted.
    """
    positions = mac_positions(model, example_inputs)
    macs = sum(pos * m.weight.numel() for m, pos in positions.items())
    return {"params": count_params(model), "macs": int(macs)}
