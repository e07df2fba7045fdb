"""Fixtures of the face-data tests: an isolated cache folder and small image files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point $PRUNEKIT_CACHE at a temporary folder, so no test touches ~/.cache."""
    path = tmp_path / "cache"
    monkeypatch.setenv("PRUNEKIT_CACHE", str(path))
    return path


ImageWriter = Callable[..., Path]


@pytest.fixture
def write_image() -> ImageWriter:
    """``write_image(path, seed, size=(w, h), mode="L")``: save random pixels at ``path``."""

    def write(path: Path, seed: int, size: tuple[int, int] = (40, 30), mode: str = "L") -> Path:
        rng = np.random.default_rng(seed)
        shape = (size[1], size[0]) + (() if mode == "L" else (3,))
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path)
        return path

    return write
