"""Reproducibility: seeding every RNG, deterministic kernels, RNG state for checkpoints."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global RNGs (CUDA included)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextmanager
def torch_settings(threads: int | None) -> Iterator[None]:
    """Deterministic kernels and ``threads`` CPU threads within the block, restored after it
    (so calling the runner from Python leaves the caller's settings alone)."""
    saved = (
        torch.get_num_threads(),
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
    )
    if threads:
        torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)  # some CUDA ops have none
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.set_num_threads(saved[0])
        torch.use_deterministic_algorithms(saved[1], warn_only=saved[2])
        torch.backends.cudnn.benchmark = saved[3]


def rng_state() -> dict[str, torch.Tensor]:
    """torch's CPU RNG state, as a checkpoint ``extra`` entry."""
    return {"rng.torch": torch.get_rng_state()}


def set_rng_state(extra: dict[str, torch.Tensor]) -> None:
    """Restore what :func:`rng_state` saved (no-op for checkpoints without it)."""
    if "rng.torch" in extra:
        torch.set_rng_state(extra["rng.torch"])
