"""A complete prunekit recovery method in one file: bias correction (Nagel et al. 2019).

Pruning shifts the mean of a layer's outputs: the removed channels contributed ``W x`` on
average, and the layers after it were trained for that mean. Bias correction puts the mean back
without gradients or labels. Over a few calibration images it measures, per output channel, the
mean output of a conv/linear layer in the pruned network and in the unpruned parent (on the
channels the pruned layer kept), and adds the difference to the layer's bias. The layers are
corrected in forward order, each measured after the ones before it were corrected, so every
corrected layer ends up with exactly the parent's mean output on the images it was measured on.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import torch
from torch import nn
from torch.nn.modules.conv import _ConvNd

from prunekit import PrunekitError, Recovery, RecoveryContext
from prunekit.recovery.data import stream

WHAT = "demo_bias_correct"  # names the method in errors and log lines
LAYERS = ("all", "last")


class _Stop(Exception):
    """Raised by a hook to end a forward pass right after the layer being measured."""


class _Sums:
    """Per output channel, float64 sums of a layer's outputs in the pruned model and in the
    parent (``side``) over the same images, and how many values each channel's sum adds up."""

    def __init__(self) -> None:
        self.total: dict[str, torch.Tensor] = {}
        self.count = {"pruned": 0, "parent": 0}

    def add(self, side: str, layer: nn.Module, y: torch.Tensor) -> None:
        # channels are the last dim of a Linear's output and dim 1 of a conv's
        y = y.detach().movedim(-1 if isinstance(layer, nn.Linear) else 1, -1)
        rows = y.reshape(-1, y.shape[-1])
        total = rows.double().sum(0)
        self.total[side] = total + self.total[side] if side in self.total else total
        self.count[side] += rows.shape[0]

    def mean(self, side: str) -> torch.Tensor:
        return self.total[side] / self.count[side]


def _width(layer: nn.Module) -> int:
    return layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels


class BiasCorrect(Recovery):
    """Shift conv/linear biases so each layer's mean output matches the parent's (Nagel et al.).

    ``layers="all"`` corrects every Conv/Linear layer that has a bias, in forward order, each
    measured after the ones before it were corrected (one pass over the images per layer);
    ``"last"`` only the last one, e.g. the classifier (one pass). A layer is skipped, with a log
    line, when the parent has no layer of that name and type, when its outputs cannot be matched
    to the parent's, or when one forward pass calls it more than once. ``images``: calibration
    images per pass; every pass takes the same number, which counts once.
    """

    # Class attributes tell `recover` what the method needs before anything runs.
    needs_parent = True  # it reads the parent's outputs
    needs_task = False  # no loss, no labels
    default_images = 128  # used when neither the `images` option nor the budget says less

    # Options are keyword arguments (`recovery.options.demo_bias_correct.layers` in a run).
    def __init__(self, images: int | None = None, layers: str = "all") -> None:
        super().__init__(images)
        if layers not in LAYERS:
            raise PrunekitError(f"{WHAT}: layers={layers!r} is unknown: use 'all' or 'last'")
        self.layers = layers

    def run(
        self, model: nn.Module, context: RecoveryContext, images: int, deadline: float | None
    ) -> dict[str, float]:
        model.eval()
        pairs = self._pairs(model, context)
        if not pairs:
            context.log(f"{WHAT}: no conv/linear layer with a bias to correct")
            return {"images": 0, "layers": 0}
        # The first pass measures every layer at once and finds the forward order. Its numbers
        # are right for the first layer (nothing before it changes) and, with layers="last",
        # for the last one; with "all", each later layer is measured again after the
        # corrections before it.
        sums, calls, used = self._measure(model, context, pairs, images, deadline)
        order = []
        for name in dict.fromkeys(calls):
            if calls.count(name) == 1:
                order.append(name)
            else:
                context.log(f"{WHAT}: skipped {name!r}: called {calls.count(name)} times")
        if self.layers == "last":
            order = order[-1:]
        shifts = []
        for i, name in enumerate(order):
            if self.layers == "all" and i > 0:
                if deadline is not None and time.monotonic() >= deadline:
                    context.log(f"{WHAT}: out of time before {name!r}; later layers kept")
                    break
                one = {name: pairs[name]}
                sums, _, n = self._measure(model, context, one, images, deadline, stop=True)
                used = max(used, n)
            shifts.append(self._correct(name, pairs[name][0], sums[name], context))
        model.eval()
        stats: dict[str, float] = {"images": used, "layers": len(shifts)}
        if shifts:
            stats["shift"] = sum(shifts) / len(shifts)  # mean |bias change| of a layer
        return stats

    def _pairs(
        self, model: nn.Module, context: RecoveryContext
    ) -> dict[str, tuple[nn.Module, nn.Module]]:
        """By name, (layer, parent's layer) for every conv/linear layer with a bias whose
        outputs can be matched to the parent's."""
        assert context.parent is not None  # recover() checks needs_parent first
        parents = dict(context.parent.named_modules())
        found = {}
        for name, layer in model.named_modules():
            if not isinstance(layer, (_ConvNd, nn.Linear)) or layer.bias is None:
                continue

            def skip(why: str, name: str = name) -> None:
                context.log(f"{WHAT}: skipped {name!r}: {why}")

            parent = parents.get(name)
            if parent is None or type(parent) is not type(layer):
                skip("the parent has no layer of that name and type")
                continue
            out, parent_out = _width(layer), _width(parent)
            kept = context.kept.get(name)  # parent indices of the kept outputs; None: all
            if kept is None and out != parent_out:
                skip(f"{out} outputs against the parent's {parent_out} and no kept entry for it")
                continue
            if kept is not None and (len(kept) != out or int(kept.max()) >= parent_out):
                skip(f"kept has {len(kept)} channels for {out} outputs (parent: {parent_out})")
                continue
            found[name] = (layer, parent)
        return found

    @staticmethod
    def _measure(
        model: nn.Module,
        context: RecoveryContext,
        pairs: dict[str, tuple[nn.Module, nn.Module]],
        images: int,
        deadline: float | None,
        stop: bool = False,
    ) -> tuple[dict[str, _Sums], list[str], int]:
        """Run the pruned model and the parent on the same calibration batches (``images``
        images, fewer once past ``deadline``): the channel sums of each layer in ``pairs``, the
        order in which the first batch called them, and the images used. ``stop``: end each
        forward pass right after the (single) layer measured."""
        sums = {name: _Sums() for name in pairs}
        calls: list[str] = []
        used = 0

        def hook(name: str, side: str) -> Callable[..., None]:
            def record(module: nn.Module, args: object, output: torch.Tensor) -> None:
                if side == "pruned" and not used:
                    calls.append(name)
                sums[name].add(side, module, output)
                if stop:
                    raise _Stop

            return record

        handles = []
        for name, (layer, parent) in pairs.items():
            handles.append(layer.register_forward_hook(hook(name, "pruned")))
            handles.append(parent.register_forward_hook(hook(name, "parent")))
        try:
            with torch.no_grad():
                for _, batch, n in stream(context.batches, images, context.rows, WHAT):
                    if used and deadline is not None and time.monotonic() >= deadline:
                        break
                    x = context.input(batch)[:n]  # the stream cuts the last batch to the image
                    for net in (model, context.parent):  # the parent is only read
                        with contextlib.suppress(_Stop):
                            net(x)
                    used += n
        finally:
            for h in handles:
                h.remove()
        return sums, calls, used

    @staticmethod
    def _correct(name: str, layer: nn.Module, sums: _Sums, context: RecoveryContext) -> float:
        """Add (parent's mean on the kept channels - pruned mean) to ``layer``'s bias; the
        mean absolute change."""
        if not sums.count["pruned"] or not sums.count["parent"]:
            raise PrunekitError(f"{WHAT}: {name!r} was not called by the forward pass")
        target, mean = sums.mean("parent"), sums.mean("pruned")
        kept = context.kept.get(name)
        if kept is not None:
            target = target.index_select(0, kept.to(target.device))
        shift = target.to(mean.device) - mean
        with torch.no_grad():
            layer.bias.add_(shift.to(layer.bias.dtype))
        return float(shift.abs().mean())
