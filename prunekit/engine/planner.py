"""Choosing which units to remove so that a step lands on its share of the target.

The planner prices every unit exactly: a parameter tensor's size is the product of its kept
sizes along each dimension, so removing a channel that is both an output of one layer and an
input of the next is counted once, and MACs follow from weight sizes (see
:func:`prunekit.engine.measure.mac_positions`). Predictions therefore equal what
:func:`prunekit.measure` reports after the physical removal.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from prunekit.engine.groups import ChannelGroup

Plan = dict[int, list[int]]  # group index -> units to remove


#: ``round_to="auto"``: groups that had at least ``AUTO_MIN_UNITS`` units before pruning keep
#: a multiple of ``AUTO_ROUND`` (judged on the original width, so a group keeps its rounding as
#: it narrows over the steps). CPU (oneDNN) and GPU (cuDNN) convolutions run blocked kernels on
#: channel counts that are multiples of 8; odd counts fall back to slower paths (measured in
#: docs/results.md). Narrower groups are pruned unit by unit: there a chunk of 8 units is too
#: coarse for a local step to land near its share of the target.
AUTO_ROUND = 8
AUTO_MIN_UNITS = 64

RoundTo = int | str | None  # an int >= 1, "auto" or None (no rounding)


@dataclass(frozen=True)
class Limits:
    """Per-group constraints on the number of kept units."""

    min_channels: int = 1
    round_to: RoundTo = "auto"

    def rounding(self, width: int) -> int:
        """The multiple kept by a group that had ``width`` units before pruning."""
        if self.round_to == "auto":
            return AUTO_ROUND if width >= AUTO_MIN_UNITS else 1
        return int(self.round_to or 1)

    def min_kept(self, n: int, floor: int = 1, width: int | None = None) -> int:
        """Fewest units a group of ``n`` (``width`` before pruning) may keep (``n`` if it cannot
        be pruned at all)."""
        r = self.rounding(width or n)
        low = max(floor, self.min_channels)
        low = math.ceil(low / r) * r
        return n if low >= n else low

    def kept_sequence(self, n: int, floor: int = 1, width: int | None = None) -> list[int]:
        """Allowed kept counts below ``n`` in decreasing order (each a multiple of round_to)."""
        r = self.rounding(width or n)
        low = self.min_kept(n, floor, width)
        first = (n - 1) // r * r
        return list(range(first, low - 1, -r)) if low < n else []

    def kept_at(self, n: int, fraction: float, floor: int = 1, width: int | None = None) -> int:
        """Units kept when removing ``fraction`` of ``n`` (local scope), rounded and clamped."""
        r = self.rounding(width or n)
        kept = r * round(n * (1.0 - fraction) / r)
        return n if kept >= n else max(self.min_kept(n, floor, width), kept)


class CostModel:
    """Exact params / MACs / channels of a model as units are removed (nothing is modified).

    ``widths`` maps group names to their unit counts before pruning (default: the current ones).
    """

    def __init__(
        self,
        model: nn.Module,
        groups: Sequence[ChannelGroup],
        positions: dict[nn.Module, int],
        widths: Mapping[str, int] | None = None,
    ) -> None:
        self._index: dict[int, int] = {}
        self.shapes: list[list[int]] = []
        self.macs_per_elem: list[int] = []
        self._add_params(model, positions)
        # per group, per slice: (tensor, dim, elements-per-unit counts)
        self.unit_costs: list[list[tuple[int, int, list[int]]]] = []
        for group in groups:
            costs = []
            for s in group.slices:
                counts = torch.bincount(s.unit, minlength=group.num_units).tolist()
                costs.append((self._index[id(s.param)], s.dim, counts))
            self.unit_costs.append(costs)
        self.units = [g.num_units for g in groups]
        self.floors = [g.min_units for g in groups]
        self.widths = [(widths or {}).get(g.name, g.num_units) for g in groups]
        self.channels = sum(self.units)

    def _add_params(self, model: nn.Module, positions: dict[nn.Module, int]) -> None:
        for module in model.modules():
            for name, param in module.named_parameters(recurse=False):
                if id(param) in self._index:
                    continue
                self._index[id(param)] = len(self.shapes)
                self.shapes.append(list(param.shape))
                is_weight = name == "weight" and module in positions
                self.macs_per_elem.append(positions[module] if is_weight else 0)

    def totals(self) -> dict[str, int]:
        """Current params, MACs and prunable channels."""
        params = macs = 0
        for shape, per in zip(self.shapes, self.macs_per_elem, strict=True):
            numel = math.prod(shape)
            params += numel
            macs += numel * per
        return {"params": params, "macs": macs, "channels": self.channels}

    def remove(self, group: int, units: Sequence[int]) -> dict[str, int]:
        """Apply the removal of ``units`` of ``group``; return the decrease of each metric."""
        touched: dict[int, int] = {}
        for t, dim, counts in self.unit_costs[group]:
            gone = sum(counts[u] for u in units)
            if gone:
                touched.setdefault(t, math.prod(self.shapes[t]))
                self.shapes[t][dim] -= gone
        params = macs = 0
        for t, before in touched.items():
            d = before - math.prod(self.shapes[t])
            params += d
            macs += d * self.macs_per_elem[t]
        self.units[group] -= len(units)
        self.channels -= len(units)
        return {"params": params, "macs": macs, "channels": len(units)}


def plan_global(
    cost: CostModel, scores: Sequence[torch.Tensor], metric: str, amount: float, limits: Limits
) -> Plan:
    """Remove the globally lowest-scoring units until ``amount`` of ``metric`` is gone.

    With ``round_to`` units go in chunks that keep each group a multiple of it; a chunk is
    ranked by the mean score of its units.
    """
    orders = [torch.argsort(s, stable=True).tolist() for s in scores]
    kepts = [
        limits.kept_sequence(len(o), f, w)
        for o, f, w in zip(orders, cost.floors, cost.widths, strict=True)
    ]
    removed: list[int] = [0] * len(orders)
    heap: list[tuple[float, int, int]] = []

    def push(g: int, step: int) -> None:
        if step < len(kepts[g]):
            lo, hi = removed[g], len(orders[g]) - kepts[g][step]
            chunk = orders[g][lo:hi]
            heapq.heappush(heap, (float(scores[g][chunk].mean()), g, step))

    for g in range(len(orders)):
        push(g, 0)
    plan: Plan = {}
    done = 0.0
    while heap and done < amount:
        _, g, step = heapq.heappop(heap)
        chunk = orders[g][removed[g] : len(orders[g]) - kepts[g][step]]
        done += cost.remove(g, chunk)[metric]
        plan.setdefault(g, []).extend(chunk)
        removed[g] += len(chunk)
        push(g, step + 1)
    return plan


def plan_local(
    cost: CostModel, scores: Sequence[torch.Tensor], metric: str, amount: float, limits: Limits
) -> Plan:
    """Remove the same fraction of every group (its lowest-scoring units) to reach ``amount``.

    The fraction is the smallest one (found by bisection) whose removal reaches ``amount``.
    """
    orders = [torch.argsort(s, stable=True).tolist() for s in scores]
    # elements removed from (tensor, dim) by the first c units of a group, for every c
    prefixes = [
        [
            (t, dim, [0, *itertools.accumulate(counts[u] for u in order)])
            for t, dim, counts in cost.unit_costs[g]
        ]
        for g, order in enumerate(orders)
    ]

    def counts(p: float) -> list[int]:
        return [
            len(o) - limits.kept_at(len(o), p, f, w)
            for o, f, w in zip(orders, cost.floors, cost.widths, strict=True)
        ]

    def reduction(p: float) -> float:
        shapes: dict[int, list[int]] = {}
        for g, c in enumerate(counts(p)):
            for t, dim, prefix in prefixes[g]:
                shapes.setdefault(t, list(cost.shapes[t]))[dim] -= prefix[c]
        if metric == "channels":
            return float(sum(counts(p)))
        per = cost.macs_per_elem if metric == "macs" else [1] * len(cost.shapes)
        return float(
            sum((math.prod(cost.shapes[t]) - math.prod(s)) * per[t] for t, s in shapes.items())
        )

    lo, hi = 0.0, 1.0
    if reduction(hi) >= amount:
        for _ in range(40):
            mid = (lo + hi) / 2
            if reduction(mid) >= amount:
                hi = mid
            else:
                lo = mid
    plan: Plan = {}
    for g, (order, c) in enumerate(zip(orders, counts(hi), strict=True)):
        if c:
            cost.remove(g, order[:c])
            plan[g] = order[:c]
    return plan


PLANNERS = {"global": plan_global, "local": plan_local}
