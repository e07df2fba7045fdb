"""Importance criteria, registered by name (``prunekit list criteria``)."""

from prunekit.criteria import bn_scale, norm, obs, random, taylor
from prunekit.criteria.base import Criterion, WeightCriterion
from prunekit.criteria.bn_scale import BNScale
from prunekit.criteria.norm import L1, L2
from prunekit.criteria.obs import OBS
from prunekit.criteria.random import Random
from prunekit.criteria.taylor import Taylor

__all__ = [
    "L1",
    "L2",
    "OBS",
    "BNScale",
    "Criterion",
    "Random",
    "Taylor",
    "WeightCriterion",
    "bn_scale",
    "norm",
    "obs",
    "random",
    "taylor",
]
