"""Keeping a pruning step from leaving a broken model behind.

torch-pruning follows channels through the traced operations of ``forward()``; where it maps
them wrongly, the pruned model no longer runs or returns other shapes. The Pruner therefore
runs every pruned model on the example inputs (:func:`check_runs`) and undoes a step that fails
(:class:`Snapshot`), which costs one forward pass per step and no copy of any weight.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch_pruning as tp
from torch import nn

from prunekit.engine.measure import forward


class Snapshot:
    """What pruning may change in a traced model, held by reference: every module's tensors and
    plain attributes (shapes, torch-pruning's bookkeeping of concat/split/slice operations).

    Pruning replaces tensors rather than editing them in place, so :meth:`restore` undoes it
    without having copied any weight; the graph's nodes of bare ``nn.Parameter``s, which
    pruning points at the new tensors, are put back too.
    """

    def __init__(self, graph: tp.DependencyGraph) -> None:
        ops = (m for m in graph.module2node if isinstance(m, nn.Module))
        modules = dict.fromkeys([*graph.model.modules(), *ops])
        self._saved = [
            (
                m,
                dict(m._parameters),
                dict(m._buffers),
                {
                    k: list(v) if isinstance(v, list) else v
                    for k, v in vars(m).items()
                    if not isinstance(v, dict)  # parameters, buffers, submodules, hooks
                },
            )
            for m in modules
        ]
        self._graph, self._nodes = graph, dict(graph.module2node)

    def restore(self) -> None:
        """Put every saved tensor and attribute back."""
        for module, params, buffers, attrs in self._saved:
            module._parameters.clear()
            module._parameters.update(params)
            module._buffers.clear()
            module._buffers.update(buffers)
            module.__dict__.update(attrs)
        self._graph.module2node.clear()
        self._graph.module2node.update(self._nodes)
        for module, node in self._nodes.items():
            node.module = module  # a bare parameter's node points at its pruned copy


def output_shapes(model: nn.Module, example_inputs: Any) -> Any:
    """The shapes of what ``model`` returns for the example inputs, nested like its output."""
    with _evaluating(model):
        return _shapes(forward(model, _to(example_inputs, _device(model))))


def check_runs(
    model: nn.Module, example_inputs: Any, expected: Any
) -> tuple[str, str | None] | None:
    """``None`` if ``model`` runs on the example inputs and returns the ``expected`` shapes
    (any shapes when ``expected`` is ``None``); else what went wrong and the failing module."""
    try:
        shapes = output_shapes(model, example_inputs)
    except Exception as exc:
        culprit = failing_module(model, _to(example_inputs, _device(model)))
        first = str(exc).splitlines()[0] if str(exc) else ""
        where = "its forward()" if culprit == type(model).__name__ else f"module {culprit!r}"
        return f"{where} fails on the example inputs ({type(exc).__name__}: {first})", culprit
    if expected is not None and shapes != expected:
        return f"its output changed shape from {expected} to {shapes}", None
    return None


def failing_module(model: nn.Module, example_inputs: Any) -> str | None:
    """Name of the innermost module whose forward raised on the example inputs, if any."""
    stack: list[str] = []
    failed: list[str] = []

    def leave(*_: Any) -> None:  # a forward hook that returned a value would replace the output
        stack.pop()

    handles = []
    for name, module in model.named_modules():
        handles.append(module.register_forward_pre_hook(lambda *_, n=name: stack.append(n)))
        handles.append(module.register_forward_hook(leave))
    try:
        with _evaluating(model):
            forward(model, example_inputs)
    except Exception:
        failed = list(stack)
    finally:
        for handle in handles:
            handle.remove()
    return (failed[-1] or type(model).__name__) if failed else None


@contextmanager
def _evaluating(model: nn.Module) -> Iterator[None]:
    """Eval mode (no BatchNorm statistics updates) without gradients, then the mode it had."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def _device(model: nn.Module) -> torch.device | None:
    return next((p.device for p in model.parameters()), None)


def _shapes(output: Any) -> Any:
    if isinstance(output, torch.Tensor):
        return list(output.shape)
    if isinstance(output, dict):
        return {k: _shapes(v) for k, v in output.items()}
    if isinstance(output, (list, tuple)):
        return [_shapes(v) for v in output]
    return None


def _to(inputs: Any, device: torch.device | None) -> Any:
    """``inputs`` (tensors, possibly in tuples, lists or dicts) on ``device``."""
    if device is None:
        return inputs
    if isinstance(inputs, torch.Tensor):
        return inputs.to(device)
    if isinstance(inputs, dict):
        return {k: _to(v, device) for k, v in inputs.items()}
    if isinstance(inputs, (list, tuple)):
        moved = [_to(v, device) for v in inputs]
        return moved if isinstance(inputs, list) else tuple(moved)
    return inputs
