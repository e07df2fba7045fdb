"""The pruning engine: dependency groups, planning, physical removal, persistence."""

from prunekit.engine.groups import ChannelGroup, ParamSlice
from prunekit.engine.measure import measure
from prunekit.engine.persistence import load, read_checkpoint, save
from prunekit.engine.pruner import Pruner, StepReport, make_criterion, make_schedule
from prunekit.engine.target import Target

__all__ = [
    "ChannelGroup",
    "ParamSlice",
    "Pruner",
    "StepReport",
    "Target",
    "load",
    "make_criterion",
    "make_schedule",
    "measure",
    "read_checkpoint",
    "save",
]
