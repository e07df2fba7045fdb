"""The recovery interface and its driver: restore a pruned network's function cheaply.

A recovery method (``bn_recalibrate``, ``reconstruct``, ``distill``, ``finetune`` or a plugin
registered with ``@prunekit.registry.register_recovery``) works in place on the pruned model after
a pruning step, using the frozen unpruned parent and a few calibration batches. :func:`recover`
runs several of them in order under one :class:`Budget` and undoes any that breaks the weights.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn

from prunekit.errors import PrunekitError
from prunekit.recovery.budget import Budget
from prunekit.recovery.data import default_inputs, fingerprint
from prunekit.registry import RECOVERIES

OUTPUTS = ("embedding", "logits")
T = TypeVar("T")


def _quiet(message: str) -> None:
    """The default log: say nothing."""


def check_images(images: Any, where: str) -> int | None:
    """``images`` if it is None or an int >= 1; a one-line error naming ``where`` otherwise."""
    if images is None:
        return None
    if isinstance(images, bool) or not isinstance(images, int) or images < 1:
        raise PrunekitError(f"{where}: images={images!r} is out of range: give an int >= 1 or None")
    return images


def check_positive(value: Any, name: str, where: str) -> float:
    """``value`` as a float if it is a finite number > 0; a one-line error otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise PrunekitError(f"{where}: {name}={value!r} is out of range: give a number > 0")
    return float(value)


def _normalize_kept(kept: dict[str, Any] | None) -> dict[str, torch.Tensor]:
    """``kept`` as 1-D int64 CPU tensors, checked."""
    out = {}
    for name, idx in (kept or {}).items():
        t = torch.as_tensor(idx).detach().cpu()
        if t.dim() != 1 or t.dtype.is_floating_point or t.dtype == torch.bool or t.numel() == 0:
            raise PrunekitError(
                f"kept[{name!r}] must be a non-empty 1-D list or tensor of channel indices, "
                f"got {tuple(t.shape)} of {t.dtype}"
            )
        out[name] = t.long()
    return out


@dataclass
class RecoveryContext:
    """Everything a recovery method may use besides the model it repairs.

    ``parent``: the frozen unpruned network (never modified; eval mode; run it under
    ``torch.no_grad()``), None when no method needs it. ``batches()``: a fresh iterator of
    calibration batches on each call, in a deterministic order (labels are not needed).
    ``inputs(batch)``: the model input of a batch. ``outputs``: ``"embedding"`` or ``"logits"``
    (chooses the distillation loss). ``kept[name]``: for a conv/linear layer, the parent indices of
    its remaining output channels, in order (a missing name means all kept). ``output_kept``:
    the parent indices of the model output's remaining features, when the output itself was
    pruned (``Pruner.output_kept``; None: the output is whole). ``task``: a
    :class:`prunekit.Task` for ``finetune``. ``cache``: teacher outputs that live as long as this
    object, so a runner that keeps one context per run computes them once for every step.
    """

    parent: nn.Module | None
    batches: Callable[[], Iterable[Any]]
    inputs: Callable[[Any], torch.Tensor] = default_inputs
    outputs: str = "logits"
    kept: dict[str, torch.Tensor] = field(default_factory=dict)
    output_kept: torch.Tensor | None = None
    task: Any | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    log: Callable[[str], None] = _quiet
    cache: dict[Hashable, tuple[Any, Any]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.outputs not in OUTPUTS:
            raise PrunekitError(f"outputs={self.outputs!r} is unknown: use 'embedding' or 'logits'")
        self.kept = _normalize_kept(self.kept)
        if self.output_kept is not None:
            self.output_kept = _normalize_kept({"output": self.output_kept})["output"]
        self.device = torch.device(self.device)

    def input(self, batch: Any) -> torch.Tensor:
        """The model input of ``batch`` on :attr:`device`."""
        return self.inputs(batch).to(self.device)

    def rows(self, batch: Any) -> int:
        """How many images ``batch`` holds (rows of its model input)."""
        return int(self.inputs(batch).shape[0])

    def cached(self, key: Hashable, x: torch.Tensor, compute: Callable[[], T]) -> T:
        """``compute()`` for input ``x``, remembered under ``key`` until ``x``'s fingerprint
        changes (a different batch at the same index recomputes it)."""
        stamp = fingerprint(x)
        hit = self.cache.get(key)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        value = compute()
        self.cache[key] = (stamp, value)
        return value


@dataclass
class RecoveryReport:
    """What one method did in one :func:`recover` call."""

    method: str
    images: int
    seconds: float
    stats: dict[str, float]


class Recovery:
    """Base class of a recovery method: the plugin interface.

    Subclasses declare their options as keyword arguments of ``__init__`` (``images`` among them,
    passed on to this constructor: None means :attr:`default_images`) and implement :meth:`run`.
    ``needs_parent``: :meth:`run` uses ``context.parent``. ``needs_task``: it uses
    ``context.task``. :func:`recover` checks both before running anything. ``extra_training``:
    it trains the weights toward the task's own targets, training the baseline never had, so a
    fair comparison gives the baseline the same (``baseline.control``); distilling the parent
    does not count, since the parent distilled from itself stays what it is.
    """

    needs_parent: ClassVar[bool] = False
    needs_task: ClassVar[bool] = False
    extra_training: ClassVar[bool] = False
    default_images: ClassVar[int] = 256

    def __init__(self, images: int | None = None) -> None:
        self.images = check_images(images, type(self).__name__)

    def run(
        self, model: nn.Module, context: RecoveryContext, images: int, deadline: float | None
    ) -> dict[str, float]:
        """Repair ``model`` in place using at most ``images`` images, stopping between batches
        once ``time.monotonic()`` passes ``deadline``; leave it in eval mode and never touch
        ``context.parent``. Returns statistics, at least ``images``: the images actually used."""
        raise NotImplementedError


def _name_of(recovery: Recovery) -> str:
    """The registry name of ``recovery``'s class, else the class name."""
    for name in RECOVERIES.names():
        if RECOVERIES.get(name) is type(recovery):
            return name
    return type(recovery).__name__


def make_recovery(recovery: str | Recovery, options: dict[str, Any] | None = None) -> Recovery:
    """A recovery instance from a registry name (+ options checked against its signature) or an
    instance."""
    if isinstance(recovery, Recovery):
        if options:
            raise PrunekitError(
                f"options for {_name_of(recovery)!r} apply to a recovery name, not an instance: "
                "pass the options to its constructor"
            )
        return recovery
    if not isinstance(recovery, str):
        raise PrunekitError(
            f"recovery {recovery!r} is neither a name nor a Recovery: see `prunekit list`"
        )
    cls = RECOVERIES.get(recovery)
    params = {k: p for k, p in inspect.signature(cls).parameters.items() if k != "self"}
    kwargs = dict(options or {})
    unknown = [k for k in kwargs if k not in params]
    if unknown and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        allowed = ", ".join(params) or "none"
        raise PrunekitError(
            f"recovery {recovery!r} has no option {unknown[0]!r}: its options are {allowed}"
        )
    return cls(**kwargs)


def _methods(methods: str | Recovery | Sequence[str | Recovery]) -> list[str | Recovery]:
    if isinstance(methods, (str, Recovery)):
        return [methods]
    return list(methods)


def _batch_source(batches: Any) -> Callable[[], Iterable[Any]]:
    """``batches`` as a function returning a fresh iterator."""
    if batches is None:

        def missing() -> Iterable[Any]:
            raise PrunekitError("this recovery method needs calibration batches: pass batches=")

        return missing
    if callable(batches):
        return batches
    if iter(batches) is batches:
        raise PrunekitError(
            "batches is a one-shot iterator: pass a list, a DataLoader or a function "
            "returning a fresh iterator"
        )
    return lambda: iter(batches)


def _tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    return dict(model.named_parameters()) | dict(model.named_buffers())


def _non_finite(model: nn.Module) -> str | None:
    """Name of the first parameter or buffer holding NaN/inf, None when all are finite."""
    for name, t in _tensors(model).items():
        if (t.is_floating_point() or t.is_complex()) and not bool(torch.isfinite(t).all()):
            return name
    return None


def recover(
    model: nn.Module,
    parent: nn.Module | None,
    methods: str | Recovery | Sequence[str | Recovery],
    batches: Callable[[], Iterable[Any]] | Iterable[Any] | None = None,
    *,
    budget: Budget | None = None,
    options: dict[str, dict[str, Any]] | None = None,
    task: Any | None = None,
    outputs: str = "logits",
    kept: dict[str, Sequence[int] | torch.Tensor] | None = None,
    output_kept: Sequence[int] | torch.Tensor | None = None,
    inputs: Callable[[Any], torch.Tensor] | None = None,
    device: torch.device | str | None = None,
    log: Callable[[str], None] | None = None,
    context: RecoveryContext | None = None,
) -> list[RecoveryReport]:
    """Run recovery ``methods`` in order on the pruned ``model``; one report per method run.

    Each method gets ``min(its images option or default, what is left of budget.images)``
    images; the methods after the budget (images or seconds) is spent are skipped, with a log
    line. ``batches``: a list, a DataLoader or a function returning a fresh iterator.
    ``options``: per method name, its options. ``kept``: per conv/linear layer, the parent
    indices of its remaining output channels, e.g. ``Pruner.kept`` (the runner passes it); a
    missing layer means all kept, which is also the default, because shapes alone cannot say
    which channels survived. ``output_kept``: the same for the model's output features, when
    they were pruned (``Pruner.output_kept``). ``context``: a context from an earlier call
    whose teacher-output cache is reused (cleared when ``parent`` changes); its other fields
    are replaced by this call's arguments. A method that leaves NaN/inf in the weights, or
    raises, is undone before the error propagates.
    """
    budget = budget or Budget()
    chosen = _methods(methods)
    options = dict(options or {})
    names = [m if isinstance(m, str) else _name_of(m) for m in chosen]
    stray = [k for k in options if k not in names]
    if stray:
        raise PrunekitError(
            f"options given for {stray[0]!r}, which is not among the methods "
            f"({', '.join(names) or 'none'}): add it to the methods or drop its options"
        )
    instances = [make_recovery(m, options.get(n)) for m, n in zip(chosen, names)]
    if parent is model and parent is not None:
        raise PrunekitError(
            "parent is the pruned model itself: pass a copy of the unpruned network "
            "(copy.deepcopy(model) before pruning)"
        )
    for name, method in zip(names, instances):
        if method.needs_parent and parent is None:
            raise PrunekitError(f"recovery {name!r} needs the unpruned parent: pass parent=")
        if method.needs_task and task is None:
            raise PrunekitError(f"recovery {name!r} needs a task (for its loss): pass task=")
    if device is None:
        first = next(model.parameters(), None)
        device = first.device if first is not None else torch.device("cpu")
    fresh = RecoveryContext(
        parent=parent,
        batches=_batch_source(batches),
        inputs=inputs or default_inputs,
        outputs=outputs,
        kept=kept or {},
        output_kept=output_kept,
        task=task,
        device=device,
        log=log or _quiet,
    )
    if context is None:
        context = fresh
    else:
        if context.parent is not parent:
            context.cache.clear()
        for f in dataclasses.fields(fresh):
            if f.name != "cache":
                setattr(context, f.name, getattr(fresh, f.name))

    start = time.monotonic()
    deadline = start + budget.seconds if budget.seconds is not None else None
    left = budget.images
    reports = []
    parent_training = parent.training if parent is not None else False
    if parent is not None:
        parent.eval()
    try:
        for name, method in zip(names, instances):
            if left == 0 or (deadline is not None and time.monotonic() >= deadline):
                context.log(f"recovery: budget spent, skipping {name!r}")
                continue
            images = method.images or method.default_images
            if left is not None:
                images = min(images, left)
            reports.append(_run_one(name, method, model, context, images, deadline))
            if left is not None:
                left = max(0, left - reports[-1].images)
    finally:
        if parent is not None:
            parent.train(parent_training)
    return reports


def _run_one(
    name: str,
    method: Recovery,
    model: nn.Module,
    context: RecoveryContext,
    images: int,
    deadline: float | None,
) -> RecoveryReport:
    """Run one method, undoing it if it raises or leaves non-finite weights."""
    saved = {k: t.detach().clone() for k, t in _tensors(model).items()}

    def restore() -> None:
        with torch.no_grad():
            for k, t in _tensors(model).items():
                t.copy_(saved[k])
        model.eval()

    t0 = time.monotonic()
    try:
        stats = method.run(model, context, images, deadline)
    except BaseException:
        restore()
        raise
    seconds = time.monotonic() - t0
    bad = _non_finite(model)
    if bad is not None:
        restore()
        raise PrunekitError(
            f"recovery {name!r} diverged: it produced NaN/inf weights (first in {bad!r}); the "
            "model is restored to its state before it: lower its lr or drop the method"
        )
    used = int(stats.get("images", 0))
    report = RecoveryReport(name, used, seconds, dict(stats))
    details = ", ".join(f"{k}={v:.4g}" for k, v in report.stats.items() if k != "images")
    context.log(f"recovery {name}: {used} images in {seconds:.2f}s ({details})")
    return report
