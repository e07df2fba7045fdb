"""The user's cache folder, shared by prunekit and its plugins (decoded images, latency tables)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$PRUNEKIT_CACHE``, else ``~/.cache/prunekit``."""
    return Path(os.environ.get("PRUNEKIT_CACHE") or Path.home() / ".cache" / "prunekit")
