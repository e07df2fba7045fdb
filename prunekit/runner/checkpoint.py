"""A run's checkpoints: what goes into one, how it comes back, and opening one for ``eval``.

A run checkpoint is a :func:`prunekit.save` file holding the network, the pruner's state, the
task's training state (:meth:`~prunekit.Task.state_dict`, stored under ``task.*`` keys), the RNG
state and the run's metadata (task, config, history). This module alone knows that layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

import prunekit as pk
from prunekit.errors import PrunekitError
from prunekit.registry import TASKS
from prunekit.runner.config import resolve, validate, with_data_root
from prunekit.runner.rundir import RunDir
from prunekit.runner.seeding import rng_state, set_rng_state
from prunekit.tasks.base import Task

TASK_PREFIX = "task."


def save_run(
    path: Path, model: nn.Module, task: Task, pruner: pk.Pruner | None, meta: dict[str, Any]
) -> None:
    """Write a run checkpoint; a failed write leaves earlier checkpoints intact."""
    extra = {TASK_PREFIX + k: v for k, v in task.state_dict().items()}
    try:
        pk.save(path, model, pruner=pruner, meta=meta, extra={**extra, **rng_state()})
    except OSError as exc:  # a full disk, a lost mount: pk.save left earlier files intact
        raise PrunekitError(
            f"cannot write checkpoint {path} ({exc.strerror or exc}): the run stopped and its "
            "earlier checkpoints are intact; free some disk space, then resume it"
        ) from exc


def restore_run(path: Path, model: nn.Module, task: Task, rng: bool = True) -> dict[str, Any]:
    """Load a run checkpoint into ``model`` (resized to its architecture) and ``task``; restore
    the RNG state too unless ``rng=False``. Returns the checkpoint's contents.

    A step checkpoint (``--resume``) and a baseline (``baseline.checkpoint``) alike must come
    from a model of the same shapes as ``model`` before pruning: :func:`prunekit.load` refuses
    another one (another width, say) before anything changes.
    """
    state = pk.read_checkpoint(path)
    pk.load(path, model)
    n = len(TASK_PREFIX)
    task.load_state_dict({k[n:]: v for k, v in state["extra"].items() if k.startswith(TASK_PREFIX)})
    if rng:
        set_rng_state(state["extra"])
    return state


@dataclass
class Opened:
    """A checkpoint's model (eval mode, CPU) with the task it was trained for."""

    path: Path
    task: Task
    model: nn.Module
    meta: dict[str, Any]


def open_checkpoint(path: Path, task: str | None = None, data: str | None = None) -> Opened:
    """Load ``path`` (a checkpoint, or a run directory meaning its ``final.pt``).

    The task and its configuration come from the checkpoint's metadata; ``task`` names one for
    checkpoints saved without it (the task's default configuration is used then). ``data``
    points the task at a data folder other than the one stored in the configuration.
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
    if data is not None:
        config = with_data_root(config, data)
    config = {**config, "device": "cpu"}
    instance = TASKS.get(name)(config, torch.device("cpu"))
    model = instance.build_model()
    restore_run(path, model, instance, rng=False)
    return Opened(path, instance, model.eval(), meta)
