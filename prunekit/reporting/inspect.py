"""What ``prunekit inspect`` prints: a model's channel groups and the layers left out of them."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from prunekit.reporting.tables import Table
from prunekit.reporting.text import counted

if TYPE_CHECKING:
    from prunekit.engine.describe import Description

#: one JSON document, or two tables for people
FORMATS = ("plain", "github", "json")


def render(description: Description, fmt: str = "plain") -> str:
    """The description as ``plain`` or ``github`` tables, or as ``json``."""
    if fmt == "json":
        return json.dumps(description.as_dict(), indent=2) + "\n"
    groups, left_out = description.groups, description.left_out
    head = (
        f"{description.model}: {counted(len(groups), 'channel group')}, "
        f"{counted(len(left_out), 'layer')} left out"
    )
    parts = [head + "\n"]
    if groups:
        parts.append(groups_table(description).render(fmt))
    if left_out:
        parts.append(left_out_table(description).render(fmt))
    return "\n".join(parts)


def groups_table(description: Description) -> Table:
    """One row per layer of each group; the group's own cells on its first row only."""
    headers = ["group", "units", "min units", "round to", "layer", "type", "side"]
    rows, records = [], []
    for g in description.groups:
        for i, m in enumerate(g.members):
            own = [g.name, str(g.units), str(g.min_units), str(g.round_to)]
            rows.append([*(own if i == 0 else [""] * len(own)), m.layer, m.type, m.side])
            records.append(
                {
                    "group": g.name,
                    "units": g.units,
                    "min_units": g.min_units,
                    "round_to": g.round_to,
                    "layer": m.layer,
                    "type": m.type,
                    "side": m.side,
                }
            )
    note = "min units: the fewest a group may keep; round to: it keeps a multiple of this many"
    return Table(headers, rows, records, note)


def left_out_table(description: Description) -> Table:
    """One row per layer whose output channels no group removes, with the reason."""
    rows, records = [], []
    for x in description.left_out:
        reason = f"coupled with {x.via!r}: {x.reason}" if x.via else x.reason
        rows.append([x.layer, x.type, reason])
        records.append({"layer": x.layer, "type": x.type, "reason": x.reason, "via": x.via})
    return Table(["left out", "type", "reason"], rows, records)
