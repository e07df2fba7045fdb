"""prunekit: dependency-graph-aware structured pruning for PyTorch.

>>> import prunekit as pk
>>> pruner = pk.Pruner(model, example_inputs, criterion="taylor", target=pk.Target(params=0.4))

The names that need torch are imported on first use, so that ``import prunekit`` (and the
command line's ``--help``) does not import it; the registries import the built-in criteria,
schedules and recoveries the first time they are looked up.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# light, and bound now: importing the module prunekit.registry later must not hide `registry`
from prunekit.errors import PrunekitError
from prunekit.registry import (
    available,
    register_criterion,
    register_recovery,
    register_schedule,
    register_task,
    registry,
)

if TYPE_CHECKING:
    from prunekit import criteria, recovery, schedules  # noqa: F401
    from prunekit.criteria.base import Criterion
    from prunekit.engine import ChannelGroup, Target, load, measure, read_checkpoint, save
    from prunekit.folding import FuseReport, fuse
    from prunekit.pruner import Pruner, PruneSettings, StepReport, make_criterion, make_schedule
    from prunekit.recovery import Budget, Recovery, RecoveryContext, RecoveryReport, recover
    from prunekit.schedules.base import Schedule
    from prunekit.settings import Settings
    from prunekit.tasks.base import Task

__version__ = "0.2.0"

#: module -> the public names it defines, imported on first access
_SOURCES = {
    "prunekit.criteria.base": ("Criterion",),
    "prunekit.engine": ("ChannelGroup", "Target", "load", "measure", "read_checkpoint", "save"),
    "prunekit.folding": ("FuseReport", "fuse"),
    "prunekit.pruner": ("Pruner", "PruneSettings", "StepReport", "make_criterion", "make_schedule"),
    "prunekit.recovery": ("Budget", "Recovery", "RecoveryContext", "RecoveryReport", "recover"),
    "prunekit.schedules.base": ("Schedule",),
    "prunekit.settings": ("Settings",),
    "prunekit.tasks.base": ("Task",),
}
_MODULES = {name: module for module, names in _SOURCES.items() for name in names}
_SUBPACKAGES = ("criteria", "recovery", "schedules")

__all__ = [
    "Budget",
    "ChannelGroup",
    "Criterion",
    "FuseReport",
    "PruneSettings",
    "PrunekitError",
    "Pruner",
    "Recovery",
    "RecoveryContext",
    "RecoveryReport",
    "Schedule",
    "Settings",
    "StepReport",
    "Target",
    "Task",
    "available",
    "fuse",
    "load",
    "make_criterion",
    "make_schedule",
    "measure",
    "read_checkpoint",
    "recover",
    "register_criterion",
    "register_recovery",
    "register_schedule",
    "register_task",
    "registry",
    "save",
]


def __getattr__(name: str) -> Any:
    """Import a public name (or a built-in subpackage) on first access."""
    if name in _SUBPACKAGES:
        return importlib.import_module(f"prunekit.{name}")
    if name not in _MODULES:
        raise AttributeError(f"module 'prunekit' has no attribute {name!r}")
    value = getattr(importlib.import_module(_MODULES[name]), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_MODULES, *_SUBPACKAGES})
