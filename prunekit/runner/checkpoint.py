"""A run's checkpoints: what goes into one, how it comes back, and opening one for ``eval``.

A run checkpoint is a :func:`prunekit.save` file holding the network, the pruner's state, the
task's training state (:meth:`~prunekit.Task.state_dict`, stored under ``task.*`` keys), the RNG
state and the run's metadata (task, config, history). This module alone knows that layout.

Before step 0 exists, :class:`EpochFile` keeps the baseline training's last epoch (the
:class:`~prunekit.tasks.base.EpochCheckpoint` of :meth:`~prunekit.Task.baseline_epochs`).
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import prunekit as pk
from prunekit import atomic
from prunekit.errors import PrunekitError
from prunekit.registry import TASKS
from prunekit.runner.config import resolve, validate, with_data_root
from prunekit.runner.rundir import RunDir
from prunekit.runner.seeding import rng_state, set_rng_state
from prunekit.tasks.base import Stateful, Task

TASK_PREFIX = "task."
_AFRESH = "ignored, the baseline trains from its start"


def save_run(
    path: Path, model: nn.Module, task: Task, pruner: pk.Pruner | None, meta: dict[str, Any]
) -> None:
    """Write a run checkpoint; a failed write leaves earlier checkpoints intact."""
    extra = {TASK_PREFIX + k: v for k, v in task.state_dict().items()}
    with _write_error(path):
        pk.save(path, model, pruner=pruner, meta=meta, extra={**extra, **rng_state()})


@contextlib.contextmanager
def _write_error(path: Path) -> Iterator[None]:
    """Turn a failed atomic write of checkpoint ``path`` into a one-line error."""
    try:
        yield
    except OSError as exc:  # a full disk, a lost mount: the atomic write left earlier files
        raise PrunekitError(
            f"cannot write checkpoint {path} ({exc.strerror or exc}): the run stopped and its "
            "earlier checkpoints are intact; free some disk space, then resume it"
        ) from exc


class EpochFile:
    """The baseline training's epoch checkpoint in a run directory: rank 0 writes ``path``
    (``write``) after every epoch, every rank reads it back when the baseline resumes.

    A file saved under another configuration (``baseline.lr`` changed in ``config.yaml``, say)
    or damaged is ignored, with a note: the baseline then trains from its start.
    """

    def __init__(
        self, path: Path, config: dict[str, Any], write: bool, note: Callable[[str], None]
    ) -> None:
        self.path, self.config, self.write, self.note = path, config, write, note

    def load(self, states: Mapping[str, Stateful]) -> int:
        if not self.path.is_file():
            return 0
        try:
            saved = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as exc:  # damaged bytes make torch.load raise nearly anything
            self.note(f"note: {self.path} is damaged ({type(exc).__name__}): {_AFRESH}")
            return 0
        if not (
            isinstance(saved, dict)
            and saved.get("config") == self.config
            and set(saved.get("states", ())) == set(states)
        ):
            self.note(f"note: {self.path} was saved under another configuration: {_AFRESH}")
            return 0
        for name, state in states.items():
            state.load_state_dict(saved["states"][name])
        _set_rng_states(saved["rng"])
        self.note(f"baseline: resuming its training after epoch {saved['epochs']} ({self.path})")
        return int(saved["epochs"])

    def save(self, epochs: int, states: Mapping[str, Stateful]) -> None:
        if not self.write:
            return
        saved = {
            "epochs": epochs,
            "config": self.config,
            "states": {name: state.state_dict() for name, state in states.items()},
            "rng": _rng_states(),
        }
        with _write_error(self.path):
            atomic.write_with(self.path, lambda fh: torch.save(saved, fh))


def discard_epochs(path: Path) -> None:
    """Delete the epoch file ``path``, and its folder if that is left empty: once step 0 holds
    the baseline, or when the baseline diverged (a run leaves no checkpoint of that)."""
    path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # not empty: the step checkpoints
        path.parent.rmdir()


def _rng_states() -> dict[str, Any]:
    """Every global RNG's state (torch's CPU and CUDA ones, NumPy's, Python's), loadable
    without unpickling objects."""
    _, key, pos, has_gauss, gauss = np.random.get_state()
    return {
        **rng_state(),
        "rng.cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        "rng.numpy": (torch.from_numpy(key.astype(np.int64)), pos, has_gauss, gauss),
        "rng.python": random.getstate(),
    }


def _set_rng_states(saved: dict[str, Any]) -> None:
    """Restore what :func:`_rng_states` returned."""
    set_rng_state(saved)
    if saved["rng.cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(saved["rng.cuda"])
    key, pos, has_gauss, gauss = saved["rng.numpy"]
    np.random.set_state(("MT19937", key.numpy().astype(np.uint32), pos, has_gauss, gauss))
    random.setstate(saved["rng.python"])


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
