"""How much recovery a pruning step may spend: images processed and wall-clock seconds."""

from __future__ import annotations

from pydantic import Field

from prunekit.settings import Settings


class Budget(Settings):
    """The recovery budget of one pruning step, shared by its methods in order."""

    images: int | None = Field(
        None,
        ge=1,
        description="Images the recovery methods of one step may process together (an image "
        "seen twice counts twice); `null` = each method's own default.",
    )
    seconds: float | None = Field(
        None, gt=0, description="Wall-clock cap of one step's recovery; `null` = none."
    )
