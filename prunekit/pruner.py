"""The Pruner: score -> plan -> physically remove channels, step by step toward a target.

It composes the layers below it: a criterion and a schedule (looked up by name in their
registries) and the engine's mechanism (channel groups, the planner, measurement).
"""

from __future__ import annotations

import copy
import difflib
import inspect
import itertools
import warnings
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from typing import Annotated, Any, Literal

import torch
import torch.distributed as dist
from pydantic import Field
from tabulate import tabulate
from torch import nn

from prunekit.criteria.base import Criterion
from prunekit.engine.describe import Description, description
from prunekit.engine.groups import ROOT_TYPES, ChannelGroup, build_graph, find_groups
from prunekit.engine.integrity import Snapshot, check_runs, output_shapes
from prunekit.engine.latency_table import (
    Forecast,
    LatencyTable,
    LatencyTiming,
    Measure,
    build_table,
)
from prunekit.engine.measure import mac_positions
from prunekit.engine.persistence import remember_unpruned
from prunekit.engine.planner import CostModel, Limits, Plan, RoundTo, plan_global, plan_local
from prunekit.engine.target import TARGETS, Target
from prunekit.errors import PrunekitError
from prunekit.latency import resolve_runtime
from prunekit.registry import CRITERIA, SCHEDULES
from prunekit.schedules.base import Schedule
from prunekit.settings import Settings


class PruneSettings(Settings):
    """How far and how a :class:`Pruner` prunes (the ``prune`` section of a run's config)."""

    target: Target = Field(
        Target(params=0.4),
        description="What to remove, relative to the unpruned model: exactly one of `params`, "
        "`macs`, `channels`, a fraction strictly between 0 and 1 to remove, or `latency`, the "
        "ratio strictly between 0 and 1 of the parent's measured latency to keep "
        "(`{latency: 0.6}`: at most 60% of its time). Replaced whole by an override "
        "(`{macs: 0.3}` drops the default `params`).",
    )
    steps: int = Field(
        1, ge=1, description="Pruning steps; each one scores, prunes, recovers and evaluates."
    )
    scope: Literal["local", "global"] = Field(
        "local",
        description="`local`: every channel group loses the same fraction; `global`: the "
        "lowest-scoring units across all groups go first.",
    )
    rank: Literal["score", "per_cost"] = Field(
        "score",
        description="How `global` scope orders units: `score`, lowest score first; "
        "`per_cost`, lowest score per parameter (or MAC) it removes, so that a cheap-to-lose "
        "unit of a wide layer goes before a unit that saves little. A latency target always "
        "ranks per share of the time saved; `local` scope ignores this.",
    )
    round_to: Literal["auto"] | Annotated[int, Field(ge=1)] | None = Field(
        "auto",
        description="Keep a multiple of this many units in every pruned group; `auto` = 8 in "
        "groups of 64 units or more (fast kernels, see "
        "[Results](results.md#realized-speed-on-cpu)), `null` = no rounding.",
    )
    min_channels: int = Field(1, ge=1, description="Fewest units any group keeps.")
    prune_outputs: bool = Field(
        False,
        description="Also prune the channels of the model's output: for a network whose "
        "output is an embedding compared by cosine or distance (a face descriptor), never for "
        "class scores. Recovery then matches the parent's output on the kept features.",
    )


#: the Pruner's defaults, declared once by :class:`PruneSettings`
DEFAULT = PruneSettings()

#: a latency step is kept when its measured ratio is at most its goal and at most this much
#: below it (the promise: "at most 60%", landing within 3 points) ...
WINDOW = 0.03
#: ... or else undone and planned again with the corrected forecast, at most this often (or
#: until a correction would repeat a plan); the try that came nearest the window is then
#: planned once more and kept
CORRECTIONS = 4

Try = tuple[float, float]  # (the forecast's scale a plan was made with, its measured ratio)


def _miss(measured: float, goal: float) -> float:
    """How far a measured latency ratio lies outside its step's window (0 inside it)."""
    return max(measured - goal, goal - WINDOW - measured, 0.0)


def make_criterion(
    criterion: str | Criterion, seed: int = 0, options: dict[str, Any] | None = None
) -> Criterion:
    """A criterion instance from a registry name (+ options) or an instance."""
    if isinstance(criterion, Criterion):
        if options:
            raise PrunekitError("criterion options apply to a criterion name, not an instance")
        return criterion
    cls = CRITERIA.get(criterion)
    kwargs = dict(options or {})
    params = inspect.signature(cls).parameters
    if "seed" in params and "seed" not in kwargs:
        kwargs["seed"] = seed
    unknown = [k for k in kwargs if k not in params]
    if unknown and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        allowed = ", ".join(k for k in params if k != "self") or "none"
        raise PrunekitError(
            f"criterion {criterion!r} has no option {unknown[0]!r}: its options are {allowed}"
        )
    return cls(**kwargs)


def make_schedule(schedule: str | Schedule) -> Schedule:
    """A schedule instance from a registry name or an instance."""
    return schedule if isinstance(schedule, Schedule) else SCHEDULES.get(schedule)()


def resolve_layers(model: nn.Module, layers: Iterable[nn.Module | str]) -> list[nn.Module]:
    """The layers ``ignored_layers`` names, as modules of ``model`` with all their submodules.

    Each entry is a module of ``model`` itself or its name in ``model.named_modules()``;
    anything else (a copy's layer, a tensor, a mistyped name) would silently ignore nothing.
    Submodules are included because torch-pruning matches single layers: an ignored block
    would otherwise keep none of its channels.
    """
    model_name = type(model).__name__
    named = dict(model.named_modules())
    ours = {id(m) for m in named.values()}
    found: list[nn.Module] = []
    for i, layer in enumerate([layers] if isinstance(layers, (str, nn.Module)) else layers):
        if isinstance(layer, str):
            if layer not in named:
                close = difflib.get_close_matches(layer, [n for n in named if n], n=1)
                hint = f"did you mean {close[0]!r}?" if close else "see model.named_modules()"
                raise PrunekitError(f"ignored_layers: {model_name} has no layer {layer!r}; {hint}")
            layer = named[layer]
        elif not isinstance(layer, nn.Module):
            raise PrunekitError(
                f"ignored_layers[{i}] is a {type(layer).__name__}: give layers of {model_name} "
                "(modules) or their names (str)"
            )
        elif id(layer) not in ours:
            twins = [
                n for n, m in named.items() if type(m) is type(layer) and repr(m) == repr(layer)
            ]
            hint = f"did you mean {twins[0]!r}?" if twins else "pass a layer of the model itself"
            raise PrunekitError(
                f"ignored_layers[{i}] is a {type(layer).__name__} that is not part of "
                f"{model_name} (a copy of one of its layers?); {hint}"
            )
        found.extend(layer.modules())
    return list(dict.fromkeys(found))


@dataclass
class StepReport:
    """What one pruning step planned and achieved.

    ``planned`` holds the schedule's cumulative target fraction and the planner's predicted
    fractions; ``achieved`` the fractions measured on the pruned model (all relative to the
    unpruned model; with a latency target both hold ``latency``, the fraction of the parent's
    time removed). ``layers`` maps each conv/linear layer to ``[out_before, out_after]``;
    ``removed`` maps module names to the removed indices per side (``"out"``/``"in"``).
    ``predicted_latency`` and ``measured_latency`` are the pruned model's time as a ratio to
    the parent's, as the corrected latency table predicted it and as it was measured (None
    without a latency target).
    """

    step: int
    steps: int
    metric: str
    planned: dict[str, float]
    achieved: dict[str, float]
    params: int
    macs: int
    channels: int
    layers: dict[str, list[int]]
    removed: dict[str, dict[str, list[int]]] = field(repr=False)
    predicted_latency: float | None = None
    measured_latency: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain data for logs and checkpoints."""
        return asdict(self)

    def __str__(self) -> str:
        rows = [
            [m, f"{self.planned.get(m, float('nan')):.4f}", f"{self.achieved[m]:.4f}"]
            for m in TARGETS
            if m in self.achieved
        ]
        head = f"step {self.step}/{self.steps}: params={self.params:,} macs={self.macs:,}"
        if self.measured_latency is not None:
            head += (
                f" latency ratio={self.measured_latency:.3f} "
                f"(predicted {self.predicted_latency:.3f})"
            )
        changed = [[n, b, a] for n, (b, a) in self.layers.items() if b != a]
        table = tabulate(rows, headers=["removed", "planned", "achieved"], tablefmt="simple")
        layers = tabulate(changed, headers=["layer", "before", "after"], tablefmt="simple")
        return f"{head}\n{table}\n{layers}"


class Pruner:
    """Structured pruning of ``model`` toward ``target`` in ``steps`` iterations.

    Each :meth:`step` scores every unit with the criterion, asks the schedule how much of the
    target this step must reach, picks the units (within each layer for ``scope="local"``,
    across layers for ``"global"``) and physically removes them with every coupled layer.
    Gradient criteria need :meth:`accumulate` after each ``loss.backward()`` in between;
    activation criteria (``obs``) need forward passes inside :meth:`observing`.

    ``ignored_layers`` are modules of ``model`` or their names. Channel groups that cannot be
    pruned consistently are left whole with a warning; :attr:`left_whole` maps their root
    layers to the reason. A step whose pruned model does not run on ``example_inputs``, or
    returns other shapes, is undone and raises :class:`PrunekitError`.

    A ``latency`` target is timed as ``latency`` says (a :class:`LatencyTiming` mapping:
    ``batch_size``, ``repeats``, ``warmup``, ``threads``, ``device``, ...; default
    :mod:`prunekit.latency`'s settings on the model's device, with the example inputs). The
    Pruner builds (or reads from its cache) a latency table of the model, plans with it, and
    after each step times the pruned model against a copy of the parent, scaling the
    predicted savings by measured / predicted. A step is kept when it measures at most its
    goal and within :data:`WINDOW` below it; otherwise it is undone and planned again with the
    corrected forecast (:data:`CORRECTIONS` times at most; from the second time on with the
    scale interpolated between the tries that bracket the goal, after which the nearest try is
    kept), and the next step starts from the corrected forecast.
    ``measure`` replaces the timing (tests inject a deterministic one).
    """

    def __init__(
        self,
        model: nn.Module,
        example_inputs: Any,
        criterion: str | Criterion = "l1",
        schedule: str | Schedule = "linear",
        target: Target | str | dict = DEFAULT.target,
        steps: int = DEFAULT.steps,
        scope: str = DEFAULT.scope,
        rank: str = DEFAULT.rank,
        ignored_layers: Iterable[nn.Module | str] = (),
        round_to: RoundTo = DEFAULT.round_to,
        min_channels: int = DEFAULT.min_channels,
        seed: int = 0,
        criterion_options: dict[str, Any] | None = None,
        prune_outputs: bool = DEFAULT.prune_outputs,
        latency: Mapping[str, Any] | None = None,
        measure: Measure | None = None,
    ) -> None:
        self.settings = PruneSettings(
            target=Target.parse(target),
            steps=steps,
            scope=scope,
            rank=rank,
            round_to=round_to,
            min_channels=min_channels,
            prune_outputs=prune_outputs,
        )
        self.model = model
        self.target = self.settings.target
        self.criterion = make_criterion(criterion, seed, criterion_options)
        self.criterion_name = criterion if isinstance(criterion, str) else type(criterion).__name__
        self.schedule = make_schedule(schedule)
        self.schedule_name = schedule if isinstance(schedule, str) else type(schedule).__name__
        self.steps = steps
        self.scope = scope
        self.rank = rank
        self.limits = Limits(min_channels=min_channels, round_to=round_to)
        self.ignored_layers = resolve_layers(model, ignored_layers)
        self.prune_outputs = prune_outputs
        self.step_index = 0
        self.history: list[dict[str, Any]] = []
        #: output channels each pruned conv/linear layer keeps, as indices into the unpruned
        #: layer's outputs (what recovery compares with the parent network); unpruned layers
        #: are absent
        self.kept: dict[str, list[int]] = {}
        self._channel_plan: list[int] | None = None  # [channels removed before, total]
        self.example_inputs = example_inputs
        self.graph = build_graph(model, example_inputs)
        self.positions = mac_positions(model, example_inputs)
        #: what the model returns for the example inputs: every step must keep it
        self.outputs = None if prune_outputs else output_shapes(model, example_inputs)
        #: root layer -> why its channel group is left whole
        self.left_whole: dict[str, str] = {}
        self.groups = self._find_groups()
        for name, reason in self.left_whole.items():
            warnings.warn(f"prunekit leaves the channels of {name!r} whole: {reason}", stacklevel=2)
        remember_unpruned(model)  # what checkpoints of the pruned model fit
        #: unit count of every group before pruning (``round_to="auto"`` decides from it)
        self.widths = {g.name: g.num_units for g in self.groups}
        #: the unpruned output's features (dim 1 of a single tensor) and the channels of each
        #: layer reaching it: kept channels index output features only when the two agree
        shapes = output_shapes(model, example_inputs)
        self._output_width = shapes[1] if shapes and isinstance(shapes[0], int) else None
        self._output_layer_widths = {
            g.name: self._out_channels(model.get_submodule(g.name))
            for g in self.groups
            if g.reaches_output
        }
        #: the latency table and the forecast made from it (None without a latency target)
        self.latency_table: LatencyTable | None = None
        self._forecast: Forecast | None = None
        if self.target.metric == "latency":
            self._time_against_parent(latency, measure)
        elif latency is not None or measure is not None:
            raise PrunekitError(
                f"latency= and measure= time a latency target, but the target is {self.target}"
            )
        self.base = self._cost().totals()
        self._check_reachable()

    def _time_against_parent(
        self, latency: Mapping[str, Any] | None, measure: Measure | None
    ) -> None:
        """Keep a copy of the parent to time against, and build the latency table."""
        self.timing = LatencyTiming(**(latency or {}))
        # a missing runtime is refused here, not after minutes of building the table
        device = resolve_runtime(self.timing.runtime, self.timing.resolved_device(self.model))
        self._measure = measure or self.timing.measure(self.example_inputs, device)
        self.parent = copy.deepcopy(self.model)
        self.latency_table = build_table(
            self.model,
            self.groups,
            self.limits,
            self.widths,
            self._measure,
            self.timing.key(self.example_inputs, device),
            self.timing,
        )
        if self.latency_table.multiples is not None:  # measured for round_to="auto"
            self.limits = replace(self.limits, multiples=self.latency_table.multiples)
        self._forecast = Forecast(self.latency_table)

    # ------------------------------------------------------------------ state
    @property
    def done(self) -> bool:
        """Whether all steps have been taken."""
        return self.step_index >= self.steps

    @property
    def needs_grad(self) -> bool:
        """Whether the criterion needs :meth:`accumulate` calls before each step."""
        return self.criterion.needs_grad

    @property
    def needs_inputs(self) -> bool:
        """Whether the criterion needs forward passes inside :meth:`observing` before each step."""
        return self.criterion.needs_inputs

    @contextmanager
    def observing(self) -> Iterator[None]:
        """Within this block, forward passes of the model feed the criterion the inputs of the
        layers it watches (activation criteria; labels and gradients are not needed)."""
        criterion = self.criterion

        def feed(module: nn.Module, args: tuple[Any, ...]) -> None:
            criterion.observe(module, args[0])

        handles = [m.register_forward_pre_hook(feed) for m in criterion.observed(self.groups)]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def _out_channels(self, module: nn.Module) -> int:
        return self.graph.get_pruner_of_module(module).get_out_channels(module)

    @property
    def output_kept(self) -> list[int] | None:
        """The parent indices of the model output's remaining features (None while it is
        whole): the kept channels of the one layer whose channels the output is."""
        outputs = [g.name for g in self.groups if g.reaches_output]
        if not any(name in self.kept for name in outputs):
            return None
        if len(outputs) > 1:
            raise PrunekitError(
                f"the model output is made of the channels of {len(outputs)} layers "
                f"({', '.join(map(repr, outputs))}), so its kept features have no one order: "
                "set prune_outputs=False"
            )
        width = self._output_layer_widths[outputs[0]]
        if width != self._output_width:
            raise PrunekitError(
                f"the model output has {self._output_width} features but its prunable layer "
                f"{outputs[0]!r} had {width} channels (the output also holds other layers' "
                "channels, or several features per channel), so its kept channels are not "
                "output features: set prune_outputs=False"
            )
        return self.kept[outputs[0]]

    def describe(self) -> Description:
        """Every channel group (its layers, units, floor and rounding) and every layer left out
        of them with the reason; ``.as_dict()`` is JSON data (``prunekit inspect`` prints it)."""
        return description(
            self.graph, self.ignored_layers, self.limits, self.widths, self.prune_outputs
        )

    def state_dict(self) -> dict[str, Any]:
        """Plain data to resume pruning on a reloaded model (see :func:`prunekit.save`)."""
        return {
            "step_index": self.step_index,
            "steps": self.steps,
            "target": self.target.model_dump(),
            "scope": self.scope,
            "rank": self.rank,
            "criterion": self.criterion_name,
            "schedule": self.schedule_name,
            "base": dict(self.base),
            "widths": dict(self.widths),
            "channel_plan": self._channel_plan,
            "history": self.history,
            "kept": self.kept,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state`` (the model must already carry the pruned architecture).

        The state must come from a pruner with the same criterion, schedule, target, scope,
        rank and steps: resuming with other settings would silently prune another way.
        """
        ours = self.state_dict()
        for key in ("criterion", "schedule", "target", "scope", "rank", "steps"):
            if key in state and state[key] != ours[key]:
                raise PrunekitError(
                    f"the saved pruning state has {key} {state[key]!r} but this Pruner has "
                    f"{ours[key]!r}: resume with the settings it was started with"
                )
        self.step_index = int(state["step_index"])
        self.base = {k: int(v) for k, v in state["base"].items()}
        self.widths = {k: int(v) for k, v in state.get("widths", self.widths).items()}
        self._channel_plan = state.get("channel_plan")
        self.history = list(state.get("history", []))
        self.kept = {k: [int(i) for i in v] for k, v in state.get("kept", {}).items()}
        if self._forecast is not None and self.history:
            # the table was timed on this (pruned) model: its times relative to the parent's
            self._forecast = Forecast(self.latency_table, base=self._measured_ratio())

    # ------------------------------------------------------------------ scoring
    def accumulate(self) -> None:
        """Fold the current gradients into the criterion's statistics, then zero them."""
        self.criterion.accumulate(self.groups)
        for p in self.model.parameters():
            p.grad = None

    def all_reduce(self) -> None:
        """Sum the criterion's statistics over the processes of ``torch.distributed``'s default
        group, so that every data-parallel process prunes the same channels; call it before
        :meth:`step` (a no-op outside a process group)."""
        stats = self.criterion.statistics()
        if not stats or not (dist.is_available() and dist.is_initialized()):
            return
        device = torch.device("cuda") if dist.get_backend() == "nccl" else torch.device("cpu")
        flat = torch.cat([t.reshape(-1).double() for t in stats]).to(device)
        dist.all_reduce(flat)  # one message for all the statistics
        for t, summed in zip(stats, flat.cpu().split([t.numel() for t in stats]), strict=True):
            t.copy_(summed.view_as(t))

    # ------------------------------------------------------------------ pruning
    def _plan(
        self, cost: CostModel, scores: list[torch.Tensor], metric: str, amount: float
    ) -> Plan:
        if self.scope == "global":
            return plan_global(cost, scores, metric, amount, self.limits, self.rank == "per_cost")
        return plan_local(cost, scores, metric, amount, self.limits)

    def step(self) -> StepReport:
        """Prune this iteration's channels; returns planned vs achieved figures."""
        if self.done:
            raise PrunekitError(f"all {self.steps} steps are done: build a new Pruner to go on")
        n = self.step_index + 1
        layers_before = self._layer_channels()
        scores = self.criterion.scores(self.groups, self.step_index)
        channel_plan = self._channel_plan
        tries: list[Try] = []  # this step's plans, while none lands in the window
        last = False  # the nearest try planned again: kept whatever it measures
        for attempt in itertools.count():
            cost = self._cost()
            metric, amount, fraction = self._goal(n, cost, scores)
            plan = self._plan(cost, scores, metric, amount)
            predicted = self._fractions(cost.totals())
            scale = None if self._forecast is None else self._forecast.scale
            undo = Snapshot(self.graph)
            try:
                removed = self._execute(plan, n)
                measured = self._measure_latency(cost)
            except BaseException:  # a failed check, torch-pruning's own error, an interrupt
                undo.restore()
                self._channel_plan = channel_plan
                raise
            goal = 1.0 - fraction
            if metric != "latency" or _miss(measured, goal) == 0.0 or last:
                break
            tries.append((scale, measured))
            corrected = self._forecast.toward(tries, goal - WINDOW / 2)
            # a plan depends only on the scale: the same scale would time the same plan again
            if attempt < CORRECTIONS and corrected.scale != scale:
                self._forecast = corrected
            else:  # out of tries or of corrections: plan the nearest one again
                nearest = min(tries, key=lambda t: _miss(t[1], goal))
                if nearest is tries[-1]:
                    break
                self._forecast = replace(self._forecast, scale=nearest[0])
                last = True
            undo.restore()
        self._track_kept(removed, layers_before)
        self.criterion.reset()
        self.step_index = n
        self.groups = self._find_groups()
        # exact (the tests check it against measure()) and saves a forward pass
        now = self._cost().totals()
        achieved = self._fractions(now)
        if measured is not None:
            achieved["latency"] = 1.0 - measured
        layers_after = self._layer_channels()
        report = StepReport(
            step=n,
            steps=self.steps,
            metric=self.target.metric,
            planned={"target": fraction, **predicted},
            achieved=achieved,
            params=now["params"],
            macs=now["macs"],
            channels=now["channels"],
            layers={k: [v, layers_after.get(k, 0)] for k, v in layers_before.items()},
            removed=removed,
            predicted_latency=None if measured is None else 1.0 - predicted["latency"],
            measured_latency=measured,
        )
        self.history.append({"step": n, "planned": report.planned, "achieved": achieved})
        return report

    def _goal(
        self, n: int, cost: CostModel, scores: list[torch.Tensor]
    ) -> tuple[str, float, float]:
        """(metric, amount to remove now, cumulative planned fraction) for step ``n``."""
        metric, target = self.target.metric, self.target.fraction
        current = cost.totals()
        if self.schedule.space == "channels" and n < self.steps:
            done = self.base["channels"] - current["channels"]
            if self._channel_plan is None:
                # units the whole target needs by today's scores, spread evenly over the steps
                probe = self._cost()
                amount = current[metric] - (1 - target) * self.base[metric]
                plan = self._plan(probe, scores, metric, amount)
                self._channel_plan = [done, sum(len(u) for u in plan.values())]
            start, total = self._channel_plan
            want = start + round(total * n / self.steps)
            fraction = self.schedule.fraction(n, self.steps, target)
            return "channels", float(want - done), fraction
        fraction = target if n == self.steps else self.schedule.fraction(n, self.steps, target)
        amount = current[metric] - (1 - fraction) * self.base[metric]
        if metric == "latency":  # aim at the middle of the window a measured step is kept in
            amount += WINDOW / 2 * self.base[metric]
        return metric, amount, fraction

    def _measure_latency(self, cost: CostModel) -> float | None:
        """The pruned model's time as a ratio to the parent's, timed in interleaved rounds with
        it (None without a latency target); ``cost``, the plan's, is what was predicted, and
        the forecast is corrected by the difference."""
        if self._forecast is None:
            return None
        parent_ms, model_ms = self._measure(
            [self.parent, self.model], self.timing.batch_size, self.timing.repeats
        )
        measured = self._forecast.base * model_ms / parent_ms
        self._forecast = self._forecast.corrected(cost.latency(), measured)
        return measured

    def _measured_ratio(self) -> float:
        """The last step's measured latency ratio (1.0 before any step)."""
        return 1.0 - self.history[-1]["achieved"]["latency"] if self.history else 1.0

    def _execute(self, plan: Plan, n: int) -> dict[str, dict[str, list[int]]]:
        """Remove the planned units, then check that the model still runs on the example inputs
        and returns the same shapes; raises (the caller undoes the step) if not."""
        removed: dict[str, dict[str, list[int]]] = {}
        for g, units in sorted(plan.items()):
            try:
                pruned = self.groups[g].prune(sorted(units))
            except Exception as exc:
                first = str(exc).splitlines()[0] if str(exc) else ""
                what = f"torch-pruning failed ({type(exc).__name__}: {first})"
                raise self._broken(n, [self.groups[g].name], what) from exc
            for name, sides in pruned.items():
                for side, idxs in sides.items():
                    removed.setdefault(name, {}).setdefault(side, []).extend(idxs)
        problem = check_runs(self.model, self.example_inputs, self.outputs)
        if problem is not None:
            what, module = problem
            groups = [self.groups[g] for g in sorted(plan)]
            suspects = [g.name for g in groups if module in {s.module_name for s in g.slices}]
            raise self._broken(n, suspects or [g.name for g in groups], what)
        return removed

    def _broken(self, n: int, groups: list[str], what: str) -> PrunekitError:
        """The error of step ``n``, whose pruning of ``groups`` broke the model."""
        quoted = ", ".join(repr(g) for g in groups)
        return PrunekitError(
            f"step {n}: pruning the channels of {quoted} broke {type(self.model).__name__}: "
            f"{what}; torch-pruning did not follow its channels through some operation in "
            f"forward() (a slice, view or indexing, or one that reads the model's input?), so "
            f"the step was undone: add {quoted} to "
            "ignored_layers"
        )

    def _track_kept(self, removed: dict[str, dict[str, list[int]]], before: dict[str, int]) -> None:
        for name, sides in removed.items():
            if name in before and sides.get("out"):
                gone = set(sides["out"])
                current = self.kept.get(name, list(range(before[name])))
                self.kept[name] = [k for i, k in enumerate(current) if i not in gone]

    # ------------------------------------------------------------------ helpers
    def _find_groups(self) -> list[ChannelGroup]:
        self.left_whole = {}
        groups = find_groups(self.graph, self.ignored_layers, self.prune_outputs, self.left_whole)
        if not groups:
            whole = "".join(f"; {n!r} is left whole: {why}" for n, why in self.left_whole.items())
            raise PrunekitError(
                "nothing to prune: every channel group is ignored, left whole or reaches the "
                f"model output; check ignored_layers{whole}"
            )
        return groups

    def _cost(self) -> CostModel:
        return CostModel(self.model, self.groups, self.positions, self.widths, self._forecast)

    def _fractions(self, totals: dict[str, float]) -> dict[str, float]:
        return {m: 1.0 - totals[m] / self.base[m] if self.base[m] else 0.0 for m in totals}

    def _layer_channels(self) -> dict[str, int]:
        return {
            name: (m.out_channels if isinstance(m, nn.modules.conv._ConvNd) else m.out_features)
            for name, m in self.model.named_modules()
            if isinstance(m, ROOT_TYPES)
        }

    def _check_reachable(self) -> None:
        metric, target = self.target.metric, self.target.fraction
        cost = self._cost()
        times = cost.times or [None] * len(self.groups)
        for g, group in enumerate(self.groups):
            width = self.widths[group.name]
            kept = self.limits.kept_sequence(group.num_units, group.min_units, width, times[g])
            cost.remove(g, list(range(group.num_units - kept[-1])) if kept else [])
        reachable = 1.0 - cost.totals()[metric] / self.base[metric]
        if target > reachable + 1e-12 and metric == "latency":
            raise PrunekitError(
                f"target {self.target} is out of reach: at best latency={1 - reachable:.3f} "
                "of the parent's time, by its latency table (ignored layers, outputs and "
                "min_channels keep the rest); raise the ratio"
            )
        if target > reachable + 1e-12:
            raise PrunekitError(
                f"target {self.target} is out of reach: at most {metric}={reachable:.3f} can be "
                "removed (ignored layers, outputs and min_channels keep the rest); lower the target"
            )
