"""Random scores: the baseline every criterion must beat."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from prunekit.criteria.base import Criterion
from prunekit.registry import register_criterion

if TYPE_CHECKING:
    from prunekit.engine.groups import ChannelGroup


@register_criterion("random")
class Random(Criterion):
    """Uniform random scores, reproducible from the seed and independent of torch's global RNG."""

    def __init__(self, seed: int = 0, normalize: str | None = None) -> None:
        super().__init__(normalize)
        self.seed = int(seed)

    def score(self, groups: Sequence[ChannelGroup], step: int) -> list[torch.Tensor]:
        # a generator per step: resuming at step k draws what an uninterrupted run draws
        gen = torch.Generator().manual_seed(self.seed * 100_003 + step)
        return [torch.rand(g.num_units, generator=gen, dtype=torch.float64) for g in groups]
