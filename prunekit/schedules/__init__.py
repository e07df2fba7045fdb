"""Pruning schedules, registered by name (``prunekit list schedules``)."""

from prunekit.schedules import standard
from prunekit.schedules.base import Schedule
from prunekit.schedules.standard import AGP, Constant, Geometric, Linear, OneShot

__all__ = ["AGP", "Constant", "Geometric", "Linear", "OneShot", "Schedule", "standard"]
