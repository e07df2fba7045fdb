"""The schedule interface: how much of the target to reach after each step."""

from __future__ import annotations

from typing import ClassVar


class Schedule:
    """Maps a step to the cumulative share of the target reached after it.

    ``fraction(step, steps, target)`` returns the cumulative fraction of the *model's metric*
    removed after ``step`` (1-based) of ``steps``; it must be non-decreasing and equal
    ``target`` at ``step == steps``. A schedule with ``space = "channels"`` instead spreads an
    equal *number of channels* over the steps (the engine converts), the last step landing on
    the target.
    """

    space: ClassVar[str] = "metric"

    def fraction(self, step: int, steps: int, target: float) -> float:
        raise NotImplementedError
