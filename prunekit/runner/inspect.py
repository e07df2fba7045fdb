"""The model ``prunekit inspect`` describes: a task's, or one an importable factory returns.

A task brings its example inputs, ignored layers and ``prune`` settings (its configuration,
as ``prunekit run`` resolves it); a ``module:function`` factory gets random inputs of the given
shape and the :class:`~prunekit.PruneSettings` defaults.
"""

from __future__ import annotations

import difflib
import importlib
import os
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunekit.engine.describe import Description, description
from prunekit.engine.groups import build_graph
from prunekit.engine.planner import Limits
from prunekit.errors import PrunekitError
from prunekit.pruner import DEFAULT, resolve_layers
from prunekit.registry import TASKS
from prunekit.runner.config import resolve

#: the example input of a factory's model when no shape is given
INPUT_SHAPE = (1, 3, 224, 224)


def describe_task(
    name: str,
    config_file: str | Path | None = None,
    sets: list[str] | None = None,
    preset: str | None = None,
    data: str | Path | None = None,
) -> Description:
    """The channel groups of task ``name``'s model, configured as ``prunekit run`` would."""
    config = resolve(name, config_file, None, sets or (), preset=preset, data=data)
    task = TASKS.get(name)(config, "cpu")
    model = task.build_model()
    limits = Limits(config["prune"]["min_channels"], config["prune"]["round_to"])
    return _describe(model, task.example_inputs(), task.ignored_layers(model), limits)


def describe_factory(spec: str, input_shape: list[int] | None = None) -> Description:
    """The channel groups of the model ``module:function()`` returns, on random inputs."""
    model = _factory(spec)
    inputs = torch.randn(*(input_shape or INPUT_SHAPE))
    return _describe(model, inputs, [], Limits(DEFAULT.min_channels, DEFAULT.round_to))


def _describe(model: nn.Module, inputs: Any, ignored: list[Any], limits: Limits) -> Description:
    return description(build_graph(model, inputs), resolve_layers(model, ignored), limits)


def _factory(spec: str) -> nn.Module:
    """The model ``module:function()`` returns (the working folder is importable, as with
    ``python -m``)."""
    module_name, _, name = spec.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise PrunekitError(f"cannot import {module_name!r} ({type(exc).__name__}: {exc})") from exc
    factory = getattr(module, name, None)
    if not callable(factory):
        close = difflib.get_close_matches(name, [n for n in dir(module) if not n.startswith("_")])
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise PrunekitError(f"{module_name!r} has no function {name!r}{hint}")
    try:
        model = factory()
    except Exception as exc:
        raise PrunekitError(f"{spec}() failed ({type(exc).__name__}: {exc})") from exc
    if not isinstance(model, nn.Module):
        raise PrunekitError(
            f"{spec}() returned {type(model).__name__}, not an nn.Module: give a function that "
            "builds the model"
        )
    return model
