"""BatchNorm scale (Liu et al., "Learning Efficient Convolutional Networks through Network
Slimming", 2017): a channel whose BN gamma is near zero contributes little."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from prunekit.criteria.base import WeightCriterion
from prunekit.errors import PrunekitError
from prunekit.registry import register_criterion

if TYPE_CHECKING:
    from prunekit.engine.groups import ChannelGroup


@register_criterion("bn_scale")
class BNScale(WeightCriterion):
    """|gamma| of the BatchNorm layers that scale a channel (Network Slimming)."""

    def unit_score(self, group: ChannelGroup) -> torch.Tensor:
        gammas = [
            s for s in group.slices if s.is_norm and s.param_name == "weight" and s.role == "out"
        ]
        if not gammas and group.num_units <= group.min_units:
            # nothing can go (say a depth-wise conv pruned to one channel, which torch-pruning
            # then sees as a plain conv of its own): no score is needed
            return torch.zeros(group.num_units, dtype=torch.float64)
        if not gammas:
            raise PrunekitError(
                f"bn_scale needs a BatchNorm after every pruned layer, but group {group.name!r} "
                "has none: choose another criterion or add that layer to ignored_layers"
            )
        return sum(group.unit_sum(s, s.param.abs()) for s in gammas).double()
