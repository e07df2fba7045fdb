"""The Task API: everything the runner needs to know about a problem, and nothing more.

A task supplies a model, its data, a loss, training and evaluation. The runner drives
score -> prune -> recover -> evaluate and never looks inside; every hook receives the bare
network (never a DistributedDataParallel wrapper). Register a task with
``@prunekit.register_task("name")`` or the ``prunekit.tasks`` entry-point group.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import torch
from torch import nn
from tqdm import tqdm

from prunekit.reporting.text import counted

if TYPE_CHECKING:
    from prunekit.settings import Settings


class Parallel(Protocol):
    """How a task trains in a data-parallel run (the runner supplies it; one process: as is)."""

    def shard(self, batches: Iterable[Any]) -> Iterable[Any]:
        """This process's share of an epoch's batches."""

    def wrap(self, model: nn.Module) -> nn.Module:
        """``model`` ready for a gradient step that averages over the processes."""


class SingleProcess:
    """:class:`Parallel` of a run in one process: every batch, the model as it is."""

    def shard(self, batches: Iterable[Any]) -> Iterable[Any]:
        return batches

    def wrap(self, model: nn.Module) -> nn.Module:
        return model


class Stateful(Protocol):
    """What a baseline's epoch checkpoint holds: a module, an optimiser, an LR scheduler, the
    task itself (its :meth:`Task.state_dict`)."""

    def state_dict(self) -> Mapping[str, Any]: ...

    def load_state_dict(self, state: Any) -> Any: ...


class EpochCheckpoint(Protocol):
    """Where :meth:`Task.baseline_epochs` keeps the baseline training's place between epochs
    (the runner supplies one that writes the run directory)."""

    def load(self, states: Mapping[str, Stateful]) -> int:
        """Restore ``states`` and the global RNGs from the last epoch saved; the number of
        epochs done then (0: nothing saved, everything left as it is)."""

    def save(self, epochs: int, states: Mapping[str, Stateful]) -> None:
        """Keep ``states`` and the global RNGs as they are after ``epochs`` epochs."""


class NoEpochCheckpoint:
    """:class:`EpochCheckpoint` that keeps nothing (outside a run): training starts over."""

    def load(self, states: Mapping[str, Stateful]) -> int:
        return 0

    def save(self, epochs: int, states: Mapping[str, Stateful]) -> None:
        pass


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
    #: the task's own config sections, declared as :class:`prunekit.settings.Settings`
    #: classes (``{"toy": ToySettings}`` makes ``toy.width`` a checked, documented key)
    sections: ClassVar[dict[str, type[Settings]]] = {}
    #: the dotted config key that ``--data DIR`` (or ``$PRUNEKIT_DATA``) sets, for tasks that
    #: read a data folder (``None``: the task reads none)
    data_key: ClassVar[str | None] = None
    #: what the model returns: ``"logits"`` (a classifier) or ``"embedding"``; recovery by
    #: distillation matches logits by KL divergence and embeddings by cosine similarity
    outputs: ClassVar[str] = "logits"
    #: named configurations over :meth:`default_config` (``prunekit run TASK --preset NAME``)
    presets: ClassVar[dict[str, dict[str, Any]]] = {}
    #: whether :meth:`progress` draws bars (the runner clears it for ``--quiet``)
    show_progress: bool = True
    #: how to train in a data-parallel run; the runner sets it (see :class:`Parallel`)
    parallel: Parallel = SingleProcess()
    #: where :meth:`baseline_epochs` checkpoints the baseline training after every epoch; the
    #: runner sets it (see :class:`EpochCheckpoint`)
    epoch_checkpoint: EpochCheckpoint = NoEpochCheckpoint()

    def __init__(self, config: dict[str, Any], device: torch.device | str = "cpu") -> None:
        self.config = config
        self.device = torch.device(device)

    # ----------------------------------------------------------------- configuration
    @classmethod
    def default_config(cls) -> dict[str, Any]:
        """Overrides of the declared defaults (generic keys and the task's own sections)."""
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

    def epoch_batches(self) -> Iterable[Any]:
        """This process's share of one epoch of :meth:`train_batches` (all of it in a run of one
        process); what the default training loop and scoring iterate."""
        return self.parallel.shard(self.train_batches())

    def score_batches(self) -> Iterable[Any]:
        """Batches used by gradient-based criteria; the training data by default."""
        return self.epoch_batches()

    def recovery_batches(self) -> Iterable[Any]:
        """Batches that recovery methods calibrate and distil on, in a fixed order (their
        labels, if any, are not needed); the training data by default."""
        return self.train_batches()

    def model_inputs(self, batch: Any) -> Any:
        """What the model takes from ``batch``: its first element for tuples and lists
        (``(images, labels)``), else the batch itself."""
        return batch[0] if isinstance(batch, (tuple, list)) else batch

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        """Scalar training loss of ``model`` on ``batch``."""
        raise NotImplementedError

    def outputs_pruned(self, kept: list[int]) -> None:
        """The model now returns only features ``kept`` (indices into the unpruned model's
        output) after a step with ``prune.prune_outputs``; a task whose loss reads the output
        through layers of its own (a classifier head) maps them back. The default does nothing."""

    def parameters(self, model: nn.Module) -> Iterator[nn.Parameter]:
        """Everything the optimiser updates: the model plus any training-only head."""
        return model.parameters()

    def make_optimizer(self, model: nn.Module, lr: float) -> torch.optim.Optimizer:
        """Optimiser for fine-tuning; rebuilt after every pruning step (shapes change)."""
        return torch.optim.SGD(self.parameters(model), lr=lr, momentum=0.9, weight_decay=5e-4)

    def train_epoch(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, float]:
        """One epoch of training; returns training statistics (mean loss at least)."""
        model = self.parallel.wrap(model)
        model.train()
        total, count = 0.0, 0
        for batch in self.progress(self.epoch_batches(), "train"):
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

    def provenance(self) -> dict[str, str | int]:
        """Where the data and the model come from, beyond the configuration: recorded in a
        run's first log record and shown in its reports.

        ``data`` and ``data.*`` keys describe the data (``prunekit eval`` refuses data that
        differ from a run's unless ``--data`` asks for them; see :func:`data_provenance`),
        ``model`` the origin of the weights. The default is :meth:`describe_data`'s line.
        """
        described = self.describe_data()
        return {"data": described} if described else {}

    # ----------------------------------------------------------------- baseline
    def prepare_baseline(self, model: nn.Module) -> str:
        """Bring ``model`` to its starting point (load weights or train); return how.

        The default trains for ``config["baseline"]["epochs"]`` epochs at
        ``config["baseline"]["lr"]``, checkpointing every epoch (see :meth:`baseline_epochs`).
        """
        cfg = self.config.get("baseline", {})
        epochs, lr = int(cfg.get("epochs", 0)), float(cfg.get("lr", 0.01))
        optimizer = self.make_optimizer(model, lr)
        for _ in self.baseline_epochs(epochs, model, optimizer):
            self.train_epoch(model, optimizer)
        return f"trained from scratch for {counted(epochs, 'epoch')}"

    def baseline_epochs(
        self, epochs: int, model: nn.Module, optimizer: torch.optim.Optimizer, *others: Stateful
    ) -> Iterator[int]:
        """``range(epochs)`` for a training loop of :meth:`prepare_baseline` that a resumed run
        continues instead of restarting.

        Each time the loop body finishes an epoch, the state of ``model``, ``optimizer``,
        ``others`` (an LR scheduler, say), the task (:meth:`state_dict`) and the global RNGs
        goes to :attr:`epoch_checkpoint`; after an interrupt, ``prunekit run --resume`` restores
        them and goes on with the next epoch, ending bit-identical to an uninterrupted run.
        Build all of them before the loop, exactly as an uninterrupted run does, and use it for
        one loop per baseline. A loop that does not use it trains from its start again.
        """
        states: dict[str, Stateful] = {"task": self, "model": model, "optimizer": optimizer}
        states.update({f"other.{i}": state for i, state in enumerate(others)})
        for epoch in range(self.epoch_checkpoint.load(states), epochs):
            yield epoch
            self.epoch_checkpoint.save(epoch + 1, states)


def data_provenance(provenance: Mapping[str, str | int]) -> dict[str, str | int]:
    """The entries of a :meth:`Task.provenance` that describe the data: ``data``, ``data.*``."""
    return {k: v for k, v in provenance.items() if k == "data" or k.startswith("data.")}
