"""Safe checkpoints: tensors plus a plain description of the pruned architecture.

Files are written atomically (temporary file, fsync, rename) and read with
``torch.load(weights_only=True)``, which refuses to unpickle arbitrary objects, so a checkpoint
from the internet cannot run code. :func:`load` rebuilds the pruned architecture into a freshly
built unpruned model by resizing its layers to the recorded shapes, once it has checked that the
model is the one the checkpoint's model was pruned from: every checkpoint records the tensor
shapes its model had before pruning (:func:`unpruned_shapes`).
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunekit import atomic
from prunekit.errors import PrunekitError

FORMAT = "prunekit-checkpoint"
VERSION = 2  # 2: records the unpruned shapes
#: where a model keeps its tensor shapes from before pruning (see :func:`unpruned_shapes`)
UNPRUNED = "_prunekit_unpruned"
#: where a model folded by :func:`prunekit.folding` keeps its ``[producer, BatchNorm]`` name pairs
FUSED = "_prunekit_fused"
#: layer attributes that pruning changes and that must be restored on load
ARCH_ATTRS = (
    "in_channels",
    "out_channels",
    "groups",
    "in_features",
    "out_features",
    "num_features",
    "num_parameters",
    "num_channels",
    "num_groups",
    "normalized_shape",
)
PLAIN = (str, int, float, bool, type(None))


def describe(model: nn.Module) -> dict[str, dict[str, Any]]:
    """``{module name: {"type": class name, "attrs": {...}}}`` for every layer with shape attrs."""
    arch = {}
    for name, module in model.named_modules():
        attrs = {a: getattr(module, a) for a in ARCH_ATTRS if hasattr(module, a)}
        if attrs:
            attrs = {k: list(v) if isinstance(v, tuple) else v for k, v in attrs.items()}
            arch[name] = {"type": type(module).__name__, "attrs": attrs}
    return arch


def unpruned_shapes(model: nn.Module) -> dict[str, list[int]]:
    """``{state_dict key: shape}`` of ``model`` before it was pruned: what a checkpoint fits.

    A Pruner records them when it is built and :func:`load` when it rebuilds a pruned
    architecture (:func:`remember_unpruned`); any other model is taken as unpruned.
    """
    recorded = model.__dict__.get(UNPRUNED)
    if recorded is not None:
        return recorded
    return {k: list(v.shape) for k, v in model.state_dict().items()}


def remember_unpruned(model: nn.Module) -> None:
    """Record the shapes of ``model`` as its unpruned ones, unless they are recorded already;
    call it before anything changes a shape."""
    model.__dict__.setdefault(UNPRUNED, unpruned_shapes(model))


def fold_layout(model: nn.Module, pairs: Sequence[Sequence[str]]) -> None:
    """Give each pair's producer a bias and put an ``nn.Identity`` in its BatchNorm's place.

    That is the layout :func:`prunekit.folding` leaves (it sets the folded weights itself);
    :func:`load` rebuilds it in a fresh model before loading a folded checkpoint. The pairs are
    recorded on ``model``, so that :func:`save` writes them.
    """
    modules = dict(model.named_modules())
    for producer_name, bn_name in pairs:
        producer, bn = modules[producer_name], modules[bn_name]
        if producer.bias is None:
            weight = producer.weight
            producer.bias = nn.Parameter(
                weight.new_zeros(weight.shape[0]), requires_grad=weight.requires_grad
            )
        parents = [(m, key) for m in model.modules() for key, c in m.named_children() if c is bn]
        for parent, key in parents:
            setattr(parent, key, nn.Identity())
    model.__dict__.setdefault(FUSED, []).extend([list(pair) for pair in pairs])


def _check_plain(value: Any, where: str) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise PrunekitError(f"{where} has a non-string key {k!r}: use plain data")
            _check_plain(v, f"{where}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_plain(v, f"{where}[{i}]")
    elif not isinstance(value, (*PLAIN, torch.Tensor)):
        raise PrunekitError(
            f"{where} holds a {type(value).__name__}: checkpoints store only tensors and "
            "plain data (str, int, float, bool, None, lists, dicts)"
        )


def save(
    path: str | os.PathLike,
    model: nn.Module,
    pruner: Any = None,
    meta: dict[str, Any] | None = None,
    extra: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Atomically write ``model`` (weights + pruned architecture), pruner state and metadata.

    ``extra`` carries other tensors (a training-only head, RNG states). The previous file at
    ``path`` stays intact if anything fails (a full disk, an interrupt).
    """
    path = Path(path)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "architecture": describe(model),
        "unpruned": unpruned_shapes(model),
        "fused": [list(pair) for pair in model.__dict__.get(FUSED, [])],
        "pruner": pruner.state_dict() if pruner is not None else None,
        "meta": dict(meta or {}),
        "extra": dict(extra or {}),
    }
    _check_plain(payload["meta"], "meta")
    _check_plain(payload["extra"], "extra")
    _check_plain(payload["pruner"], "pruner state")
    return atomic.write_with(path, lambda fh: torch.save(payload, fh))


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint's contents, loaded without unpickling any object.

    Raises :class:`PrunekitError` for a missing, truncated, foreign or unsafe file.
    """
    path = Path(path)
    if not path.is_file():
        raise PrunekitError(f"checkpoint {path} does not exist: check the path")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # torch's text advises weights_only=False: not here
        raise PrunekitError(
            f"checkpoint {path} holds objects other than tensors and plain data (a pickle "
            "payload?); refusing to load it: use a checkpoint written by prunekit.save"
        ) from None
    except Exception as exc:  # damaged bytes make torch.load raise nearly anything (fuzzed)
        raise PrunekitError(
            f"checkpoint {path} is truncated or corrupt ({type(exc).__name__}); "
            "use an earlier checkpoint or re-create it"
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise PrunekitError(f"{path} is not a prunekit checkpoint: save it with prunekit.save")
    data.setdefault("unpruned", {})  # version 1 files do not record it
    data.setdefault("fused", [])  # nor do files written before prunekit.folding existed
    for key in ("model", "architecture", "meta", "extra", "unpruned"):
        if not isinstance(data.get(key), dict):
            raise PrunekitError(
                f"checkpoint {path} is corrupt: its {key!r} is missing or not a mapping; use an "
                "earlier checkpoint or re-create it"
            )
    pairs = data["fused"]
    if not isinstance(pairs, list) or not all(
        isinstance(pair, list) and len(pair) == 2 and all(isinstance(n, str) for n in pair)
        for pair in pairs
    ):
        raise PrunekitError(
            f"checkpoint {path} is corrupt: its 'fused' is not a list of layer name pairs; use "
            "an earlier checkpoint or re-create it"
        )
    return data


def load(path: str | os.PathLike, model: nn.Module) -> nn.Module:
    """Rebuild the checkpoint's pruned architecture into ``model`` and load its weights.

    ``model`` is a freshly built *unpruned* model of the same architecture; it is modified in
    place and returned. A model of other layers, or of other tensor shapes than the checkpoint's
    model before pruning (another width, say), is refused before anything changes. The
    BatchNorms of a folded checkpoint (:func:`prunekit.folding`) are folded in ``model`` too.
    """
    data = read_checkpoint(path)
    arch = data["architecture"]
    modules = dict(model.named_modules())
    for producer, bn in data["fused"]:
        if not (
            isinstance(modules.get(bn), nn.modules.batchnorm._BatchNorm)
            and isinstance(modules.get(producer), (nn.modules.conv._ConvNd, nn.Linear))
        ):
            raise PrunekitError(
                f"checkpoint {path} does not fit {type(model).__name__}: it folded BatchNorm "
                f"{bn!r} into {producer!r}, but here those are not a BatchNorm and a convolution "
                "or linear layer; build the model the checkpoint was saved from"
            )
    folded = {bn for _, bn in data["fused"]}
    ours = {name: desc for name, desc in describe(model).items() if name not in folded}
    missing = sorted(set(arch) - set(ours)) or sorted(set(ours) - set(arch))
    if missing:
        raise PrunekitError(
            f"checkpoint {path} does not fit {type(model).__name__}: layer {missing[0]!r} is in "
            "one but not the other; build the model the checkpoint was saved from"
        )
    for name, desc in arch.items():
        module = modules[name]
        if type(module).__name__ != desc["type"]:
            raise PrunekitError(
                f"checkpoint {path} does not fit {type(model).__name__}: layer {name!r} is a "
                f"{desc['type']} there but a {type(module).__name__} here"
            )
    shapes = unpruned_shapes(model)
    for name, shape in data["unpruned"].items():
        if name in shapes and shapes[name] != shape:
            raise PrunekitError(
                f"checkpoint {path} does not fit {type(model).__name__}: tensor {name!r} is "
                f"{shape} there (before pruning) but {shapes[name]} here; build the model the "
                "checkpoint was saved from (the same settings, e.g. width)"
            )
    remember_unpruned(model)
    fold_layout(model, data["fused"])
    for name, desc in arch.items():
        for attr, value in desc["attrs"].items():
            setattr(modules[name], attr, tuple(value) if isinstance(value, list) else value)
    state = data["model"]
    for key, tensor in state.items():
        owner_name, _, leaf = key.rpartition(".")
        owner = modules.get(owner_name)
        current = getattr(owner, leaf, None) if owner is not None else None
        if isinstance(current, nn.Parameter):
            setattr(
                owner,
                leaf,
                nn.Parameter(
                    torch.empty_like(tensor, device=current.device),
                    requires_grad=current.requires_grad,
                ),
            )
        elif isinstance(current, torch.Tensor):
            owner._buffers[leaf] = torch.empty_like(tensor, device=current.device)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[1].strip() if "\n" in str(exc) else str(exc)
        raise PrunekitError(
            f"checkpoint {path} does not fit {type(model).__name__}: {first}"
        ) from None
    return model
