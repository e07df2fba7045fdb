"""Channel groups: the sets of coupled channels that must be removed together.

torch-pruning's dependency graph finds which layers are coupled (concat, residual adds,
BatchNorm, flatten -> linear, depth-wise convs). prunekit turns each of its groups into a
:class:`ChannelGroup` of *units* (channels of the group's root layer) and the parameter slices
each unit owns, so that criteria can score units and the planner can price them exactly.

It also fixes what torch-pruning gets wrong: a grouped convolution whose input and output
channels differ (``groups = in_channels`` with a channel multiplier, or ResNeXt-style groups)
couples its *input* channel group ``g`` with its *output* channels ``g*m .. g*m+m-1``.
torch-pruning treats the two sides as independent and produces broken layers (or crashes).
prunekit merges the producer's group with the grouped conv's output group into one group
whose unit is one whole convolution group.

It maps the channels through pixel shuffles (:func:`_fix_pixel_shuffle`), which torch-pruning
passes through as if element-wise, through ShuffleNet's channel shuffles
(:func:`_fix_channel_shuffle`), which it has no mapping for, and through splits into equal
pieces (:func:`_fix_split`), which it maps to the wrong offsets.

It also gives torch-pruning the true channel counts of every ``torch.cat`` (see
:func:`_repair_index_mapping`): it guesses them from the nearest layers, wrongly after a slice or
split, and then maps channels to the wrong places (or, round a loop of such mappings, to ever
larger indices: building the groups never ended).

Groups torch-pruning cannot remove consistently, or whose cost prunekit cannot count, are left
whole with the reason (see :func:`find_groups`): a slice or an unequal ``torch.split`` of the
channels (their sizes are constants in ``forward()``), a concat it cannot map, a bare
``nn.Parameter`` of more than one channel dimension, a layer whose pruned parameters
:func:`_param_dims` does not know. A bare ``nn.Parameter`` with one non-singleton dimension (a
layer scale, ``x * self.gamma.reshape(1, -1, 1, 1)`` in ConvNeXt) loses its channels with the
group (:func:`bare_parameter`).
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch_pruning as tp
from torch import nn
from torch_pruning import ops
from torch_pruning._helpers import _HybridIndex
from torch_pruning.dependency.index_mapping import (
    _ConcatIndexMapping,
    _FlattenIndexMapping,
    _SliceIndexMapping,
)

from prunekit.engine.integrity import Snapshot, check_runs, failing_module
from prunekit.engine.measure import forward
from prunekit.errors import PrunekitError

ROOT_TYPES = (nn.modules.conv._ConvNd, nn.Linear)
NORM_TYPES = (
    nn.modules.batchnorm._BatchNorm,
    nn.modules.instancenorm._InstanceNorm,
    nn.GroupNorm,
    nn.LayerNorm,
)


def is_depthwise(module: nn.Module) -> bool:
    """A depth-wise conv (one filter per input channel); torch-pruning couples its sides."""
    return (
        isinstance(module, nn.modules.conv._ConvNd)
        and module.groups > 1
        and module.groups == module.in_channels == module.out_channels
    )


def is_grouped(module: nn.Module) -> bool:
    """A grouped conv that is not plain depth-wise: pruned a whole group at a time."""
    return (
        isinstance(module, nn.modules.conv._ConvNd)
        and module.groups > 1
        and not is_depthwise(module)
    )


def _param_dims(module: nn.Module, role: str) -> list[tuple[str, int]] | None:
    """Which parameters of ``module`` a channel touches, and along which dimension.

    ``None`` where torch-pruning changes parameters this table does not know, or changes them
    inconsistently (an LSTM's hidden size, a LayerNorm over several dims): the planner could
    not price such a removal, so its group is left whole.
    """
    if isinstance(module, nn.LayerNorm) and len(module.normalized_shape) > 1:
        return None  # torch-pruning shrinks the last normalized dim, not the channels
    if isinstance(module, nn.modules.conv._ConvNd):
        out_dim = 1 if module.transposed else 0
        if role == "out" or is_depthwise(module):
            return [("weight", out_dim), ("bias", 0)]
        return [("weight", 1 - out_dim)]
    if isinstance(module, nn.Linear):
        return [("weight", 0), ("bias", 0)] if role == "out" else [("weight", 1)]
    if isinstance(module, NORM_TYPES):
        return [("weight", 0), ("bias", 0)]
    if isinstance(module, nn.PReLU):
        return [("weight", 0)] if module.num_parameters > 1 else []
    if isinstance(module, nn.Embedding) and role == "out":
        return [("weight", 1)]
    if isinstance(module, nn.LSTM) and role == "in":
        return [("weight_ih_l0", 1), ("weight_ih_l0_reverse", 1)]
    return None if any(True for _ in module.parameters(recurse=False)) else []


def _parameter_name(graph: tp.DependencyGraph, param: nn.Parameter) -> str | None:
    return next((n for n, p in graph.model.named_parameters() if p is param), None)


def bare_parameter(graph: tp.DependencyGraph, node: Any) -> tuple[str, str, int] | None:
    """``(owner module name, attribute, channel dim)`` of a bare ``nn.Parameter`` node whose
    channels are unambiguous (one dimension above 1: a per-channel scale or shift, which
    torch-pruning maps through the broadcast); ``None`` for any other parameter."""
    param = node.module
    name = _parameter_name(graph, param)
    big = [d for d, n in enumerate(param.shape) if n > 1]
    if name is None or len(big) != 1 or getattr(node, "pruning_dim", None) != big[0]:
        return None
    owner, _, attr = name.rpartition(".")
    return owner, attr, big[0]


def _prune_bare_parameter(graph: tp.DependencyGraph, node: Any, idxs: list[int]) -> str:
    """Replace the parameter by one without ``idxs`` (with its gradient), and the graph's node
    with it; returns the name of the module holding it. A new tensor, as for every other layer:
    resizing the old one in place would leave autograd's cached accumulator at the old shape."""
    owner, attr, dim = bare_parameter(graph, node)
    old = node.module
    keep = torch.tensor(sorted(set(range(old.shape[dim])) - set(idxs)), dtype=torch.long)
    new = nn.Parameter(old.data.index_select(dim, keep.to(old.device)), old.requires_grad)
    if old.grad is not None:
        new.grad = old.grad.index_select(dim, keep.to(old.grad.device))
    setattr(graph.model.get_submodule(owner), attr, new)
    graph.module2node[new] = graph.module2node.pop(old)
    node.module = new
    return owner


@dataclass
class ParamSlice:
    """The elements of one parameter that belong to a group's units.

    ``index[i]`` is a position along ``dim`` of the parameter and ``unit[i]`` the unit that
    owns it; a unit may own several positions (flatten -> linear, grouped convs).
    """

    module_name: str
    module: nn.Module
    param_name: str
    dim: int
    index: torch.Tensor
    unit: torch.Tensor
    role: str

    @property
    def param(self) -> nn.Parameter:
        return getattr(self.module, self.param_name)

    @property
    def is_norm(self) -> bool:
        return isinstance(self.module, NORM_TYPES)


@dataclass
class _Part:
    """One torch-pruning group inside a :class:`ChannelGroup`; ``block`` root channels a unit."""

    root: nn.Module
    handler: Any
    block: int
    items: list[Any]

    def root_indices(self, blocks: Iterable[int]) -> list[int]:
        """The root channels of the given blocks (block ``b``: channels ``b*block ...``)."""
        return [b * self.block + j for b in blocks for j in range(self.block)]


@dataclass
class ChannelGroup:
    """Coupled channels removed together; a *unit* is one channel of the root layer.

    (For a merged grouped-conv group a unit is one convolution group: ``block`` input channels
    of the grouped conv and its ``m`` output channels.)
    """

    name: str
    num_units: int
    slices: list[ParamSlice]
    parts: list[_Part] = field(repr=False)
    graph: tp.DependencyGraph = field(repr=False)
    #: module -> qualified name, shared by the groups of one :func:`find_groups` call
    names: dict[nn.Module, str] = field(repr=False)
    #: fewest units the group may keep (2 for grouped convs: one group would make a plain conv)
    min_units: int = 1
    #: per unit, the blocks of root channels it removes (default: unit ``u`` is block ``u``);
    #: several when channels are coupled through the root itself, e.g. GhostNet's concat of a
    #: conv and a depth-wise conv of its output, summed with the block input
    blocks: list[list[int]] | None = field(default=None, repr=False)
    #: whether these channels are channels of the model's output (``prune_outputs=True`` only)
    reaches_output: bool = False

    @property
    def has_norm(self) -> bool:
        """Whether a normalisation layer (BatchNorm, ...) scales these channels."""
        return any(s.is_norm and s.role == "out" for s in self.slices)

    def unit_sum(self, s: ParamSlice, values: torch.Tensor) -> torch.Tensor:
        """Sum ``values`` (shaped like ``s.param``) over each unit's elements -> ``[num_units]``."""
        # reduce to one value per channel first, trailing dims before leading ones, then pick:
        # no copy of the weight (a step scores every layer)
        per_channel = values.detach()
        if s.dim + 1 < per_channel.dim():
            per_channel = per_channel.flatten(s.dim + 1).sum(-1)
        if s.dim > 0:
            per_channel = per_channel.flatten(0, s.dim - 1).sum(0)
        per_index = per_channel.index_select(0, s.index.to(values.device))
        out = torch.zeros(self.num_units, dtype=per_index.dtype, device=per_index.device)
        return out.index_add_(0, s.unit.to(per_index.device), per_index)

    def prune(self, units: list[int]) -> dict[str, dict[str, list[int]]]:
        """Physically remove ``units``; returns the removed indices per module name and side, as
        indices of the layers before this call."""
        removed: dict[str, dict[str, list[int]]] = {}
        blocks = units if self.blocks is None else [b for u in units for b in self.blocks[u]]
        for part in self.parts:
            root_idxs = part.root_indices(sorted(blocks))
            # Recomputed now: an earlier part or group may have shifted concat offsets.
            _sync_offsets(self.graph)
            group = self.graph.get_pruning_group(part.root, part.handler, root_idxs)
            for item in group.items:
                # once each: the r*r channels of a unit before a pixel shuffle reach the same
                # channel after it r*r times
                dep, idxs = item.dep, list(dict.fromkeys(item.idxs))
                module = dep.target.module
                role = "out" if self.graph.is_out_channel_pruning_fn(dep.handler) else "in"
                if dep.target.type == ops.OPTYPE.PARAMETER:
                    owner = _prune_bare_parameter(self.graph, dep.target, idxs)
                    done = removed.setdefault(owner, {}).setdefault("out", [])
                    done.extend(original_indices(done, idxs))
                    continue
                if is_grouped(module):
                    if role == "in":
                        continue  # removed together with its output channels below
                    _prune_grouped_conv(module, idxs)
                else:
                    dep(idxs)
                if isinstance(module, nn.Module) and module in self.names:
                    done = removed.setdefault(self.names[module], {}).setdefault(role, [])
                    done.extend(original_indices(done, idxs))  # a later part sees fewer
        return removed


def original_indices(gone: list[int], idxs: list[int]) -> list[int]:
    """``idxs`` of a side that has already lost the channels ``gone``, as indices of the side
    before it lost them (both lists in those indices)."""
    gone = sorted(set(gone))
    out = []
    for i in idxs:
        for g in gone:
            i += g <= i
        out.append(i)
    return out


def _prune_grouped_conv(conv: nn.Module, out_idxs: list[int]) -> None:
    """Remove whole groups of a grouped conv given all of their output channel indices."""
    per_out = conv.out_channels // conv.groups
    per_in = conv.in_channels // conv.groups
    gone = sorted(set(out_idxs))
    n_groups = len({i // per_out for i in gone})
    if len(gone) != n_groups * per_out:
        raise PrunekitError(f"internal error: partial group removal in grouped conv {conv}")
    keep = torch.tensor(sorted(set(range(conv.out_channels)) - set(gone)), dtype=torch.long)
    dim = 1 if conv.transposed else 0
    conv.weight = nn.Parameter(conv.weight.detach().index_select(dim, keep))
    if conv.bias is not None:
        conv.bias = nn.Parameter(conv.bias.detach().index_select(0, keep))
    conv.out_channels -= len(gone)
    conv.in_channels -= n_groups * per_in
    conv.groups -= n_groups


def module_names(graph: tp.DependencyGraph) -> dict[nn.Module, str]:
    """Module -> qualified name in the traced model (computed here rather than read from
    torch-pruning's private bookkeeping)."""
    return {module: name for name, module in graph.model.named_modules()}


def build_graph(model: nn.Module, example_inputs: Any) -> tp.DependencyGraph:
    """Trace ``model`` into torch-pruning's dependency graph, with a clear error if it fails."""
    was_training = model.training
    model.eval()  # tracing runs a forward pass: it must not update BatchNorm statistics
    try:
        graph = _Graph().build_dependency(model, example_inputs, verbose=False)
    except Exception as exc:
        culprit = failing_module(model, example_inputs)
        where = f" in module {culprit!r}" if culprit else ""
        raise PrunekitError(
            f"cannot trace {type(model).__name__}{where} ({type(exc).__name__}: {exc}); "
            "make forward() run on the example inputs or add that module to ignored_layers"
        ) from exc
    finally:
        model.train(was_training)
    _repair_index_mapping(graph)  # again: torch-pruning re-guessed the concat sizes meanwhile
    _check_splits(model, example_inputs, graph)
    return graph


class _Graph(tp.DependencyGraph):
    """torch-pruning's dependency graph, repaired (:func:`_repair_index_mapping`) as soon as its
    dependencies are built: before torch-pruning maps channels by its own guesses of the concat
    sizes, which fails (``TypeError``) where it cannot guess one."""

    def _build_dependency(self, module2node: dict[Any, Any]) -> None:
        super()._build_dependency(module2node)
        _repair_index_mapping(self)


#: the splits forward() writes (torch.split, torch.chunk); those inside recurrent layers
#: (unsafe_split) are left to torch-pruning
_SPLITS = {"SplitBackward0", "SplitWithSizesBackward0"}
#: the concats and splits forward() writes
_WRITTEN = {"CatBackward0", *_SPLITS}


@dataclass
class _Repairs:
    """What :func:`_repair_index_mapping` found in one traced graph."""

    #: node -> why torch-pruning cannot map channels through it (cut from the graph)
    unmapped: dict[Any, str] = field(default_factory=dict)
    #: the concats along the channels whose mappings prunekit sets from their sizes
    concats: list[Any] = field(default_factory=list)
    #: the splits into equal pieces along the channels that prunekit maps (:func:`_fix_split`)
    splits: list[Any] = field(default_factory=list)


#: the repairs of each traced graph
_REPAIRS: weakref.WeakKeyDictionary[tp.DependencyGraph, _Repairs] = weakref.WeakKeyDictionary()


def _repair_index_mapping(graph: tp.DependencyGraph) -> None:
    """Give torch-pruning the true channel counts of the concats along the channels, map the
    channels through the splits into equal pieces, and cut the other splits from the graph.

    torch-pruning infers a concat's sizes by walking to the nearest layers, which goes wrong
    after a slice or a split; it gives a concat no offsets at all where the layers after it (a
    flatten, another concat) keep it from inferring its width; and it cannot place the channels
    of a tensor it does not trace (the model's input). The true counts are read from the traced
    tensors (the offsets follow from the counts at every use, :func:`_sync_offsets`). A split's
    sizes are constants in ``forward()`` (``torch.split(x, [3, 5], 1)``): removing channels on
    either side of it would move its boundaries and silently change what each piece holds. Only
    a split into equal pieces (``x.chunk(2, 1)``) keeps them where every piece loses the same
    channels (:func:`_fix_split`; :func:`_check_splits` then tries one). A split that cannot be
    mapped, and a concat whose channels still cannot be, is cut from the graph, so that no group
    goes through it, and the groups that reach it are left whole with the reason.
    """
    node_of = {n.grad_fn: n for n in graph.module2node.values() if n.grad_fn is not None}
    names = module_names(graph)
    earlier = _REPAIRS.get(graph)  # the view/reshape nodes cut the first time are elementwise now
    repairs = _REPAIRS[graph] = _Repairs(unmapped=dict(earlier.unmapped) if earlier else {})
    splits = [
        n
        for n in graph.module2node.values()
        if n.type == ops.OPTYPE.SPLIT
        and type(n.grad_fn).__name__ in _SPLITS
        and _along_channels(n.grad_fn)
        and n not in repairs.unmapped  # cut by the first call: its dependencies are gone
    ]
    for node in list(graph.module2node.values()):  # before the loop below cuts their views
        _fix_channel_shuffle(node)
    why_not: dict[Any, str] = {}  # split -> why it cannot be mapped
    for node in splits:
        why = _fix_split(node)
        if why is None:
            repairs.splits.append(node)
        else:
            why_not[node] = why
    for node in graph.module2node.values():
        why = _fix_pixel_shuffle(node, node_of)
        if why:
            node.dependencies = []  # the groups reaching it end there, and are left whole
            repairs.unmapped[node] = (
                f"torch-pruning cannot map its channels through the pixel shuffle after "
                f"{_producer(node, names)} in forward(): {why}"
            )
        if why is not None:
            continue
        if node.type == ops.OPTYPE.RESHAPE:
            _fix_flatten(node, node_of)
            regrouped = _regrouped(node)
            if node.type == ops.OPTYPE.RESHAPE and regrouped is not None:
                # torch-pruning has no mapping for it (and divides by zero guessing one)
                node.type = ops.OPTYPE.ELEMENTWISE
                node.dependencies = []
                repairs.unmapped[node] = (
                    "torch-pruning cannot map its channels through the view/reshape after "
                    f"{_producer(node, names)} in forward(): it regroups them ({regrouped})"
                )
            continue
        if node.type not in (ops.OPTYPE.CONCAT, ops.OPTYPE.SPLIT):
            continue
        if type(node.grad_fn).__name__ not in _WRITTEN or not _along_channels(node.grad_fn):
            continue  # along another dim torch-pruning maps nothing through a concat or split
        if node.type == ops.OPTYPE.SPLIT and node not in why_not:
            continue  # mapped, or cut by the first call
        if node.type == ops.OPTYPE.CONCAT:
            why, what = _fix_concat(node, node_of), "torch.cat"
        else:
            why, what = why_not[node], "torch.split/chunk"
        if why is None:
            repairs.concats.append(node)
            continue
        node.dependencies = []  # the groups reaching it end there, and are left whole
        repairs.unmapped[node] = (
            f"torch-pruning cannot map its channels through the {what} after "
            f"{_producer(node, names)} in forward(): {why}"
        )
    _sync_offsets(graph)


def _shape(grad_fn: Any, output: int = 0) -> list[int] | None:
    """The shape of the ``output``-th tensor the operation of ``grad_fn`` returned."""
    meta = getattr(grad_fn, "_input_metadata", None)  # PyTorch >= 2.1
    return list(meta[output].shape) if meta is not None and output < len(meta) else None


def _along_channels(grad_fn: Any) -> bool:
    """Whether a concat or split works along dim 1, the channels torch-pruning maps."""
    dim = getattr(grad_fn, "_saved_dim", None)
    shape = _shape(grad_fn)
    if dim is None or shape is None or len(shape) < 2:
        return False
    return _signed(dim) % len(shape) == 1


def _signed(dim: int) -> int:
    """A dim an autograd node saved: some builds save -1 as an unsigned 64-bit integer."""
    return dim - 2**64 if dim >= 2**63 else dim


def _fix_concat(node: Any, node_of: dict[Any, Any]) -> str | None:
    """Set the sizes of a concat along the channels; why it cannot be mapped, if it cannot."""
    args = list(node.grad_fn.next_functions)
    if any(fn is None or fn not in node_of for fn, _ in args):
        return "one of its inputs is a tensor torch-pruning does not trace (the model's input?)"
    sizes = [_shape(fn, output) for fn, output in args]
    if [node_of[fn] for fn, _ in args] != node.inputs or any(s is None for s in sizes):
        return "torch-pruning traced its inputs in another order"
    if not node.enable_index_mapping and not getattr(node.module, "offsets_by_prunekit", False):
        return "torch-pruning does not map its offsets"
    node.module.concat_sizes = [s[1] for s in sizes]
    return None


def _regrouped(node: Any) -> str | None:
    """``[N, C, H, W] -> [N, G, C/G, H, W]`` (and a guess at why) if a view/reshape moves the
    channels of a tensor of three or more dims to other dims, as a channel shuffle does in dim 1
    and a transformer's split into heads in the last dim; None otherwise."""
    args = [(fn, i) for fn, i in getattr(node.grad_fn, "next_functions", ()) if fn is not None]
    before = _shape(*args[0]) if len(args) == 1 else None
    after = _shape(node.grad_fn)
    if before is None or after is None or min(len(before), len(after)) < 3:
        return None  # flattens and unflattens are torch-pruning's, or _fix_flatten's
    if before[-1] != after[-1] and _channels_last(node, before[-1], after[-1]):
        return f"{before} -> {after}, the channels last: attention heads?"
    if before[1] == after[1]:
        return None  # the channels stay in dim 1 (``x.flatten(2)``, ``x.view(n, c, -1)``)
    return f"{before} -> {after}, a channel shuffle?"


def _channels_last(node: Any, before: int, after: int) -> bool:
    """Whether the last dim of a view's input or output holds the channels: it comes straight
    from a Linear's outputs or goes straight into a Linear's inputs (tokens ``[B, N, C]``, as
    in a transformer's ``qkv(x).reshape(B, N, 3, heads, C // heads)``). A Linear over another
    last dim (token mixing on ``[N, C, H*W]``) passes too: its groups are then left whole,
    never broken."""
    fed = any(
        isinstance(n.module, nn.Linear) and n.module.out_features == before for n in node.inputs
    )
    feeds = any(
        isinstance(n.module, nn.Linear) and n.module.in_features == after for n in node.outputs
    )
    return fed or feeds


def _fix_channel_shuffle(node: Any) -> bool:
    """Map the channels through a channel shuffle of ``g`` groups that starts at ``node``:
    ``x.view(n, g, k, h, w)``, ``transpose(1, 2)`` (or ``permute(0, 2, 1, ...)``) and a view
    back to ``[n, g*k, h, w]``, as in ShuffleNet.

    Channel ``a*k + b`` before it is channel ``b*g + a`` after it. The shuffle stays valid only
    if every one of its ``g`` groups keeps the same channels, so channel ``b`` of every group
    (a "column") goes with block ``b*g .. b*g+g-1`` after it: mapped both ways as whole columns
    and blocks, the ``g`` channels of a column meet and become one unit
    (:func:`_coupled_blocks`). ``k`` shrinks as columns are removed, so the mapping reads the
    current width of the shuffled tensor (:func:`_live_width`) each time it is used. Anything
    else that regroups the channels is left to :func:`_regrouped`.
    """
    if node.type != ops.OPTYPE.RESHAPE or len(node.inputs) != 1 or len(node.outputs) != 1:
        return False
    args = [(fn, i) for fn, i in getattr(node.grad_fn, "next_functions", ()) if fn is not None]
    before = _shape(*args[0]) if len(args) == 1 else None
    after = _shape(node.grad_fn)
    if before is None or after is None or len(before) < 3 or len(after) != len(before) + 1:
        return False
    n, c, *rest = before
    g, k = after[1], after[2]
    if after[0] != n or after[3:] != rest or g * k != c or g < 2:
        return False
    middle, swapped, end = [], False, node.outputs[0]
    while end.type != ops.OPTYPE.RESHAPE:
        op = type(end.grad_fn).__name__
        if end.type != ops.OPTYPE.ELEMENTWISE or len(end.outputs) != 1 or len(end.inputs) != 1:
            return False
        if op in ("TransposeBackward0", "PermuteBackward0") and not swapped:
            swapped = _swaps_groups(end.grad_fn, len(after))
            if not swapped:
                return False
        elif op != "CloneBackward0":  # .contiguous()
            return False
        middle.append(end)
        end = end.outputs[0]
    if not swapped or len(end.inputs) != 1 or _shape(end.grad_fn) != before:
        return False
    source = node.inputs[0]
    if _live_width(source) != c:
        return False  # no layer before it says how wide it is now
    width = functools.partial(_live_width, source)
    for deps, target, reverse in (
        (source.dependencies, node, False),  # from before the shuffle to after it
        (node.dependencies, source, True),
    ):
        for dep in deps:
            if dep.target is target:
                dep.index_mapping[0] = _ShuffleIndexMapping(g, width, reverse)
    # the indices between the two views are those after the shuffle: passed through unchanged
    for step in (node, *middle, end):
        step.type = ops.OPTYPE.ELEMENTWISE
    return True


def _swaps_groups(grad_fn: Any, dims: int) -> bool:
    """Whether a transpose or permute of a ``dims``-dim tensor swaps dims 1 and 2 only."""
    if hasattr(grad_fn, "_saved_dims"):
        order = [_signed(d) for d in grad_fn._saved_dims]
    else:
        order = list(range(dims))
        a, b = _signed(grad_fn._saved_dim0), _signed(grad_fn._saved_dim1)
        order[a % dims], order[b % dims] = order[b % dims], order[a % dims]
    return [d % dims for d in order] == [0, 2, 1, *range(3, dims)]


class _ShuffleIndexMapping:
    """Indices through a channel shuffle of ``groups`` groups, as whole columns and blocks
    (see :func:`_fix_channel_shuffle`); ``reverse`` maps from after the shuffle to before."""

    def __init__(self, groups: int, width: Callable[[], int | None], reverse: bool) -> None:
        self.groups, self.width, self.reverse = groups, width, reverse

    def __call__(self, idxs: list[_HybridIndex]) -> list[_HybridIndex]:
        g = self.groups
        k = (self.width() or 0) // g
        out = []
        for i in idxs:
            column = int(i.idx) // g if self.reverse else int(i.idx) % k
            targets = range(column, g * k, k) if self.reverse else range(column * g, column * g + g)
            out.extend(_HybridIndex(idx=t, root_idx=i.root_idx) for t in targets)
        return list(dict.fromkeys(out))


def _live_width(node: Any) -> int | None:
    """The current channel count of what ``node`` returns, read off the layers before it
    (through element-wise operations, norms and concats along the channels); None where no
    layer says.

    A piece of a split has none: through ShuffleNetV2's chains of splits, concats and
    shuffles, torch-pruning's walk of one group would take minutes (it goes on while a layer is
    reached with other root channels), so a split or shuffle whose input is such a chain is
    left unmapped."""
    module = node.module
    if isinstance(module, nn.modules.conv._ConvNd):
        return module.out_channels
    if isinstance(module, nn.modules.batchnorm._BatchNorm | nn.modules.instancenorm._InstanceNorm):
        return module.num_features
    if node.type == ops.OPTYPE.CONCAT and _along_channels(node.grad_fn) and node.inputs:
        widths = [_live_width(i) for i in node.inputs]
        return None if None in widths else sum(widths)
    if node.type in (ops.OPTYPE.ELEMENTWISE, ops.OPTYPE.PRELU) and node.inputs:
        return _live_width(node.inputs[0])
    return None


def _fix_split(node: Any) -> str | None:
    """Map the channels through a split of the channels into ``n`` equal pieces of ``P``
    (``x.chunk(n, 1)``); why it cannot be mapped, if it cannot.

    The pieces stay equal only if each loses the same channels, so channel ``i`` of every
    piece (channels ``i, P + i, ...`` of the tensor split, a "column") is removed together:
    mapped both ways between the split and the layer before it, a column's ``n`` channels meet
    and become one unit (:func:`_coupled_blocks`). Each piece's consumers then get the channels
    of that piece, less its offset. ``P`` shrinks as columns are removed, so the mappings read
    the current width of the tensor split (:func:`_live_width`) each time they are used.
    Whether ``forward()`` splits by the current width (``chunk``) or by a constant one
    (``torch.split(x, 16, 1)``) the trace cannot tell: :func:`_check_splits` tries it.
    """
    grad_fn = node.grad_fn
    shapes = [_shape(grad_fn, i) for i in range(len(getattr(grad_fn, "_input_metadata", ())))]
    whole = list(getattr(grad_fn, "_saved_self_sym_sizes", ()))
    widths = {p[1] for p in shapes if p is not None}
    n = len(shapes)
    if n < 2 or None in shapes or len(widths) != 1 or len(whole) < 2 or n * min(widths) != whole[1]:
        return "its pieces differ in size, constants in forward() that removed channels would shift"
    if len(node.inputs) != 1 or _live_width(node.inputs[0]) != whole[1]:
        return "no layer before it sizes what it splits (another split? chains are not mapped)"
    source, read = node.inputs[0], {}
    for consumer in dict.fromkeys(node.outputs):  # a concat of several pieces is there for each
        pieces = [nr for fn, nr in consumer.grad_fn.next_functions if fn is grad_fn]
        out = [d for d in node.dependencies if d.target is consumer]
        back = [d for d in consumer.dependencies if d.target is node]
        several = consumer.type == ops.OPTYPE.CONCAT and _along_channels(consumer.grad_fn)
        if not pieces or (len(pieces) > 1 and not several):
            return "an operation after it reads several of its pieces at once"
        if len(out) != len(pieces) or len(back) != len(pieces):
            return "torch-pruning traced its pieces in another order"
        read[consumer] = pieces, out, back
    if {p for pieces, _, _ in read.values() for p in pieces} != set(range(n)):
        return "one of its pieces goes to no traced layer (is it returned?)"
    width = functools.partial(_live_width, source)
    for dep in (*source.dependencies, *node.dependencies):
        if {dep.source, dep.target} == {source, node}:  # whole columns, both ways
            dep.index_mapping[0] = _PieceIndexMapping(n, width, None, reverse=False)
    # the k-th use of the split by a concat is its k-th dependency each way, as for its offsets
    # (:func:`_sync_offsets`): a piece's channels less its offset, and the offset back
    for pieces, out, back in read.values():
        for piece, to_piece, from_piece in zip(pieces, out, back, strict=True):
            to_piece.index_mapping[0] = _PieceIndexMapping(n, width, piece, reverse=False)
            from_piece.index_mapping[0] = _PieceIndexMapping(n, width, piece, reverse=True)
    node.module.split_sizes = node.module.offsets = None  # torch-pruning's own mapping is wrong
    return None


class _PieceIndexMapping:
    """Indices through a split into ``pieces`` equal pieces (see :func:`_fix_split`): whole
    columns between the split and the tensor split (``piece`` None), the channels of piece
    ``piece`` less its offset from the split to its consumers, plus its offset back
    (``reverse``)."""

    def __init__(
        self, pieces: int, width: Callable[[], int | None], piece: int | None, reverse: bool
    ) -> None:
        self.pieces, self.width, self.piece, self.reverse = pieces, width, piece, reverse

    def __call__(self, idxs: list[_HybridIndex]) -> list[_HybridIndex]:
        size = (self.width() or 0) // self.pieces
        if self.piece is None:
            out = [
                _HybridIndex(idx=int(i.idx) % size + t * size, root_idx=i.root_idx)
                for i in idxs
                for t in range(self.pieces)
            ]
            return list(dict.fromkeys(out))
        start = self.piece * size
        if self.reverse:
            return [_HybridIndex(idx=int(i.idx) + start, root_idx=i.root_idx) for i in idxs]
        return [
            _HybridIndex(idx=int(i.idx) - start, root_idx=i.root_idx)
            for i in idxs
            if start <= int(i.idx) < start + size
        ]


def _fix_flatten(node: Any, node_of: dict[Any, Any]) -> None:
    """Map the channels through a flatten of ``[N, C, H, W]`` to ``[N, C*H*W]`` by its stride.

    torch-pruning infers the stride anew at every use from the widths of the layers around the
    flatten, wrongly once a concat or split there has been pruned; the traced shapes fix it for
    good, so the node is handed to torch-pruning as an element-wise operation it leaves alone.
    """
    args = [(fn, i) for fn, i in getattr(node.grad_fn, "next_functions", ()) if fn is not None]
    if len(args) != 1 or node_of.get(args[0][0]) not in node.inputs or len(node.inputs) != 1:
        return
    before, after = _shape(*args[0]), _shape(node.grad_fn)
    if before is None or after is None or len(before) != 4 or len(after) != 2:
        return
    stride = before[2] * before[3]
    if after != [before[0], before[1] * stride]:
        return
    _map_blocks(node, stride, wide="out")
    node.type = ops.OPTYPE.ELEMENTWISE


#: ``grad_fn`` names of the pixel (un)shuffles -> which side has ``r**2`` channels per channel
_PIXEL_SHUFFLES = {"PixelShuffleBackward0": "in", "PixelUnshuffleBackward0": "out"}


def _fix_pixel_shuffle(node: Any, node_of: dict[Any, Any]) -> str | None:
    """Map the channels through ``nn.PixelShuffle(r)`` (and ``PixelUnshuffle``, functional
    forms included): output channel ``c`` is made of input channels ``c*r*r ... c*r*r+r*r-1``.

    torch-pruning passes the indices through unchanged, as for an element-wise operation,
    which points past the narrower side; with the blocks mapped, the ``r*r`` producer channels
    of one output channel meet in it and become one unit (:func:`_coupled_blocks`). Returns
    None if ``node`` is no pixel (un)shuffle, ``""`` once mapped, else why it cannot be.
    """
    wide = _PIXEL_SHUFFLES.get(type(node.grad_fn).__name__)
    if wide is None:
        return None
    args = [(fn, i) for fn, i in node.grad_fn.next_functions if fn is not None]
    if len(args) != 1 or node_of.get(args[0][0]) not in node.inputs or len(node.inputs) != 1:
        return "its input is a tensor torch-pruning does not trace (the model's input?)"
    before, after = _shape(*args[0]), _shape(node.grad_fn)
    if before is None or after is None:
        return "this PyTorch does not record the shapes that say how it regroups the channels"
    # channels are dim -3 (a traced batch of one may have lost its batch dim)
    narrow, broad = (after[-3], before[-3]) if wide == "in" else (before[-3], after[-3])
    _map_blocks(node, broad // narrow, wide)
    return ""


def _map_blocks(node: Any, stride: int, wide: str) -> None:
    """Map each channel of the narrow side of ``node`` to ``stride`` consecutive channels of its
    ``wide`` side (``"in"`` or ``"out"``), in both directions of its dependencies."""
    source = node.inputs[0]
    for deps, target, collapse in (
        (node.dependencies, source, wide == "out"),  # from the output back to the input
        (source.dependencies, node, wide == "in"),
    ):
        for dep in deps:
            if dep.target is target:
                dep.index_mapping[0] = _FlattenIndexMapping(stride=stride, reverse=collapse)


def _sync_offsets(graph: tp.DependencyGraph) -> None:
    """Map the channels through the repaired concats by their current sizes.

    torch-pruning updates the sizes when it prunes through a concat, but maps a concat whose
    width it cannot infer by no offsets at all.
    """
    repairs = _REPAIRS.get(graph, _Repairs())
    for node in repairs.concats:
        offsets = _offsets(node.module.concat_sizes)
        done: set[int] = set()  # as torch-pruning does: input i gets the first free dependency
        for i, source in enumerate(node.inputs):
            for dep, reverse in (
                (_free(node.dependencies, source, done), True),
                (_free(source.dependencies, node, done), False),
            ):
                if dep is None:
                    continue
                mapping = _ConcatIndexMapping(offsets[i : i + 2], reverse)
                piece = next(
                    (m for m in dep.index_mapping if isinstance(m, _PieceIndexMapping)), None
                )
                if reverse and piece is not None:
                    # torch-pruning applies index_mapping[0] first: back from a concat into a
                    # piece of a split, the concat's offset goes first, then the piece's; and
                    # it must not put its own concat mapping second again
                    dep.index_mapping[:] = [mapping, piece]
                    node.enable_index_mapping = False
                    node.module.offsets_by_prunekit = True
                else:
                    dep.index_mapping[1] = mapping


def _free(deps: list[Any], target: Any, done: set[int]) -> Any:
    """The first dependency on ``target`` not yet ``done`` (then marked done), if any."""
    dep = next((d for d in deps if d.target is target and id(d) not in done), None)
    if dep is not None:
        done.add(id(dep))
    return dep


def _offsets(sizes: list[int]) -> list[int]:
    return [sum(sizes[:i]) for i in range(len(sizes) + 1)]


def _check_splits(model: nn.Module, example_inputs: Any, graph: tp.DependencyGraph) -> None:
    """Cut from the graph each split mapped by :func:`_fix_split` whose sizes ``forward()``
    fixes (``torch.split(x, 16, 1)`` where ``x.chunk(2, 1)`` would follow the channels): the
    trace cannot tell them apart, so one unit of a group through the split is removed, the
    model run on the example inputs, and put back. The groups that reach a cut split are left
    whole with the reason."""
    repairs = _REPAIRS.get(graph)
    if repairs is None or not repairs.splits:
        return
    names = module_names(graph)
    equal = _equal_splits(model, example_inputs)
    groups = find_groups(graph, [], prune_outputs=True)
    for node in list(repairs.splits):
        through = (g for g in groups if any(i.dep.target is node for p in g.parts for i in p.items))
        group = next((g for g in through if g.num_units >= 2), None)
        if group is None:
            continue  # no group through it can lose a unit
        undo = Snapshot(graph)
        try:
            group.prune([0])
            problem = check_runs(model, example_inputs, None)
            why = None if problem is None else problem[0]
            if why is None and _equal_splits(model, example_inputs) < equal:
                why = "a split into equal pieces no longer makes equal pieces"
        except Exception as exc:  # torch-pruning's own error
            why = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        finally:
            undo.restore()
        if why is None:
            continue
        repairs.splits.remove(node)
        node.dependencies = []
        groups = find_groups(graph, [], prune_outputs=True)  # those through it end there now
        repairs.unmapped[node] = (
            f"prunekit cannot map its channels through the torch.split/chunk after "
            f"{_producer(node, names)} in forward(): one channel less in each of its pieces "
            f"broke the model ({why}); are its sizes constants? (x.chunk(n, 1) follows the "
            "channels)"
        )


def _equal_splits(model: nn.Module, example_inputs: Any) -> int:
    """How many splits of the channels into equal pieces a forward pass of ``model`` makes,
    read off its autograd graph as torch-pruning's trace is."""
    was_training = model.training
    model.eval()  # no BatchNorm statistics updates
    try:
        with torch.enable_grad():
            output = forward(model, example_inputs)
    finally:
        model.train(was_training)
    stack, seen, count = [t.grad_fn for t in _tensors(output)], set(), 0
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        if type(fn).__name__ in _SPLITS and _along_channels(fn):
            widths = [_shape(fn, i) for i in range(len(fn._input_metadata))]
            count += len(widths) >= 2 and len({w[1] for w in widths if w}) == 1
        stack.extend(f for f, _ in fn.next_functions)
    return count


def _tensors(output: Any) -> list[torch.Tensor]:
    """The tensors in a model's output (a tensor, or tuples, lists and dicts of them)."""
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, (list, tuple)):
        return [t for v in output for t in _tensors(v)]
    return []


def find_groups(
    graph: tp.DependencyGraph,
    ignored_layers: list[nn.Module],
    prune_outputs: bool = False,
    left_whole: dict[str, str] | None = None,
    skipped: dict[str, str] | None = None,
) -> list[ChannelGroup]:
    """All prunable channel groups of the traced model.

    Groups whose channels reach the model's output are skipped unless ``prune_outputs``: a
    pruned output would silently change what the model returns. Groups that cannot be pruned
    consistently (see :func:`_unprunable`) are skipped too; ``left_whole`` receives their root
    layer's name and the reason. ``skipped`` receives the same for the groups skipped without
    a warning: those reaching the output and the grouped convs that cannot be merged (see
    :func:`_merge_grouped`), so that :mod:`prunekit.engine.describe` can say why.
    """
    skipped = {} if skipped is None else skipped
    names = module_names(graph)
    _sync_offsets(graph)
    try:
        raw = list(
            graph.get_all_groups(ignored_layers=list(ignored_layers), root_module_types=ROOT_TYPES)
        )
    except Exception as exc:  # torch-pruning trips over an operation it does not know
        culprit = _ungroupable(graph, ignored_layers)
        raise PrunekitError(
            f"torch-pruning cannot follow the channels of {culprit!r} in "
            f"{type(graph.model).__name__} ({type(exc).__name__}: {exc}); add {culprit!r} to "
            "ignored_layers"
        ) from exc

    def touches_output(group: Any) -> bool:
        for item in group.items:
            node, handler = item.dep.target, item.dep.handler
            if node.type == ops.OPTYPE.OUTPUT:
                return True
            if graph.is_out_channel_pruning_fn(handler) and not node.outputs:
                return True
        return False

    def members(group: Any, role: str) -> list[nn.Module]:
        out = graph.is_out_channel_pruning_fn
        return [
            it.dep.target.module
            for it in group.items
            if isinstance(it.dep.target.module, nn.Module)
            and (out(it.dep.handler) == (role == "out"))
        ]

    usable = []
    for group in raw:
        if not prune_outputs and touches_output(group):
            skipped[names[group.items[0].dep.target.module]] = "its channels reach the model output"
            continue
        reason = _unprunable(group, graph, names)
        if reason is None:
            usable.append(group)
        elif left_whole is not None:
            left_whole[names[group.items[0].dep.target.module]] = reason
    # the group that owns each grouped conv's output channels
    out_group_of = {m: g for g in usable for m in members(g, "out") if is_grouped(m)}
    children = {id(g) for g in out_group_of.values()}
    unmerged: dict[nn.Module, str] = {}  # grouped conv -> the root of its skipped producer group

    result: list[ChannelGroup] = []
    for group in usable:
        reaches = touches_output(group)
        if id(group) in children:
            continue  # merged into its producer's group below
        grouped_inputs = [m for m in members(group, "in") if is_grouped(m)]
        root_item = group.items[0]
        parts = [_Part(root_item.dep.target.module, root_item.dep.handler, 1, group.items)]
        num_units = len(root_item.idxs)
        if grouped_inputs:
            merged = _merge_grouped(group, grouped_inputs, out_group_of, names)
            if isinstance(merged, str):
                root = names[root_item.dep.target.module]
                skipped[root] = merged
                unmerged.update(dict.fromkeys(grouped_inputs, root))
                continue
            parts, num_units = merged
        blocks = _blocks_of(graph, parts, num_units)
        slices = _slices(parts, num_units, graph, blocks, names)
        units = num_units if blocks is None else len(blocks)
        floor = 2 if grouped_inputs else 1
        result.append(
            ChannelGroup(
                names[parts[0].root], units, slices, parts, graph, names, floor, blocks, reaches
            )
        )
    merged_roots = {names[p.root] for g in result for p in g.parts}
    for conv, child in out_group_of.items():
        root = names[child.items[0].dep.target.module]
        if root not in merged_roots:
            producer = unmerged.get(conv)
            those = f"the group of {producer!r} is" if producer else "those are"
            skipped.setdefault(
                root,
                f"the grouped conv {names[conv]!r} loses output channels only with whole groups "
                f"of its input channels, and {those} not prunable",
            )
    return result


#: layers whose output channels are their input channels, one to one
_PASS_THROUGH = (ops.OPTYPE.BN, ops.OPTYPE.LN, ops.OPTYPE.GN, ops.OPTYPE.IN, ops.OPTYPE.PRELU)


def _unprunable(group: Any, graph: tp.DependencyGraph, names: dict[nn.Module, str]) -> str | None:
    """Why the channels of ``group`` cannot be removed consistently; ``None`` if they can."""
    repairs = _REPAIRS.get(graph)
    unmapped = repairs.unmapped if repairs else {}
    for item in group.items:
        node = item.dep.target
        module = node.module
        if node in unmapped:
            return unmapped[node]
        if node.type == ops.OPTYPE.SLICE and _channel_slice(node):
            sizes = list(node.grad_fn._saved_self_sym_sizes)
            return (
                f"torch-pruning cannot map its channels through the slice along dim "
                f"{node.module.dim} of a {sizes} tensor after {_producer(node, names)} in forward()"
            )
        if node.type == ops.OPTYPE.PARAMETER:
            if bare_parameter(graph, node) is not None:
                continue
            name = _parameter_name(graph, module) or node.name
            return (
                f"the bare nn.Parameter {name!r} {tuple(module.shape)} meets its channels along "
                "more than one dimension: wrap it in a module"
            )
        if module not in names:
            continue  # an operation (add, concat, ...): no parameters
        role = "out" if graph.is_out_channel_pruning_fn(item.dep.handler) else "in"
        side = f"{role}put channels of {names[module]!r} ({type(module).__name__})"
        if not node.inputs and (is_depthwise(module) or node.type in _PASS_THROUGH):
            return (  # its input and output channels are one: the model input's
                f"{names[module]!r} ({type(module).__name__}) reads the model's input, whose "
                "channels cannot be removed"
            )
        dims = _param_dims(module, role)
        if dims is None:
            return f"pruning the {side} changes parameters prunekit cannot count"
        if role == "in" and is_grouped(module):
            continue  # checked through the merged output part
        for pname, dim in dims:
            param = getattr(module, pname, None)
            if param is not None and item.idxs and max(item.idxs) >= param.shape[dim]:
                return (
                    f"torch-pruning maps its channels past the {param.shape[dim]} {side} "
                    "(through a slice, view or indexing in forward()?)"
                )
    return None


def _channel_slice(node: Any) -> bool:
    """Whether torch-pruning maps channel indices through this slice.

    It does for every slice of a 2-D or 5-D tensor and the last dim of a 3-D one, the batch
    dim included. The bounds written in ``forward()`` cannot follow pruned channels, so no
    group through such a slice can be pruned consistently.
    """
    return any(
        isinstance(mapping, _SliceIndexMapping)
        for dep in node.dependencies
        for mapping in dep.index_mapping
    )


def _producer(node: Any, names: dict[nn.Module, str]) -> str:
    """The nearest named layer whose output reaches ``node``, quoted (for messages)."""
    queue, seen = list(node.inputs), set()
    while queue:
        current = queue.pop(0)
        if current.module in names:
            return repr(names[current.module])
        if current not in seen:
            seen.add(current)
            queue.extend(current.inputs)
    return "the inputs"


def _ungroupable(graph: tp.DependencyGraph, ignored_layers: list[nn.Module]) -> str:
    """The first root layer whose group torch-pruning fails to build (after it failed)."""
    names = module_names(graph)
    for module in graph.module2node:
        if isinstance(module, ROOT_TYPES) and module not in ignored_layers:
            pruner = graph.get_pruner_of_module(module)
            try:
                graph.get_pruning_group(
                    module, pruner.prune_out_channels, range(pruner.get_out_channels(module))
                )
            except Exception:
                return names[module]
    return type(graph.model).__name__


def _merge_grouped(
    group: Any,
    convs: list[nn.Module],
    out_group_of: dict[nn.Module, Any],
    names: dict[nn.Module, str],
) -> tuple[list[_Part], int] | str:
    """Merge a producer group with the output groups of the grouped convs it feeds.

    Returns why the group is not prunable instead when a grouped conv's outputs cannot be
    pruned (ignored, or reaching the model output), the convs disagree on the number of groups
    or a conv does not see the group's channels one to one.
    """
    groups = {c.groups for c in convs}
    root_item = group.items[0]
    channels = len(root_item.idxs)
    if len(groups) != 1:
        each = ", ".join(f"{names[c]!r} has {c.groups}" for c in convs)
        return f"the grouped convs reading its channels disagree on the number of groups ({each})"
    for conv in convs:
        if conv.in_channels != channels:
            return (
                f"the grouped conv {names[conv]!r} reads {conv.in_channels} channels, not the "
                f"group's {channels} (through a concat?)"
            )
    for item in group.items:
        if item.dep.target.module in convs and list(item.idxs) != list(item.root_idxs):
            return (
                f"the grouped conv {names[item.dep.target.module]!r} sees its channels re-ordered "
                "(through a concat?)"
            )
    n_groups = groups.pop()
    parts = [
        _Part(root_item.dep.target.module, root_item.dep.handler, channels // n_groups, group.items)
    ]
    for conv in convs:
        child = out_group_of.get(conv)
        if child is None:
            return (
                f"the output channels of the grouped conv {names[conv]!r} it feeds are not prunable"
            )
        child_root = child.items[0]
        if child_root.dep.target.module is not conv:
            return (
                f"the output channels of the grouped conv {names[conv]!r} it feeds are coupled "
                f"with those of {names[child_root.dep.target.module]!r}"
            )
        parts.append(
            _Part(conv, child_root.dep.handler, conv.out_channels // n_groups, child.items)
        )
    return parts, n_groups


#: per traced graph, the shapes (see :func:`_blocks_of`) of the groups found without coupled
#: blocks: removing whole units cannot make two root channels meet that did not meet before
_UNCOUPLED: weakref.WeakKeyDictionary[tp.DependencyGraph, set[Any]] = weakref.WeakKeyDictionary()


def _blocks_of(
    graph: tp.DependencyGraph, parts: list[_Part], num_units: int
) -> list[list[int]] | None:
    """:func:`_coupled_blocks`, skipped for a group whose dependencies (same layers, same
    operations, in the same order) were already found uncoupled in an earlier call: the walk
    is the costliest part of finding the groups, and they are found again after every step."""
    shape = tuple(
        (id(p.root), p.block, tuple((id(i.dep.target), i.dep.handler) for i in p.items))
        for p in parts
    )
    known = _UNCOUPLED.setdefault(graph, set())
    if shape in known:
        return None
    blocks = _coupled_blocks(parts, num_units)
    if blocks is None:
        known.add(shape)
    return blocks


def _coupled_blocks(parts: list[_Part], num_units: int) -> list[list[int]] | None:
    """The blocks of root channels that only go together, as lists (``None``: every block
    goes alone, the usual case).

    torch-pruning removes root channel ``i`` with everything its dependencies reach, and
    that may include other root channels: in GhostNet a block's input is summed with the
    concat of a conv and a depth-wise conv of that conv, so input channel ``i`` and
    ``half + i`` fall together. Its groups record each position once, with the first root
    channel that reached it, which hides this; so the root channels are followed here
    through the same dependencies, every position keeping every root channel that reaches
    it, and the blocks that meet at a position are merged into one unit.
    """
    parent = list(range(num_units))

    def find(b: int) -> int:
        while parent[b] != b:
            parent[b] = parent[parent[b]]
            b = parent[b]
        return b

    for part in parts:
        root = part.items[0].dep
        seed = [_HybridIndex(idx=i, root_idx=i) for i in part.root_indices(range(num_units))]
        labels: dict[tuple[int, Any], dict[int, set[int]]] = {}
        stack = [(root.target, root.handler, seed)]
        while stack:
            node, handler, idxs = stack.pop()
            for dep in node.dependencies:
                if not dep.is_triggered_by(handler):
                    continue
                mapped = idxs
                for mapping in dep.index_mapping:
                    if mapping is not None:
                        mapped = mapping(mapped)
                seen = labels.setdefault((id(dep.target), dep.handler), {})
                new = []
                for h in mapped:
                    roots = seen.setdefault(int(h.idx), set())
                    if int(h.root_idx) not in roots:
                        roots.add(int(h.root_idx))
                        new.append(h)
                if new:
                    stack.append((dep.target, dep.handler, new))
        for positions in labels.values():
            for roots in positions.values():
                first, *rest = (r // part.block for r in roots)
                for b in rest:
                    parent[find(b)] = find(first)
    unit_of_root: dict[int, int] = {}  # numbered by their first block
    unit_of = [unit_of_root.setdefault(find(b), len(unit_of_root)) for b in range(num_units)]
    if len(unit_of_root) == num_units:
        return None
    blocks: list[list[int]] = [[] for _ in unit_of_root]
    for b, u in enumerate(unit_of):
        blocks[u].append(b)
    return blocks


def _slices(
    parts: list[_Part],
    num_units: int,
    graph: tp.DependencyGraph,
    blocks: list[list[int]] | None,
    names: dict[nn.Module, str],
) -> list[ParamSlice]:
    """Parameter slices of every unit (``blocks``: see :func:`_coupled_blocks`), each
    (parameter, dim, index) counted once."""
    unit_of = list(range(num_units))
    for u, members in enumerate(blocks or []):
        for b in members:
            unit_of[b] = u
    seen: dict[tuple[int, str, int], dict[int, int]] = {}
    meta: dict[tuple[int, str, int], tuple[nn.Module, str]] = {}
    roles: dict[tuple[int, str, int], str] = {}
    for part in parts:
        for item in part.items:
            module = item.dep.target.module
            role = "out" if graph.is_out_channel_pruning_fn(item.dep.handler) else "in"
            if item.dep.target.type == ops.OPTYPE.PARAMETER:
                owner, pname, dim = bare_parameter(graph, item.dep.target)
                module, role, dims = graph.model.get_submodule(owner), "out", [(pname, dim)]
            elif not isinstance(module, nn.Module) or module not in names:
                continue
            elif role == "in" and is_grouped(module):
                continue  # its weights are owned through the merged output part
            else:
                dims = _param_dims(module, role)
            for pname, dim in dims:
                if getattr(module, pname, None) is None:
                    continue
                key = (id(module), pname, dim)
                meta[key] = (module, pname)
                roles.setdefault(key, role)
                owner = seen.setdefault(key, {})
                for idx, root in zip(item.idxs, item.root_idxs):
                    block = int(root) // part.block
                    if block >= num_units:
                        raise PrunekitError(f"internal error: unit out of range in {names[module]}")
                    owner.setdefault(int(idx), unit_of[block])
    slices = []
    for key, owner in seen.items():
        module, pname = meta[key]
        index = torch.tensor(sorted(owner), dtype=torch.long)
        unit = torch.tensor([owner[i] for i in sorted(owner)], dtype=torch.long)
        slices.append(ParamSlice(names[module], module, pname, key[2], index, unit, roles[key]))
    return slices
