"""Weight-magnitude criteria (Li et al., "Pruning Filters for Efficient ConvNets", 2017)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from prunekit.criteria.base import WeightCriterion
from prunekit.registry import register_criterion

if TYPE_CHECKING:
    from prunekit.engine.groups import ChannelGroup


@register_criterion("l1")
class L1(WeightCriterion):
    """L1 norm of every weight a channel owns, summed over the coupled layers."""

    def unit_score(self, group: ChannelGroup) -> torch.Tensor:
        return sum(group.unit_sum(s, s.param.abs()) for s in group.slices).double()


@register_criterion("l2")
class L2(WeightCriterion):
    """L2 norm of every weight a channel owns across the coupled layers."""

    def unit_score(self, group: ChannelGroup) -> torch.Tensor:
        return sum(group.unit_sum(s, s.param.pow(2)) for s in group.slices).double().sqrt()
