"""Wording shared by the console, the reports and the tasks: counts and provenance."""

from __future__ import annotations

from collections.abc import Mapping


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """``1 epoch``, ``30 epochs``, ``6,000 pairs``: a count with its noun, singular or plural
    (``plural`` for nouns that take no plain ``s``: ``identities``)."""
    return f"{count:,} {noun if count == 1 else plural or noun + 's'}"


def provenance_items(provenance: Mapping[str, str | int]) -> list[str]:
    """``key: value`` for every entry of a run's provenance, in order (counts with commas)."""
    return [
        f"{key}: {value:,}" if isinstance(value, int) else f"{key}: {value}"
        for key, value in provenance.items()
    ]
