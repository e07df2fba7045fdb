"""A run's overall progress across its baseline and steps, with the time it still needs.

Each step's record holds its wall time (scoring, pruning, recovery and evaluation), so the
estimate needs no clock of its own and survives a resume: the time so far is the sum of the
records' wall times, and each remaining step is estimated at the last step's time, the closest
in model size to those that follow (they shrink the model further and tend to get cheaper, so
the estimate errs on the long side).
"""

from __future__ import annotations

from typing import Any


def progress_line(history: list[dict[str, Any]], steps: int) -> str:
    """``progress: step 2/4 done, 9.5 min so far; about 8.2 min left (2 steps at ~4.1 min)``
    for the records in ``history`` (step 0 first) of a run of ``steps`` steps."""
    done = history[-1]["step"]
    spent = sum(r["wall_s"] for r in history)
    head = "baseline done" if done == 0 else f"step {done}/{steps} done"
    line = f"progress: {head}, {duration(spent)} so far"
    left = steps - done
    if left <= 0:
        return f"{line}; all steps done"
    if done == 0:
        return f"{line}; {left} steps to go, the time left is estimated after step 1"
    each = history[-1]["wall_s"]
    count = "1 step" if left == 1 else f"{left} steps"
    return f"{line}; about {duration(left * each)} left ({count} at ~{duration(each)})"


def duration(seconds: float) -> str:
    """``42 s``, ``9.5 min`` or ``1.3 h``: a time a user can plan with."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def time_split(record: dict[str, Any]) -> str:
    """``313 s: score 41 s, prune 2 s, recover 3.1 min, evaluate 18 s``: a record's wall time
    and where it went (phases under a second are left out), so a user sees what to cut."""
    phases = record.get("phases_s") or {}
    spent = [f"{name} {duration(s)}" for name, s in phases.items() if s >= 1.0]
    total = duration(record["wall_s"])
    return f"{total}: {', '.join(spent)}" if spent else total
