"""First-order Taylor importance (Molchanov et al., "Importance Estimation for Neural Network
Pruning", CVPR 2019): the loss change when a channel's parameters are set to zero."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from prunekit.criteria.base import Criterion
from prunekit.errors import PrunekitError
from prunekit.registry import register_criterion

if TYPE_CHECKING:
    from prunekit.engine.groups import ChannelGroup

VARIANTS = ("group", "param")


@register_criterion("taylor")
class Taylor(Criterion):
    """First-order Taylor: (sum of grad*weight over a channel's parameters)^2, batch-averaged.

    ``variant="group"`` (default) scores ``(sum_s g_s w_s)^2`` over every parameter the channel
    owns, BatchNorm included (Molchanov et al. 2019); ``variant="param"`` scores
    ``sum_s (g_s w_s)^2`` as the SqueezerFaceNet paper describes it. Scores are computed per
    mini-batch in :meth:`accumulate` and averaged over the batches since the last step.
    """

    needs_grad = True

    def __init__(self, variant: str = "group", normalize: str | None = None) -> None:
        super().__init__(normalize)
        if variant not in VARIANTS:
            raise PrunekitError(
                f"taylor variant {variant!r} is unknown: choose one of {', '.join(VARIANTS)}"
            )
        self.variant = variant
        self._sums: list[torch.Tensor] | None = None
        self._count = torch.zeros((), dtype=torch.float64)
        self._warned: set[str] = set()

    def accumulate(self, groups: Sequence[ChannelGroup]) -> None:
        if not any(s.param.grad is not None for g in groups for s in g.slices):
            raise PrunekitError(
                "taylor found no gradients: call loss.backward() before pruner.accumulate()"
            )
        batch = [self._batch_score(g) for g in groups]
        if self._sums is None:
            self._sums = batch
        else:
            for total, new in zip(self._sums, batch, strict=True):
                total += new
        self._count += 1

    def _batch_score(self, group: ChannelGroup) -> torch.Tensor:
        total = torch.zeros(group.num_units, dtype=torch.float64)
        with torch.no_grad():
            for s in group.slices:
                param = s.param
                if param.grad is None:
                    self._warn_missing(s.module_name, s.param_name)
                    continue
                gw = param.grad * param
                if self.variant == "param":
                    gw = gw.pow(2)
                total += group.unit_sum(s, gw).double().cpu()
        return total.pow(2) if self.variant == "group" else total

    def _warn_missing(self, module: str, param: str) -> None:
        key = f"{module}.{param}"
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(
                f"taylor: {key} has no gradient (unused in the loss?); it contributes 0",
                stacklevel=4,
            )

    def score(self, groups: Sequence[ChannelGroup], step: int) -> list[torch.Tensor]:
        if self._sums is None or float(self._count) == 0:
            raise PrunekitError(
                "taylor needs gradients: call loss.backward() and pruner.accumulate() on at "
                "least one batch before pruner.step()"
            )
        return [s / self._count for s in self._sums]

    def statistics(self) -> list[torch.Tensor]:
        return [*(self._sums or []), self._count]

    def reset(self) -> None:
        self._sums = None
        self._count = torch.zeros((), dtype=torch.float64)
