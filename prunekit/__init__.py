"""prunekit: dependency-graph-aware structured pruning for PyTorch.

>>> import prunekit as pk
>>> pruner = pk.Pruner(model, example_inputs, criterion="taylor", target=pk.Target(params=0.4))
"""

from prunekit import criteria, schedules  # noqa: F401  (registers the built-in names)
from prunekit.criteria.base import Criterion
from prunekit.engine import (
    ChannelGroup,
    Pruner,
    StepReport,
    Target,
    load,
    make_criterion,
    make_schedule,
    measure,
    read_checkpoint,
    save,
)
from prunekit.errors import PrunekitError
from prunekit.registry import (
    available,
    register_criterion,
    register_schedule,
    register_task,
    registry,
)
from prunekit.schedules.base import Schedule
from prunekit.tasks.base import Task

__version__ = "0.1.0"

__all__ = [
    "ChannelGroup",
    "Criterion",
    "PrunekitError",
    "Pruner",
    "Schedule",
    "StepReport",
    "Target",
    "Task",
    "available",
    "load",
    "make_criterion",
    "make_schedule",
    "measure",
    "read_checkpoint",
    "register_criterion",
    "register_schedule",
    "register_task",
    "registry",
    "save",
]
