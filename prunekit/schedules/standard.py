"""The standard pruning schedules."""

from __future__ import annotations

from prunekit.registry import register_schedule
from prunekit.schedules.base import Schedule


@register_schedule("oneshot")
class OneShot(Schedule):
    """Everything at the first step; later steps only fine-tune."""

    def fraction(self, step: int, steps: int, target: float) -> float:
        return target


@register_schedule("linear")
class Linear(Schedule):
    """Cumulative removal linear in the step: target * step / steps."""

    def fraction(self, step: int, steps: int, target: float) -> float:
        return target * step / steps


@register_schedule("constant")
class Constant(Schedule):
    """The same number of channels every step (SqueezerFaceNet's "remove the N lowest")."""

    space = "channels"

    def fraction(self, step: int, steps: int, target: float) -> float:
        return target * step / steps


@register_schedule("geometric")
class Geometric(Schedule):
    """The same fraction of what remains every step: 1 - (1 - target)^(step / steps)."""

    def fraction(self, step: int, steps: int, target: float) -> float:
        return 1.0 - (1.0 - target) ** (step / steps)


@register_schedule("agp")
class AGP(Schedule):
    """Automated gradual pruning (Zhu & Gupta, 2017): target * (1 - (1 - step/steps)^3)."""

    def fraction(self, step: int, steps: int, target: float) -> float:
        return target * (1.0 - (1.0 - step / steps) ** 3)
