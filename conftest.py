"""Shared fixtures: where the read-only real data lives, and tiny helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent


def shared_dir() -> Path | None:
    """``../shared`` beside the checkout (or ``$PRUNEKIT_SHARED``), if present."""
    path = Path(os.environ.get("PRUNEKIT_SHARED", ROOT.parent / "shared"))
    return path if (path / "data").is_dir() else None


@pytest.fixture
def shared() -> Path:
    """The shared data folder; skips when absent, fails in CI (CI=true) where it must exist."""
    path = shared_dir()
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but ../shared (or $PRUNEKIT_SHARED) is missing")
        pytest.skip("real data in ../shared is absent (set PRUNEKIT_SHARED to its path)")
    return path
