"""Folding BatchNorm into the convolution or linear layer before it, for deployment.

In eval mode a BatchNorm is a fixed per-channel affine map. When it reads the output of a
convolution or linear layer and nothing else reads that output, the map folds into the layer's
weight and bias and the BatchNorm becomes an ``nn.Identity``: one layer less per block, the
same outputs. What feeds each BatchNorm is found with ``torch.fx``; a model fx cannot trace is
followed through one forward pass on example inputs instead (module hooks, and a torch
function mode that sees every other use of a layer's output). A pair that either analysis is
not sure of is left unfolded and reported.
"""

from __future__ import annotations

import contextlib
import copy
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import fx, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd
from torch.nn.utils import parametrize
from torch.overrides import TorchFunctionMode

from prunekit.engine.measure import forward
from prunekit.engine.persistence import fold_layout
from prunekit.errors import PrunekitError

#: the BatchNorms folded (subclasses may compute something else) and the layers folded into
BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
PRODUCERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


@dataclass
class FuseReport:
    """What :func:`fuse` did: the ``(producer, BatchNorm)`` name pairs it folded, the
    BatchNorms it left with the reason, and ``traced_by``: ``"fx"`` or ``"hooks"``."""

    fused: list[tuple[str, str]] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    traced_by: Literal["fx", "hooks"] = "fx"


@dataclass
class _Feeds:
    """What feeds the BatchNorms that forward() calls: ``producers`` the layer whose output
    only that BatchNorm reads, ``reasons`` why the others have none, ``ranks`` each layer's
    output dimensions (known only from a forward pass)."""

    producers: dict[str, str] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    ranks: dict[str, int] | None = None


def fuse(
    model: nn.Module, example_inputs: Any = None, *, inplace: bool = False
) -> tuple[nn.Module, FuseReport]:
    """Fold every eval-mode BatchNorm into the convolution or linear layer that feeds it.

    Returns the folded model, a deep copy unless ``inplace``, and a :class:`FuseReport`. In
    eval mode it computes what ``model`` computes (to float rounding). Folded BatchNorms become
    ``nn.Identity`` (module names stay); a layer without a bias gets one. Conv1d/2d/3d (grouped
    and depth-wise too) and Linear followed by BatchNorm1d fold; a BatchNorm in training mode,
    without running statistics, after a transposed convolution or an operation (a concat, an
    add), or reading an output that something else reads too is skipped with the reason.

    ``example_inputs`` (a tensor, tuple/list or dict) are needed for models torch.fx cannot
    trace, and to fold a Linear: it folds only when its output is ``(batch, features)``.
    :func:`prunekit.save` records the folding and :func:`prunekit.load` redoes it.
    """
    folded = model if inplace else copy.deepcopy(model)
    report = FuseReport()
    with _evaluating(folded):
        try:
            feeds = _fx_feeds(folded)
        except Exception as exc:  # fx fails on data-dependent control flow, among much else
            if example_inputs is None:
                raise PrunekitError(
                    f"torch.fx cannot trace {type(model).__name__} ({type(exc).__name__}: "
                    f"{exc}); pass example_inputs to fuse() to follow a forward pass instead"
                ) from exc
            feeds, report.traced_by = _hook_feeds(folded, example_inputs), "hooks"
        else:
            if example_inputs is not None:
                feeds.ranks = _hook_feeds(folded, example_inputs).ranks
    modules = dict(folded.named_modules())
    for name, bn in modules.items():
        if isinstance(bn, _BatchNorm):
            reason = _refusal(name, bn, feeds, modules)
            if reason:
                report.skipped[name] = reason
            else:
                report.fused.append((feeds.producers[name], name))
    for producer_name, bn_name in report.fused:
        _fold(modules[producer_name], modules[bn_name])
    fold_layout(folded, report.fused)
    return folded, report


def _refusal(name: str, bn: nn.Module, feeds: _Feeds, modules: dict[str, nn.Module]) -> str:
    """Why BatchNorm ``name`` cannot be folded; empty if it can."""
    if type(bn) not in BATCHNORMS:
        return f"a {type(bn).__name__}: a subclass of BatchNorm may compute something else"
    if bn.training:
        return "in training mode, where it normalises by batch statistics: call model.eval()"
    if bn.running_mean is None or bn.running_var is None:
        return "it keeps no running statistics (track_running_stats=False)"
    if name in feeds.reasons:
        return feeds.reasons[name]
    if name not in feeds.producers:
        return "forward() does not call it"
    producer_name = feeds.producers[name]
    producer = modules[producer_name]
    kind = type(producer).__name__
    if isinstance(producer, nn.modules.conv._ConvTransposeNd):
        return f"it follows {kind} {producer_name!r}: transposed convolutions are not folded"
    if type(producer) not in PRODUCERS:
        return f"it follows {kind} {producer_name!r}, not a convolution or linear layer"
    if _hooked(producer) or _hooked(bn) or parametrize.is_parametrized(producer):
        return f"{producer_name!r} or the BatchNorm has hooks or parametrizations"
    if isinstance(producer, nn.Linear):
        if feeds.ranks is None:
            return f"it follows Linear {producer_name!r}: pass example_inputs to fold a Linear"
        if feeds.ranks.get(producer_name) != 2:
            return f"it follows Linear {producer_name!r}, whose output is not (batch, features)"
    return ""


def _hooked(module: nn.Module) -> bool:
    return bool(module._forward_pre_hooks or module._forward_hooks)


def _fold(producer: nn.Module, bn: nn.Module) -> None:
    """Fold eval-mode ``bn`` into ``producer``'s weight and bias, computed in float64."""
    with torch.no_grad():
        scale = torch.rsqrt(bn.running_var.double() + bn.eps)
        shift = -bn.running_mean.double() * scale
        if bn.affine:
            scale = scale * bn.weight.double()
            shift = shift * bn.weight.double() + bn.bias.double()
        weight = producer.weight
        folded = weight.double() * scale.reshape(-1, *[1] * (weight.dim() - 1))
        bias = shift if producer.bias is None else producer.bias.double() * scale + shift
    grad = weight.requires_grad
    producer.weight = nn.Parameter(folded.to(weight.dtype), requires_grad=grad)
    producer.bias = nn.Parameter(bias.to(weight.dtype), requires_grad=grad)


@contextlib.contextmanager
def _evaluating(model: nn.Module) -> Iterator[None]:
    """Trace in eval mode, the mode folding is for; restore every module's own mode after."""
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        yield
    finally:
        for module, mode in modes.items():
            module.training = mode


class _Tracer(fx.Tracer):
    """fx's tracer, keeping BatchNorms and the layers they fold into whole wherever defined."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        leaf = isinstance(m, (_BatchNorm, _ConvNd, nn.Linear))
        return leaf or super().is_leaf_module(m, module_qualified_name)


def _fx_feeds(model: nn.Module) -> _Feeds:
    """The layer feeding each BatchNorm in the fx graph of ``model``."""
    nodes = [node for node in _Tracer().trace(model).nodes if node.op == "call_module"]
    calls = Counter(node.target for node in nodes)
    modules = dict(model.named_modules())
    feeds = _Feeds()
    for node in nodes:
        if not isinstance(modules[node.target], _BatchNorm):
            continue
        source = node.args[0] if node.args else None
        if calls[node.target] > 1:
            feeds.reasons[node.target] = f"forward() calls it {calls[node.target]} times"
        elif not isinstance(source, fx.Node) or source.op != "call_module":
            feeds.reasons[node.target] = f"its input is {_describe(source)}, not a layer's output"
        elif calls[source.target] > 1:
            feeds.reasons[node.target] = (
                f"its input comes from {source.target!r}, which forward() calls "
                f"{calls[source.target]} times"
            )
        elif len(source.users) > 1:
            feeds.reasons[node.target] = f"the output of {source.target!r} is also used elsewhere"
        else:
            feeds.producers[node.target] = source.target
    return feeds


def _describe(source: Any) -> str:
    if not isinstance(source, fx.Node):
        return "not a traced tensor"
    if source.op == "placeholder":
        return "an input of the model"
    if source.op in ("call_function", "call_method"):
        return f"the result of {getattr(source.target, '__name__', source.target)}"
    return "a tensor attribute"


class _Uses(TorchFunctionMode):
    """Which modules pass each layer output to a torch function (or return it).

    Module hooks keep ``running``, the stack of modules running, and register each module's
    output tensor in ``outputs`` (kept alive, so that ``id`` stays unique); every torch function
    taking such a tensor then records the innermost running module as its user.
    """

    def __init__(self) -> None:
        super().__init__()
        self.running: list[str] = []
        self.outputs: dict[int, tuple[str, torch.Tensor]] = {}
        self.users: defaultdict[int, set[str]] = defaultdict(set)

    def use(self, value: Any, user: str) -> None:
        for leaf in _leaves(value):
            made = self.outputs.get(id(leaf))
            if made is not None and made[1] is leaf:
                self.users[id(leaf)].add(user)

    def __torch_function__(
        self, func: Callable, types: Any, args: tuple = (), kwargs: dict | None = None
    ) -> Any:
        kwargs = kwargs or {}
        self.use((args, kwargs), self.running[-1] if self.running else "")
        return func(*args, **kwargs)


def _leaves(value: Any) -> Iterator[Any]:
    if isinstance(value, (list, tuple)):
        for item in value:
            yield from _leaves(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)
    else:
        yield value


def _hook_feeds(model: nn.Module, example_inputs: Any) -> _Feeds:
    """The layer feeding each BatchNorm, from one forward pass on ``example_inputs``."""
    uses, calls, inputs, ranks = _Uses(), Counter(), {}, {}
    names = {module: name for name, module in model.named_modules()}

    def before(module: nn.Module, args: tuple[Any, ...]) -> None:
        name = names[module]
        calls[name] += 1
        uses.running.append(name)
        if isinstance(module, _BatchNorm):
            inputs[name] = args[0] if args else None

    def after(module: nn.Module, _args: Any, output: Any) -> None:
        name = uses.running.pop()
        if isinstance(output, torch.Tensor) and id(output) not in uses.outputs:
            ranks[name] = output.dim()  # before registering it: dim() is a torch function
            uses.outputs[id(output)] = (name, output)  # the innermost module that made it

    handles = [m.register_forward_pre_hook(before) for m in names]
    handles += [m.register_forward_hook(after) for m in names]
    try:
        with torch.no_grad(), uses:
            uses.use(forward(model, example_inputs), "the model's output")
    finally:
        for handle in handles:
            handle.remove()
    feeds = _Feeds(ranks=ranks)
    for name, x in inputs.items():
        made = uses.outputs.get(id(x))
        if calls[name] > 1:
            feeds.reasons[name] = f"forward() calls it {calls[name]} times"
        elif made is None or made[1] is not x:
            feeds.reasons[name] = "its input is not a layer's output (an operation's, say)"
        elif calls[made[0]] > 1:
            feeds.reasons[name] = (
                f"its input comes from {made[0]!r}, which forward() calls {calls[made[0]]} times"
            )
        elif uses.users[id(x)] != {name}:
            feeds.reasons[name] = f"the output of {made[0]!r} is also used elsewhere"
        else:
            feeds.producers[name] = made[0]
    return feeds
