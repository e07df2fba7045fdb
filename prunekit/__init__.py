"""prunekit: dependency-graph-aware structured pruning for PyTorch.

>>> import prunekit as pk
>>> pruner = pk.Pruner(model, example_inputs, criterion="taylor", target=pk.Target(params=0.4))
"""

from prunekit import criteria, recovery, schedules  # noqa: F401  (registers the built-in names)
from prunekit.criteria.base import Criterion
from prunekit.engine import ChannelGroup, Target, load, measure, read_checkpoint, save
from prunekit.errors import PrunekitError
from prunekit.folding import FuseReport, fuse
from prunekit.pruner import Pruner, PruneSettings, StepReport, make_criterion, make_schedule
from prunekit.recovery import Budget, Recovery, RecoveryContext, RecoveryReport, recover
from prunekit.registry import (
    available,
    register_criterion,
    register_recovery,
    register_schedule,
    register_task,
    registry,
)
from prunekit.schedules.base import Schedule
from prunekit.settings import Settings
from prunekit.tasks.base import Task

__version__ = "0.2.0"

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
