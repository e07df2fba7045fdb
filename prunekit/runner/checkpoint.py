"""Opening a checkpoint as a ready task and model, for ``prunekit eval`` and ``export``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

import prunekit as pk
from prunekit.errors import PrunekitError
from prunekit.registry import TASKS
from prunekit.runner.config import resolve, validate
from prunekit.runner.rundir import RunDir
from prunekit.tasks.base import Task


@dataclass
class Opened:
    """A checkpoint's model (eval mode, CPU) with the task it was trained for."""

    path: Path
    task: Task
    model: nn.Module
    meta: dict[str, Any]


def open_checkpoint(path: Path, task: str | None = None) -> Opened:
    """Load ``path`` (a checkpoint, or a run directory meaning its ``final.pt``).

    The task and its configuration come from the checkpoint's metadata; ``task`` names one for
    checkpoints saved without it (the task's default configuration is used then).
    """
    path = Path(path)
    if path.is_dir():
        path = RunDir(path).final
    meta = pk.read_checkpoint(path)["meta"]
    name = task or meta.get("task")
    if not name:
        known = ", ".join(TASKS.names())
        raise PrunekitError(f"{path} does not say which task it is for: pass --task ({known})")
    if "config" in meta and meta.get("task") == name:
        config = validate(meta["config"], f"{path} metadata")
    else:
        config = resolve(name)
    config = {**config, "device": "cpu"}
    instance = TASKS.get(name)(config, torch.device("cpu"))
    model = pk.load(path, instance.build_model()).eval()
    return Opened(path, instance, model, meta)
