"""The control baseline: the unpruned network given the training recovery gave the pruned one.

A pruned network that fine-tuning trained for a few more epochs can beat an under-trained
baseline, and the comparison then credits pruning with what the training did. Recovery methods
that train on the task's own targets declare it (:attr:`prunekit.Recovery.extra_training`);
a run says how much of that training its steps got and, with ``baseline.control``, trains a copy
of the baseline the same way (step by step, same methods, options and budget) and reports it.
"""

from __future__ import annotations

from typing import Any

from prunekit.reporting import counted

#: the file of a run directory that holds the control's record
FILENAME = "control.json"


def extra_training(history: list[dict[str, Any]], trained: list[str]) -> dict[str, int]:
    """Images each method in ``trained`` used over the steps of ``history``."""
    used = dict.fromkeys(trained, 0)
    for record in history[1:]:
        for method in (record.get("recovery") or {}).get("methods", []):
            if method["method"] in used:
                used[method["method"]] += method["images"]
    return used


def control_note(
    history: list[dict[str, Any]],
    trained: list[str],
    control: dict[str, Any] | None,
    primary: str,
) -> str:
    """What the comparison with the baseline rests on: the pruned network's extra training,
    and the control baseline's result or a plain word that it was not run; empty without extra
    training."""
    used = {m: n for m, n in extra_training(history, trained).items() if n}
    if not used:
        return ""
    steps = counted(len(history) - 1, "step")
    spent = ", ".join(f"{m} {counted(n, 'image')}" for m, n in used.items())
    head = (
        f"Recovery trained the pruned network beyond the baseline's training: {spent} over {steps}."
    )
    if control is None:
        return (
            f"{head} The baseline was not given that training (a control was not run: "
            "`--set baseline.control=true` runs one), so a step that beats the baseline may owe "
            "it to the extra training rather than to pruning."
        )
    baseline = history[0]["metrics"][primary]
    value = control["metrics"][primary]
    return (
        f"{head} Control: the baseline given the same training measures {primary} "
        f"{value:.4f} ({value - baseline:+.4f} against the baseline's {baseline:.4f}); compare "
        "the pruned steps with it."
    )
