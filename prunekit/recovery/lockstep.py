"""Forward passes that halt at chosen layers, so that layer-by-layer methods pay one pass.

Layer-wise reconstruction needs, for every layer in forward order, the layer's input in the
pruned network *after* its predecessors were refitted. Re-running the network up to each layer
costs a forward pass per layer (quadratic in depth). A :class:`HaltingForward` runs ``model(x)``
in a worker thread that stops at each watched layer's hook and hands the tensor over; the caller
refits the layer and lets the pass go on, so the whole refit costs one forward pass per batch.
Only one thread computes at a time: the worker and the caller hand control to each other.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from prunekit.errors import PrunekitError

_HOOKED = threading.local()  # the HaltingForward that owns the current worker thread


class _Stop(BaseException):
    """Raised inside a worker to end its forward pass early (a BaseException, so that a model's
    own ``except Exception`` cannot swallow it)."""


class HaltingForward:
    """``model(x)`` under ``torch.no_grad()``, halted at each of ``layers``.

    ``side="input"`` hands over a layer's first positional input before the layer runs (its
    weights may still be changed), ``"output"`` its output. Create at most a few hundred at once:
    each holds its batch's live activations while halted. Use :func:`watch` to install the hooks
    that every halting pass of a model shares.
    """

    def __init__(self, model: nn.Module, x: torch.Tensor) -> None:
        self._resume: queue.Queue[bool] = queue.Queue()
        self._handed: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._done = False
        self._thread = threading.Thread(target=self._work, args=(model, x), daemon=True)
        self._thread.start()

    def _work(self, model: nn.Module, x: torch.Tensor) -> None:
        _HOOKED.owner = self
        try:
            if not self._resume.get():
                return
            with torch.no_grad():
                model(x)
            self._handed.put(("done", None))
        except _Stop:
            self._handed.put(("done", None))
        except BaseException as error:  # handed to the caller, who re-raises it
            self._handed.put(("error", error))

    def _halt(self, module: nn.Module, tensor: torch.Tensor) -> None:
        """Called by a hook in the worker: hand ``tensor`` over and wait to be resumed."""
        self._handed.put(("layer", (module, tensor)))
        if not self._resume.get():
            raise _Stop

    def until(self, module: nn.Module) -> torch.Tensor:
        """Run on to ``module``'s hook and return its tensor; the pass waits there."""
        if self._done:
            raise PrunekitError("reconstruct: a layer was asked for after its forward pass ended")
        self._resume.put(True)
        kind, value = self._handed.get()
        if kind == "error":
            self._done = True
            raise value
        if kind == "done":
            self._done = True
            raise PrunekitError(
                "reconstruct: a layer seen in the first forward pass was not called by a later "
                "one: the model's control flow depends on its input"
            )
        reached, tensor = value
        if reached is not module:
            self.close()
            raise PrunekitError(
                "reconstruct: the model called its layers in another order than in the first "
                "forward pass: its control flow depends on its input"
            )
        return tensor

    def close(self) -> None:
        """End the pass (where it waits) and wait for the worker."""
        if not self._done:
            self._done = True
            self._resume.put(False)
        self._thread.join()


def _pre(module: nn.Module, args: tuple[Any, ...]) -> None:
    owner = getattr(_HOOKED, "owner", None)
    if owner is not None:
        owner._halt(module, args[0])


def _post(module: nn.Module, args: object, output: torch.Tensor) -> None:
    owner = getattr(_HOOKED, "owner", None)
    if owner is not None:
        owner._halt(module, output)


def watch(layers: Sequence[nn.Module], side: str) -> list[torch.utils.hooks.RemovableHandle]:
    """Hooks that halt every :class:`HaltingForward` at ``layers`` (their input or output);
    other callers of the model, in other threads, pass through them untouched. Remove the
    returned handles when done."""
    if side == "input":
        return [m.register_forward_pre_hook(_pre) for m in layers]
    return [m.register_forward_hook(_post) for m in layers]
