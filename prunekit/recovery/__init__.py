"""Recovery methods that restore a pruned network's function cheaply, registered by name
(``bn_recalibrate``, ``reconstruct``, ``distill``, ``finetune``; ``prunekit list``)."""

from prunekit.recovery import bn_recalibrate, distill, finetune, reconstruct
from prunekit.recovery.base import (
    Budget,
    Recovery,
    RecoveryContext,
    RecoveryReport,
    make_recovery,
    recover,
)
from prunekit.recovery.bn_recalibrate import BNRecalibrate
from prunekit.recovery.distill import Distill
from prunekit.recovery.finetune import Finetune
from prunekit.recovery.reconstruct import Reconstruct

__all__ = [
    "BNRecalibrate",
    "Budget",
    "Distill",
    "Finetune",
    "Reconstruct",
    "Recovery",
    "RecoveryContext",
    "RecoveryReport",
    "bn_recalibrate",
    "distill",
    "finetune",
    "make_recovery",
    "reconstruct",
    "recover",
]
