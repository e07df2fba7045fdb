"""A complete prunekit criterion in one file: channels with small weights on average go first.

The pruner hands a criterion the model's *channel groups*. A group is a set of coupled channels
that must be removed together (a conv's output channels, the BatchNorm after it, the next
conv's input channels, ...); a *unit* is one of those channels with every weight it owns in
every coupled layer. A criterion returns one score per unit and the lowest scores are pruned.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from prunekit import ChannelGroup, Criterion


class DemoMagnitude(Criterion):
    """Mean absolute weight of each channel across its coupled layers (demo plugin)."""

    # Scores come from the weights alone; a gradient-based criterion would set
    # `needs_grad = True` and collect gradients in `accumulate()`.
    needs_grad = False

    def score(self, groups: Sequence[ChannelGroup], step: int) -> list[torch.Tensor]:
        scores = []
        with torch.no_grad():
            for group in groups:
                total = torch.zeros(group.num_units, dtype=torch.float64)
                count = torch.zeros(group.num_units, dtype=torch.float64)
                # Each slice is the part of one parameter tensor that belongs to the group;
                # `unit_sum` adds up a tensor shaped like that parameter per unit.
                for piece in group.slices:
                    total += group.unit_sum(piece, piece.param.abs()).double().cpu()
                    count += group.unit_sum(piece, torch.ones_like(piece.param)).double().cpu()
                scores.append(total / count.clamp_min(1))
        return scores
