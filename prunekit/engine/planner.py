"""Choosing which units to remove so that a step lands on its share of the target.

The planner prices every unit exactly: a parameter tensor's size is the product of its kept
sizes along each dimension, so removing a channel that is both an output of one layer and an
input of the next is counted once, and MACs follow from weight sizes (see
:func:`prunekit.engine.measure.mac_positions`). Predictions therefore equal what
:func:`prunekit.measure` reports after the physical removal.

Latency cannot be counted: it is predicted from a measured table
(:mod:`prunekit.engine.latency_table`), and the Pruner corrects the prediction by measuring.
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
from prunekit.engine.latency_table import Forecast

Plan = dict[int, list[int]]  # group index -> units to remove


#: ``round_to="auto"``: groups that had at least ``AUTO_MIN_UNITS`` units before pruning keep
#: a multiple of ``AUTO_ROUND`` (judged on the original width, so a group keeps its rounding as
#: it narrows over the steps). CPU (oneDNN) and GPU (cuDNN) convolutions run blocked kernels on
#: channel counts that are multiples of 8; odd counts fall back to slower paths (measured in
#: docs/results.md). Narrower groups are pruned unit by unit: there a chunk of 8 units is too
#: coarse for a local step to land near its share of the target. A latency table measures the
#: multiples of both classes on the device and runtime it times (see
#: :func:`prunekit.engine.latency_table.probe_multiples`).
AUTO_ROUND = 8
AUTO_MIN_UNITS = 64

RoundTo = int | str | None  # an int >= 1, "auto" or None (no rounding)

#: ``round_to="auto"`` with a latency table: a kept count must be faster than every larger one
#: by more than this fraction of the parent's time, or it lies on a flat step of the table
#: (its units would go for nothing)
FLAT = 1e-3


@dataclass(frozen=True)
class Limits:
    """Per-group constraints on the number of kept units."""

    min_channels: int = 1
    round_to: RoundTo = "auto"
    #: ``round_to="auto"``: the multiples kept by narrow and by wide groups (see :meth:`wide`)
    multiples: tuple[int, int] = (1, AUTO_ROUND)

    @staticmethod
    def wide(width: int) -> bool:
        """Whether a group of ``width`` units before pruning is in the wide class."""
        return width >= AUTO_MIN_UNITS

    def rounding(self, width: int) -> int:
        """The multiple kept by a group that had ``width`` units before pruning."""
        if self.round_to == "auto":
            return self.multiples[self.wide(width)]
        return int(self.round_to or 1)

    def min_kept(self, n: int, floor: int = 1, width: int | None = None) -> int:
        """Fewest units a group of ``n`` (``width`` before pruning) may keep (``n`` if it cannot
        be pruned at all)."""
        r = self.rounding(width or n)
        low = max(floor, self.min_channels)
        low = math.ceil(low / r) * r
        return n if low >= n else low

    def kept_sequence(
        self,
        n: int,
        floor: int = 1,
        width: int | None = None,
        times: Sequence[float] | None = None,
    ) -> list[int]:
        """Allowed kept counts below ``n`` in decreasing order (each a multiple of round_to).

        ``times[k]`` is the model's predicted time with ``k`` units kept (a latency table's);
        with it, ``round_to="auto"`` also drops the counts no faster than a larger one.
        """
        r = self.rounding(width or n)
        low = self.min_kept(n, floor, width)
        first = (n - 1) // r * r
        counts = list(range(first, low - 1, -r)) if low < n else []
        if times is None or self.round_to != "auto":
            return counts
        faster, best = [], times[n]
        for k in counts:
            if times[k] < best - FLAT:
                faster.append(k)
                best = times[k]
        return faster

    def kept_at(
        self,
        n: int,
        fraction: float,
        floor: int = 1,
        width: int | None = None,
        times: Sequence[float] | None = None,
    ) -> int:
        """Units kept when removing ``fraction`` of ``n`` (local scope), rounded and clamped;
        a count on a flat step of ``times`` is raised to the top of the step (the same time)."""
        r = self.rounding(width or n)
        kept = r * round(n * (1.0 - fraction) / r)
        kept = n if kept >= n else max(self.min_kept(n, floor, width), kept)
        if kept == n or times is None:
            return kept
        return min(k for k in [n, *self.kept_sequence(n, floor, width, times)] if k >= kept)


class CostModel:
    """Exact params / MACs / channels of a model as units are removed (nothing is modified),
    and with a ``latency`` forecast its predicted time as a fraction of the parent's.

    ``widths`` maps group names to their unit counts before pruning (default: the current ones).
    """

    def __init__(
        self,
        model: nn.Module,
        groups: Sequence[ChannelGroup],
        positions: dict[nn.Module, int],
        widths: Mapping[str, int] | None = None,
        latency: Forecast | None = None,
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
        self.forecast = latency
        #: per group, the table's time with ``k`` units kept, for every ``k`` up to its units
        self.times = (
            None if latency is None else [latency.table.times(g.name, g.num_units) for g in groups]
        )

    def latency(self, units: Sequence[int] | None = None) -> float:
        """The predicted time, as a fraction of the parent's, with ``units`` kept per group
        (default: the current ones); only with a latency forecast."""
        assert self.forecast is not None and self.times is not None
        units = self.units if units is None else units
        return self.forecast.ratio(math.prod(t[u] for t, u in zip(self.times, units, strict=True)))

    def _add_params(self, model: nn.Module, positions: dict[nn.Module, int]) -> None:
        for module in model.modules():
            for name, param in module.named_parameters(recurse=False):
                if id(param) in self._index:
                    continue
                self._index[id(param)] = len(self.shapes)
                self.shapes.append(list(param.shape))
                is_weight = name == "weight" and module in positions
                self.macs_per_elem.append(positions[module] if is_weight else 0)

    def totals(self) -> dict[str, float]:
        """Current params, MACs and prunable channels (and the predicted latency ratio)."""
        params = macs = 0
        for shape, per in zip(self.shapes, self.macs_per_elem, strict=True):
            numel = math.prod(shape)
            params += numel
            macs += numel * per
        totals = {"params": params, "macs": macs, "channels": self.channels}
        return totals if self.forecast is None else {**totals, "latency": self.latency()}

    def remove(self, group: int, units: Sequence[int]) -> dict[str, float]:
        """Apply the removal of ``units`` of ``group``; return the decrease of each metric."""
        return self._remove(group, units, apply=True)

    def decrease(self, group: int, units: Sequence[int]) -> dict[str, float]:
        """What :meth:`remove` would return, leaving the model's counts as they are."""
        return self._remove(group, units, apply=False)

    def _remove(self, group: int, units: Sequence[int], apply: bool) -> dict[str, float]:
        was = None if self.forecast is None else self.latency()
        shapes: dict[int, list[int]] = {}
        for t, dim, counts in self.unit_costs[group]:
            gone = sum(counts[u] for u in units)
            if gone:
                shapes.setdefault(t, list(self.shapes[t]))[dim] -= gone
        params = macs = 0
        for t, shape in shapes.items():
            d = math.prod(self.shapes[t]) - math.prod(shape)
            params += d
            macs += d * self.macs_per_elem[t]
        decrease = {"params": params, "macs": macs, "channels": len(units)}
        if was is not None:
            kept = list(self.units)
            kept[group] -= len(units)
            decrease["latency"] = was - self.latency(kept)
        if apply:
            for t, shape in shapes.items():
                self.shapes[t] = shape
            self.units[group] -= len(units)
            self.channels -= len(units)
        return decrease


def plan_global(
    cost: CostModel,
    scores: Sequence[torch.Tensor],
    metric: str,
    amount: float,
    limits: Limits,
    per_cost: bool = False,
) -> Plan:
    """Remove the globally lowest-scoring units until ``amount`` of ``metric`` is gone.

    With ``round_to`` units go in chunks that keep each group a multiple of it; a chunk is
    ranked by the mean score of its units, or with ``per_cost`` by its summed score per unit
    of ``metric`` it removes (the greedy order of the knapsack problem: the least score lost
    per parameter or MAC saved); for ``latency`` always by its summed score per share of the
    time it saves: a chunk that saves no time goes last, however low its score. The last
    chunk is the one next in line (one per group) that reaches ``amount`` with the least
    overshoot, so that a wide layer's chunk does not carry the step a point past its target;
    where none reaches it alone, a chunk that would overshoot by more than a smaller one could
    waits while smaller ones fill the gap.
    """
    orders = [torch.argsort(s, stable=True).tolist() for s in scores]
    times = _times(cost, len(orders))
    kepts = [
        limits.kept_sequence(len(o), f, w, t)
        for o, f, w, t in zip(orders, cost.floors, cost.widths, times, strict=True)
    ]
    removed: list[int] = [0] * len(orders)
    heap: list[tuple[float, int, int]] = []

    def push(g: int, step: int) -> None:
        if step < len(kepts[g]):
            lo, hi = removed[g], len(orders[g]) - kepts[g][step]
            chunk = orders[g][lo:hi]
            rank = float(scores[g][chunk].mean())
            t = times[g]
            if metric == "latency" and t is not None:  # per share of time saved by each unit
                saved = 1.0 - t[len(orders[g]) - hi] / t[len(orders[g]) - lo]
                rank = rank * len(chunk) / saved if saved > 0 else math.inf
            elif per_cost:  # per unit of the target it removes (the knapsack's greedy order)
                saved = cost.decrease(g, chunk)[metric]
                rank = rank * len(chunk) / saved if saved > 0 else math.inf
            heapq.heappush(heap, (rank, g, step))

    for g in range(len(orders)):
        push(g, 0)

    def chunk_of(g: int, step: int) -> list[int]:
        return orders[g][removed[g] : len(orders[g]) - kepts[g][step]]

    plan: Plan = {}
    done = 0.0
    deferred: list[tuple[int, int]] = []  # (group, step): chunks that would overshoot
    while done < amount and (heap or deferred):
        if heap:
            _, g, step = heapq.heappop(heap)
            chunk = chunk_of(g, step)
            gain = cost.decrease(g, chunk)[metric]
            if done + gain > amount:
                # the last chunk: of those next in line, the one that overshoots least
                finals = [(cost.decrease(h, chunk_of(h, k))[metric], h, k) for _, h, k in heap]
                reaching = [f for f in finals if done + f[0] >= amount and f[0] < gain]
                if reaching:
                    _, g, step = min(reaching)
                    chunk = chunk_of(g, step)
                elif (smaller := [f[0] for f in finals if 0 < f[0] < gain]) and (
                    done + gain - amount > max(smaller)
                ):
                    # none reaches alone, and it would overshoot by more than a smaller chunk
                    # could: let those fill the gap (a wide group's chunk of 8 units may be a
                    # sixth of a small network)
                    deferred.append((g, step))
                    continue
        else:  # only deferred chunks left: the one nearest the target
            gains = [(cost.decrease(h, chunk_of(h, k))[metric], h, k) for h, k in deferred]
            reaching = [f for f in gains if done + f[0] >= amount]
            _, g, step = min(reaching) if reaching else max(gains)
            deferred.remove((g, step))
            chunk = chunk_of(g, step)
        done += cost.remove(g, chunk)[metric]
        plan.setdefault(g, []).extend(chunk)
        removed[g] += len(chunk)
        push(g, step + 1)
    return plan


def plan_local(
    cost: CostModel, scores: Sequence[torch.Tensor], metric: str, amount: float, limits: Limits
) -> Plan:
    """Remove the same fraction of every group (its lowest-scoring units) to reach ``amount``.

    The fraction is the smallest one (found by bisection) whose removal reaches ``amount``
    (for ``latency``: whose predicted time meets it). Rounding makes many groups step up at
    that same fraction, which would overshoot by all their steps together; so the groups that
    stepped up there step back down, the largest steps first, while ``amount`` is still
    reached: each group stays within one rounding step of the common fraction.
    """
    orders = [torch.argsort(s, stable=True).tolist() for s in scores]
    times = _times(cost, len(orders))
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
            len(o) - limits.kept_at(len(o), p, f, w, t)
            for o, f, w, t in zip(orders, cost.floors, cost.widths, times, strict=True)
        ]

    def reduction(removed: list[int]) -> float:
        if metric == "latency":
            return cost.latency() - cost.latency([u - c for u, c in zip(cost.units, removed)])
        if metric == "channels":
            return float(sum(removed))
        shapes: dict[int, list[int]] = {}
        for g, c in enumerate(removed):
            for t, dim, prefix in prefixes[g]:
                shapes.setdefault(t, list(cost.shapes[t]))[dim] -= prefix[c]
        per = cost.macs_per_elem if metric == "macs" else [1] * len(cost.shapes)
        return float(
            sum((math.prod(cost.shapes[t]) - math.prod(s)) * per[t] for t, s in shapes.items())
        )

    lo, hi = 0.0, 1.0
    chosen = counts(hi)
    if reduction(chosen) >= amount:
        for _ in range(40):
            mid = (lo + hi) / 2
            if reduction(counts(mid)) >= amount:
                hi = mid
            else:
                lo = mid
        chosen, below = counts(hi), counts(lo)
        stepped = [g for g, (c, b) in enumerate(zip(chosen, below, strict=True)) if c > b]
        gain = {g: reduction([c if i == g else 0 for i, c in enumerate(chosen)]) for g in stepped}
        for g in sorted(stepped, key=lambda g: -gain[g]):
            trial = [below[i] if i == g else c for i, c in enumerate(chosen)]
            if reduction(trial) >= amount:
                chosen = trial
    plan: Plan = {}
    for g, (order, c) in enumerate(zip(orders, chosen, strict=True)):
        if c:
            cost.remove(g, order[:c])
            plan[g] = order[:c]
    return plan


def _times(cost: CostModel, groups: int) -> list[Sequence[float] | None]:
    """Per group, the latency table's times by kept count (``None`` without a table)."""
    return list(cost.times) if cost.times is not None else [None] * groups
