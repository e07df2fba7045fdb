"""Which torch device a name means: the one rule for ``auto``, ``cpu`` and ``cuda``."""

from __future__ import annotations

from typing import Literal

import torch

from prunekit.errors import PrunekitError

#: the most torch CPU threads a run may ask for (torch overflows on absurd counts)
MAX_THREADS = 1024

#: the device names a configuration or a command accepts
DeviceName = Literal["auto", "cpu", "cuda"]


def resolve_device(name: str | torch.device) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; asking for missing CUDA is an error."""
    if isinstance(name, torch.device):
        name = name.type
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name not in ("cpu", "cuda"):
        raise PrunekitError(f"device {name!r} is unknown: choose auto, cpu or cuda")
    if name == "cuda" and not torch.cuda.is_available():
        raise PrunekitError("device 'cuda' was requested but CUDA is not available: use cpu")
    return torch.device(name)
