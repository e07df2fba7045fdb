"""The criterion interface: how important is each unit of each channel group?"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import nn

from prunekit.errors import PrunekitError

if TYPE_CHECKING:
    from prunekit.engine.groups import ChannelGroup


class Criterion:
    """Scores the units of channel groups; the lowest-scoring units are removed first.

    Subclasses implement :meth:`score`. Gradient-based criteria set ``needs_grad = True`` and
    implement :meth:`accumulate`, which the pruner calls after each ``loss.backward()``.
    Activation-based criteria set ``needs_inputs = True`` and implement :meth:`observed` and
    :meth:`observe`: during forward passes inside :meth:`prunekit.Pruner.observing` they see
    the inputs of the layers they name. Running statistics of either kind are what
    :meth:`statistics` exposes for all-reducing across processes.

    ``normalize="l2"`` divides each group's scores by their L2 norm, which makes scores of
    different layers comparable in global scope.
    """

    needs_grad: ClassVar[bool] = False
    needs_inputs: ClassVar[bool] = False

    def __init__(self, normalize: str | None = None) -> None:
        if normalize not in (None, "l2"):
            raise PrunekitError(f"normalize={normalize!r} is unknown: use None or 'l2'")
        self.normalize = normalize

    def score(self, groups: Sequence[ChannelGroup], step: int) -> list[torch.Tensor]:
        """One float64 tensor of ``group.num_units`` scores per group (``step`` is 0-based)."""
        raise NotImplementedError

    def scores(self, groups: Sequence[ChannelGroup], step: int) -> list[torch.Tensor]:
        """:meth:`score`, checked and normalised; what the pruner calls."""
        raw = self.score(groups, step)
        out = []
        for group, s in zip(groups, raw, strict=True):
            s = s.detach().to(torch.float64).cpu().reshape(-1)
            if s.numel() != group.num_units:
                raise PrunekitError(
                    f"{type(self).__name__} returned {s.numel()} scores for group "
                    f"{group.name!r} with {group.num_units} units"
                )
            if self.normalize == "l2":
                s = s / s.norm().clamp_min(1e-12)
            out.append(s)
        return out

    def accumulate(self, groups: Sequence[ChannelGroup]) -> None:
        """Fold the current gradients into running statistics (gradient criteria only)."""

    def observed(self, groups: Sequence[ChannelGroup]) -> list[nn.Module]:
        """The layers whose inputs :meth:`observe` wants (activation criteria only)."""
        return []

    def observe(self, module: nn.Module, x: torch.Tensor) -> None:
        """Fold one forward pass's input ``x`` of ``module`` into running statistics."""

    def statistics(self) -> list[torch.Tensor]:
        """Running statistics that must be summed across data-parallel processes."""
        return []

    def reset(self) -> None:
        """Forget accumulated statistics (after a pruning step: the groups have changed)."""


class WeightCriterion(Criterion):
    """A criterion computed from weights alone: ``reduce`` each unit's elements."""

    def unit_score(self, group: ChannelGroup) -> torch.Tensor:
        raise NotImplementedError

    def score(self, groups: Sequence[ChannelGroup], step: int) -> list[torch.Tensor]:
        with torch.no_grad():
            return [self.unit_score(g) for g in groups]
