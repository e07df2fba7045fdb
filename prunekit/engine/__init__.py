"""The pruning engine, pure mechanism: dependency groups, planning, measurement, persistence.

It knows nothing of criteria, schedules or tasks; :class:`prunekit.Pruner` composes them.
"""

from prunekit.engine.groups import ChannelGroup, ParamSlice
from prunekit.engine.measure import measure
from prunekit.engine.persistence import load, read_checkpoint, save
from prunekit.engine.target import Target

__all__ = [
    "ChannelGroup",
    "ParamSlice",
    "Target",
    "load",
    "measure",
    "read_checkpoint",
    "save",
]
