"""What pruning a model can remove: its channel groups, and every layer left out with the reason.

:func:`~prunekit.engine.groups.find_groups` leaves some channels alone on purpose (ignored
layers, the model's outputs, grouped convs it cannot merge, what torch-pruning cannot map);
:func:`description` gathers those reasons so that nobody has to guess why a layer kept its
width (``prunekit inspect``, :meth:`prunekit.Pruner.describe`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch_pruning as tp
from torch import nn

from prunekit.engine.groups import ROOT_TYPES, find_groups, module_names
from prunekit.engine.planner import Limits

IGNORED = "in ignored_layers"


@dataclass(frozen=True)
class Member:
    """A layer a group shrinks: its output (``side="out"``) or input (``"in"``) channels."""

    layer: str
    type: str
    side: str


@dataclass(frozen=True)
class GroupInfo:
    """One channel group: its ``units`` now, the fewest it may keep (``min_units``: its floor and
    ``min_channels``, rounded up) and the multiple of units it keeps (``round_to``)."""

    name: str
    units: int
    min_units: int
    round_to: int
    members: list[Member]


@dataclass(frozen=True)
class LeftOut:
    """A layer whose output channels no group removes, and why; ``via`` names the layer the
    reason belongs to when this one is only coupled with it."""

    layer: str
    type: str
    reason: str
    via: str | None = None


@dataclass
class Description:
    """The channel groups of ``model`` and the layers left out of them."""

    model: str
    groups: list[GroupInfo]
    left_out: list[LeftOut]

    def as_dict(self) -> dict[str, Any]:
        """Plain data (JSON)."""
        return asdict(self)


def description(
    graph: tp.DependencyGraph,
    ignored_layers: list[nn.Module],
    limits: Limits,
    widths: Mapping[str, int] | None = None,
    prune_outputs: bool = False,
) -> Description:
    """The groups :func:`find_groups` finds in ``graph`` and the reason for every traced layer
    with parameters whose output channels are in none; ``widths`` are the unit counts before
    pruning (they decide ``round_to="auto"``, default: the current ones)."""
    names = module_names(graph)
    order = {name: i for i, name in enumerate(names.values())}
    left_whole: dict[str, str] = {}
    skipped: dict[str, str] = {}
    groups = find_groups(graph, ignored_layers, prune_outputs, left_whole, skipped)
    # layer -> the reason that is its own (not only that of a layer it is coupled with)
    own = {names[m]: IGNORED for m in ignored_layers if m in names} | left_whole | skipped
    infos = [_info(g, limits, (widths or {}).get(g.name, g.num_units), order) for g in groups]
    infos.sort(key=lambda g: order[g.name])
    pruned = {m.layer for g in infos for m in g.members if m.side == "out"}
    left_out = []
    for module in graph.module2node:
        name = names.get(module) if isinstance(module, nn.Module) else None
        if not name or name in pruned or not any(True for _ in module.parameters(recurse=False)):
            continue
        if name in own:
            left_out.append(LeftOut(name, type(module).__name__, own[name]))
            continue
        via = next((n for n in _coupled(graph, module, names) if n in own and n != name), None)
        reason = own[via] if via else _no_group(module)
        left_out.append(LeftOut(name, type(module).__name__, reason, via))
    left_out.sort(key=lambda x: order[x.layer])
    return Description(type(graph.model).__name__, infos, left_out)


def _info(group: Any, limits: Limits, width: int, order: dict[str, int]) -> GroupInfo:
    members = {(s.module_name, s.role): type(s.module).__name__ for s in group.slices}
    ranked = sorted(members, key=lambda m: (order[m[0]], m[1] != "out"))
    return GroupInfo(
        group.name,
        group.num_units,
        limits.min_kept(group.num_units, group.min_units, width),
        limits.rounding(width),
        [Member(layer, members[layer, side], side) for layer, side in ranked],
    )


def _coupled(graph: tp.DependencyGraph, module: nn.Module, names: dict[Any, str]) -> list[str]:
    """The layers whose output channels torch-pruning couples with those of ``module``."""
    pruner = graph.get_pruner_of_module(module)
    channels = pruner.get_out_channels(module) if pruner is not None else None
    if channels is None:
        return []
    try:
        group = graph.get_pruning_group(module, pruner.prune_out_channels, list(range(channels)))
    except Exception:  # torch-pruning cannot follow them: no coupled layer to name
        return []
    return [
        names[it.dep.target.module]
        for it in group.items
        if it.dep.target.module in names and graph.is_out_channel_pruning_fn(it.dep.handler)
    ]


def _no_group(module: nn.Module) -> str:
    """Why ``module``, coupled with no layer left out, is in no group."""
    if isinstance(module, ROOT_TYPES):
        return "torch-pruning builds no channel group for its output channels"
    return (
        "no channel group: prunekit prunes the output channels of conv and linear layers and "
        "of the layers coupled with them"
    )
