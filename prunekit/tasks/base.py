"""The Task API: everything the runner needs to know about a problem, and nothing more.

A task supplies a model, its data, a loss, training and evaluation. The runner drives
score -> prune -> fine-tune -> evaluate and never looks inside. Register a task with
``@prunekit.register_task("name")`` or the ``prunekit.tasks`` entry-point group.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, ClassVar

import torch
from torch import nn
from tqdm import tqdm


class Task:
    """Base class of a pruning task.

    Subclasses must implement :meth:`build_model`, :meth:`example_inputs`,
    :meth:`train_batches`, :meth:`loss` and :meth:`evaluate`; every other hook has a sensible
    default. ``self.config`` is the fully resolved run configuration (a nested dict) and
    ``self.device`` the torch device the runner chose.
    """

    #: name of the metric that decides "better" (a key of :meth:`evaluate`'s result)
    primary_metric: ClassVar[str] = "accuracy"
    #: whether a larger primary metric is better
    higher_is_better: ClassVar[bool] = True
    #: allowed ranges of task-specific numeric config keys, ``{"train.lr": (0, None)}``
    #: (bounds are inclusive for integer keys, exclusive for float keys)
    config_ranges: ClassVar[dict[str, tuple[float | None, float | None]]] = {}
    #: named configurations over :meth:`default_config` (``prunekit run TASK --preset NAME``)
    presets: ClassVar[dict[str, dict[str, Any]]] = {}
    #: whether :meth:`progress` draws bars (the runner clears it for ``--quiet``)
    show_progress: bool = True

    def __init__(self, config: dict[str, Any], device: torch.device | str = "cpu") -> None:
        self.config = config
        self.device = torch.device(device)

    # ----------------------------------------------------------------- configuration
    @classmethod
    def default_config(cls) -> dict[str, Any]:
        """Task defaults (YAML-able); they override the runner's generic defaults."""
        return {}

    # ----------------------------------------------------------------- model
    def build_model(self) -> nn.Module:
        """A fresh, unpruned model (untrained unless the task loads weights in it)."""
        raise NotImplementedError

    def example_inputs(self) -> torch.Tensor:
        """One input batch (batch size 1) used to trace the dependency graph and count MACs."""
        raise NotImplementedError

    def ignored_layers(self, model: nn.Module) -> list[nn.Module]:
        """Layers whose output channels must never be pruned."""
        return []

    # ----------------------------------------------------------------- data and training
    def train_batches(self) -> Iterable[Any]:
        """One epoch of training batches."""
        raise NotImplementedError

    def score_batches(self) -> Iterable[Any]:
        """Batches used by gradient-based criteria; the training data by default."""
        return self.train_batches()

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        """Scalar training loss of ``model`` on ``batch``."""
        raise NotImplementedError

    def parameters(self, model: nn.Module) -> Iterator[nn.Parameter]:
        """Everything the optimiser updates: the model plus any training-only head."""
        return model.parameters()

    def make_optimizer(self, model: nn.Module, lr: float) -> torch.optim.Optimizer:
        """Optimiser for fine-tuning; rebuilt after every pruning step (shapes change)."""
        return torch.optim.SGD(self.parameters(model), lr=lr, momentum=0.9, weight_decay=5e-4)

    def train_epoch(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, float]:
        """One epoch of training; returns training statistics (mean loss at least)."""
        model.train()
        total, count = 0.0, 0
        for batch in self.progress(self.train_batches(), "train"):
            optimizer.zero_grad(set_to_none=True)
            loss = self.loss(model, batch)
            loss.backward()
            optimizer.step()
            total += float(loss.detach())
            count += 1
        return {"loss": total / max(count, 1)}

    def progress(self, batches: Iterable[Any], desc: str) -> Iterable[Any]:
        """``batches`` with a progress bar; wrap the data loops of custom hooks in it."""
        return tqdm(batches, desc=desc, leave=False, disable=not self.show_progress)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Training-only state to checkpoint with the model (e.g. a classifier head)."""
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore what :meth:`state_dict` returned."""

    # ----------------------------------------------------------------- evaluation
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Metrics of ``model``; must contain :attr:`primary_metric`."""
        raise NotImplementedError

    def describe_data(self) -> str:
        """One line saying what data the task runs on (shown at the start of a run)."""
        return ""

    # ----------------------------------------------------------------- baseline
    def prepare_baseline(self, model: nn.Module) -> str:
        """Bring ``model`` to its starting point (load weights or train); return how.

        The default trains for ``config["baseline"]["epochs"]`` epochs at
        ``config["baseline"]["lr"]``.
        """
        cfg = self.config.get("baseline", {})
        epochs, lr = int(cfg.get("epochs", 0)), float(cfg.get("lr", 0.01))
        optimizer = self.make_optimizer(model, lr)
        for _ in range(epochs):
            self.train_epoch(model, optimizer)
        return f"trained from scratch for {epochs} epochs"
