"""A latency table: the model's measured time as a function of each channel group's width.

MACs are the wrong cost where much of a forward pass is bound by activations (BatchNorm, ReLU,
pooling, concatenation scale with the channels kept, not with weights), so a latency target is
planned from measurements. For every prunable group the table holds the time of the model with
that group alone narrowed to a few widths (its lowest-index units physically removed from a
copy), as a ratio to the unnarrowed model timed in the same interleaved rounds; between measured
widths it is linear. A model with several groups narrowed is predicted by the product of their
ratios (:class:`Forecast`), which the Pruner then corrects by measuring the real model.

Linear interpolation cannot see steps between the measured widths: a runtime whose blocked
kernels want multiples of 16 runs an odd multiple of 8 through a slower path. So with
``round_to="auto"`` the build first measures which channel multiples the device and runtime
want (:func:`probe_multiples`) and the table, and the planner with it, keeps only those.

Building a table times ``groups x widths`` models, so it is bounded: the models are timed in
calls of :data:`MODELS_PER_CALL` (one unnarrowed model per call), with few repeats, at the
largest batch (``batch_size`` halved as often as needed) whose estimated build fits
``table_budget_s``. Tables are cached on disk under ``$PRUNEKIT_CACHE/latency`` (default
``~/.cache/prunekit/latency``), keyed by everything they depend on (device, runtime, threads,
batch, the model's architecture and example inputs); a file whose stored key differs is rebuilt,
never reused.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import platform
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from pydantic import Field
from torch import nn

from prunekit import atomic
from prunekit.cache import cache_dir as user_cache_dir
from prunekit.device import DeviceName, resolve_device
from prunekit.engine.groups import ChannelGroup
from prunekit.engine.integrity import Snapshot
from prunekit.errors import PrunekitError
from prunekit.latency import (
    MAX_COUNT,
    LatencySettings,
    cpu_cores,
    measure_latencies,
    runtime_version,
)

if TYPE_CHECKING:
    from prunekit.engine.planner import Limits

#: ``measure(models, batch_size, repeats)``: each model's time in ms (any unit, the same for
#: all), timed in interleaved rounds; tests inject a deterministic one
Measure = Callable[[Sequence[nn.Module], int, int], Sequence[float]]

#: the widths measured per group, as fractions of its width (plus its narrowest allowed one)
FRACTIONS = (0.75, 0.5, 0.25)
#: narrowed models timed in one call, beside the unnarrowed one (they are all in memory at once)
MODELS_PER_CALL = 8
#: a measurement moves a forecast's scale within this factor of the table's own prediction: a
#: larger disagreement is noise of the machine rather than an error of the table
SCALE_RANGE = 2.0
#: the largest channel multiple :func:`probe_multiples` may choose
MAX_MULTIPLE = 32
FORMAT = "prunekit-latency-table"
VERSION = 2


class LatencyTiming(LatencySettings):
    """How a latency target times models: :mod:`prunekit.latency`'s settings (``batch_size``,
    ``repeats``, ``warmup``, ``threads``: those of the check after every step), the device, and
    the bounds of the table's build."""

    device: DeviceName | None = Field(
        None, description="Where models are timed; `null` = the device of the model's weights."
    )
    table_repeats: int = Field(
        3, ge=1, le=MAX_COUNT, description="Timed rounds of each model of the latency table."
    )
    table_budget_s: float = Field(
        60.0,
        gt=0,
        description="Estimated seconds the table's build may take: its batch is halved from "
        "`batch_size` until the estimate fits (at least 1).",
    )

    def resolved_device(self, model: nn.Module) -> torch.device:
        """:attr:`device`, or where ``model``'s weights live (one line if CUDA is missing)."""
        if self.device is not None:
            return resolve_device(self.device)
        first = next(model.parameters(), None)
        return torch.device("cpu") if first is None else first.device

    def measure(self, example_inputs: Any, device: torch.device) -> Measure:
        """The real :data:`Measure`: :func:`prunekit.latency.measure_latencies`' medians."""

        def timed(models: Sequence[nn.Module], batch_size: int, repeats: int) -> list[float]:
            results = measure_latencies(
                models,
                example_inputs,
                batch_size=batch_size,
                threads=self.threads,
                repeats=repeats,
                warmup=self.warmup,
                device=device,
                runtime=self.runtime,
            )
            return [r["median_ms"] for r in results]

        return timed

    def key(self, example_inputs: Any, device: torch.device) -> dict[str, Any]:
        """What a table measured with these settings depends on, besides the model."""
        return {
            "device": device_name(device),
            "runtime": runtime_version(self.runtime),
            "threads": self.threads or torch.get_num_threads(),
            "batch_size": self.batch_size,
            "warmup": self.warmup,
            "table_repeats": self.table_repeats,
            "table_budget_s": self.table_budget_s,
            "inputs": _shapes(example_inputs),
        }


@dataclass(frozen=True)
class LatencyTable:
    """Per group name, measured ``(widths, ratios)``: the model's time with that group alone at
    each width, divided by the time of the model it was built on (1.0 at the full width)."""

    key: dict[str, Any]
    curves: dict[str, tuple[list[int], list[float]]]
    #: the batch the table was timed at (``batch_size`` or less, see ``table_budget_s``)
    batch_size: int
    #: seconds its build took
    build_s: float
    #: whether it was read from the cache rather than measured now
    cached: bool = False
    #: the channel multiples of narrow and wide groups measured by :func:`probe_multiples`
    #: (None when the build did not probe: an explicit ``round_to``)
    multiples: tuple[int, int] | None = None
    #: what the probe measured: ``"narrow/1"``, ``"wide/8"``... (class / multiple ``m``) ->
    #: the time ratio with the class's groups narrowed to odd multiples of ``m``
    probe: dict[str, float] = field(default_factory=dict)

    def times(self, group: str, units: int) -> list[float]:
        """The predicted time ratio with ``k`` units of ``group`` kept, for ``k`` in
        ``0..units``: linear between the measured widths, constant beyond them (and 1.0 for a
        group the table does not know: nothing is known to be saved by narrowing it)."""
        widths, ratios = self.curves.get(group, ([units], [1.0]))
        return np.interp(np.arange(units + 1), widths[::-1], ratios[::-1]).tolist()

    def as_json(self) -> str:
        """The cache file's text."""
        curves = {g: {"widths": w, "ratios": r} for g, (w, r) in self.curves.items()}
        data = {
            "format": FORMAT,
            "version": VERSION,
            "key": self.key,
            "batch_size": self.batch_size,
            "build_s": self.build_s,
            "groups": curves,
            "multiples": self.multiples,
            "probe": self.probe,
        }
        return json.dumps(data, indent=1, sort_keys=True)

    @classmethod
    def read(cls, path: Path, key: Mapping[str, Any]) -> LatencyTable | None:
        """The table cached in ``path`` if it holds one measured under ``key``, else None (a
        missing, damaged or foreign file)."""
        try:
            data = json.loads(path.read_text())
            if data["format"] != FORMAT or data["version"] != VERSION or data["key"] != key:
                return None
            curves = {
                g: ([int(w) for w in c["widths"]], [float(r) for r in c["ratios"]])
                for g, c in data["groups"].items()
            }
            multiples = data["multiples"]
            if multiples is not None:
                narrow, wide = (int(m) for m in multiples)
                multiples = (narrow, wide)
            probe = {str(k): float(v) for k, v in data["probe"].items()}
            batch, build_s = int(data["batch_size"]), float(data["build_s"])
            return cls(dict(key), curves, batch, build_s, True, multiples, probe)
        except (OSError, ValueError, KeyError, TypeError):
            return None


@dataclass(frozen=True)
class Forecast:
    """A model's time as a fraction of the unpruned parent's, predicted from a table.

    ``product`` is the product of the table's ratios at every group's kept width; its saving
    ``1 - product`` is scaled by ``scale`` (measured / predicted saving, set by the last
    measurement) and the result taken relative to ``base``, the time of the table's model as a
    fraction of the unpruned parent's (1.0 unless pruning resumed from a pruned model).
    """

    table: LatencyTable
    scale: float = 1.0
    base: float = 1.0

    def ratio(self, product: float) -> float:
        """The predicted time ratio of a model whose table ratios multiply to ``product``."""
        return self.base * (1.0 - self.scale * (1.0 - product))

    def corrected(self, predicted: float, measured: float) -> Forecast:
        """This forecast with its savings scaled by ``measured / predicted`` (the time ratios
        of one model to the unpruned parent's), so that it predicts ``measured`` for it."""
        saved = 1.0 - predicted / self.base
        if saved <= 0:  # nothing saved by the forecast's account: nothing to scale
            return self
        return self._scaled(self.scale * (1.0 - measured / self.base) / saved)

    def toward(self, tries: Sequence[tuple[float, float]], goal: float) -> Forecast:
        """This forecast with the scale at which a plan should measure ``goal``, by the secant
        through two ``(scale planned with, measured ratio)`` tries of a step: the nearest on
        either side of ``goal`` once tries bracket it (kept within the middle half of that
        bracket, as in a safeguarded regula falsi), else the last two. Where
        savings are not proportional to the table's, scaling by the last try alone swings
        between too much and too little. Unchanged with one try, or if the two do not order
        (noise)."""
        below = [t for t in tries if t[1] <= goal]
        above = [t for t in tries if t[1] > goal]
        bracketed = bool(below and above)
        if bracketed:
            pair = [max(below, key=lambda t: t[1]), min(above, key=lambda t: t[1])]
        else:
            pair = list(tries[-2:])
        if len(pair) < 2:
            return self
        (s1, m1), (s2, m2) = pair
        if (m2 - m1) * (s2 - s1) <= 0:  # a larger scale plans less, so measures slower
            return self
        scale = s2 + (goal - m2) * (s2 - s1) / (m2 - m1)
        if bracketed:  # within the middle half of the bracket: a noisy end cannot stall it
            lo, hi = sorted((s1, s2))
            scale = min(max(scale, lo + (hi - lo) / 4), hi - (hi - lo) / 4)
        return self._scaled(scale)

    def _scaled(self, scale: float) -> Forecast:
        return replace(self, scale=min(max(scale, 1.0 / SCALE_RANGE), SCALE_RANGE))


def cache_dir() -> Path:
    """Where tables are cached: ``latency/`` in the user's cache folder."""
    return user_cache_dir() / "latency"


def build_table(
    model: nn.Module,
    groups: Sequence[ChannelGroup],
    limits: Limits,
    widths: Mapping[str, int],
    measure: Measure,
    key: Mapping[str, Any],
    timing: LatencyTiming,
    cache: Path | None = None,
) -> LatencyTable:
    """The latency table of ``model``'s ``groups``, read from ``cache`` (default
    :func:`cache_dir`) when it holds one for ``key`` and this architecture, else measured with
    ``measure`` and stored there.

    ``limits`` (a :class:`~prunekit.engine.planner.Limits`) and ``widths`` (unit counts before
    pruning) choose the measured widths: allowed kept counts near :data:`FRACTIONS` of each
    group's width, and its narrowest allowed one; with ``round_to="auto"`` after the channel
    multiples that :func:`probe_multiples` measured (kept in the table).
    """
    probe = limits.round_to == "auto"
    full_key = {
        **key,
        "model": fingerprint(model, groups),
        "fractions": list(FRACTIONS),
        "probe": probe,
    }
    path = (cache or cache_dir()) / f"{_digest(full_key)}.json"
    found = LatencyTable.read(path, full_key)
    if found is not None:
        return found
    start = time.perf_counter()

    def widths_of(limits: Limits) -> list[tuple[ChannelGroup, int]]:
        return [
            (group, w)
            for group in groups
            for w in measured_widths(group, limits, widths.get(group.name, group.num_units))
        ]

    trials = _probe_trials(groups, limits, widths) if probe else []
    # the probe may coarsen the widths measured after it: the batch is sized before, on these
    batch = _table_batch(model, measure, timing, len(trials) + len(widths_of(limits)))
    multiples, probed = None, {}
    if probe:
        ratios = _ratios(
            model, [variant for _, _, variant in trials], measure, batch, timing.table_repeats
        )
        multiples, probed = probe_multiples(trials, ratios, limits)
        limits = replace(limits, multiples=multiples)
    variants = [(pair,) for pair in widths_of(limits)]
    curves = {g.name: ([g.num_units], [1.0]) for g in groups}
    for variant, ratio in zip(
        variants, _ratios(model, variants, measure, batch, timing.table_repeats), strict=True
    ):
        ((group, w),) = variant
        curve_widths, ratios = curves[group.name]
        curve_widths.append(w)
        ratios.append(ratio)
    build_s = round(time.perf_counter() - start, 3)
    table = LatencyTable(full_key, curves, batch, build_s, multiples=multiples, probe=probed)
    try:
        atomic.write_text(path, table.as_json())
    except (OSError, PrunekitError) as exc:
        warnings.warn(f"the latency table is not cached: {exc}", stacklevel=2)
    return table


#: ``(group, kept width)`` pairs narrowed together in one copy of the model
Variant = tuple[tuple[ChannelGroup, int], ...]
#: ``(wide class?, multiple m, the variant narrowing the class's groups to odd multiples of m)``
Trial = tuple[bool, int, Variant]


def probe_multiples(
    trials: Sequence[Trial], ratios: Sequence[float], limits: Limits
) -> tuple[tuple[int, int], dict[str, float]]:
    """The channel multiples ``round_to="auto"`` keeps for narrow and for wide groups
    (:meth:`Limits.wide`) on the device and runtime that timed ``trials``, and the ratios by
    ``"class/m"``.

    A trial narrows every group of a class at once to an odd multiple of ``m`` (for each ``m``
    from ``limits.multiples`` up to :data:`MAX_MULTIPLE`, see :func:`_probe_trials`); its
    ratio is its time over the unnarrowed model's. Where a copy runs no faster than the
    unnarrowed model, the channels it removed went for nothing (kernels padding back to a
    multiple of ``2m``, or a slower path with layout conversions: ONNX Runtime on this
    project's AVX2 CPU, see docs/results.md). A class keeps twice the largest such ``m``, else
    its default.
    """
    chosen = list(limits.multiples)
    probed = {}
    for (wide, m, _), ratio in zip(trials, ratios, strict=True):
        probed[f"{'wide' if wide else 'narrow'}/{m}"] = round(ratio, 4)
        if ratio >= 1.0:
            chosen[wide] = max(chosen[wide], 2 * m)
    return (chosen[0], chosen[1]), probed


def _probe_trials(
    groups: Sequence[ChannelGroup], limits: Limits, widths: Mapping[str, int]
) -> list[Trial]:
    """The variants :func:`probe_multiples` times: per class and multiple ``m``, every group of
    the class that can keep an odd multiple of ``m`` below its units narrowed to the largest."""
    trials: list[Trial] = []
    for wide in (False, True):
        m = limits.multiples[wide]
        while m < MAX_MULTIPLE:
            variant = []
            for group in groups:
                if limits.wide(widths.get(group.name, group.num_units)) != wide:
                    continue
                kept = (group.num_units - 1) // m
                kept = m * (kept if kept % 2 else kept - 1)
                if kept >= max(1, group.min_units, limits.min_channels):
                    variant.append((group, kept))
            if variant:
                trials.append((wide, m, tuple(variant)))
            m *= 2
    return trials


def _ratios(
    model: nn.Module, variants: Sequence[Variant], measure: Measure, batch: int, repeats: int
) -> list[float]:
    """Each variant's time as a ratio to ``model``'s, timed in calls of
    :data:`MODELS_PER_CALL` copies beside the unnarrowed model."""
    ratios: list[float] = []
    for at in range(0, len(variants), MODELS_PER_CALL):
        copies = [_narrowed(model, variant) for variant in variants[at : at + MODELS_PER_CALL]]
        parent, *times = measure([model, *copies], batch, repeats)
        ratios.extend(t / parent for t in times)
    return ratios


def measured_widths(group: ChannelGroup, limits: Limits, width: int) -> list[int]:
    """The kept counts a table measures for ``group`` (``width`` units before pruning), in
    decreasing order: the allowed ones nearest :data:`FRACTIONS` of its units, and the fewest."""
    n = group.num_units
    allowed = limits.kept_sequence(n, group.min_units, width)
    if not allowed:
        return []
    picked = {min(allowed, key=lambda k: (abs(k - n * f), k)) for f in FRACTIONS}
    return sorted(picked | {allowed[-1]}, reverse=True)


def fingerprint(model: nn.Module, groups: Sequence[ChannelGroup]) -> str:
    """A digest of ``model``'s architecture: its class, layers (``repr``) and channel groups
    with the parameter slices each unit owns (which traces forward()'s couplings)."""
    parts = [f"{type(model).__module__}.{type(model).__qualname__}", repr(model)]
    for g in groups:
        slices = ",".join(
            f"{s.module_name}.{s.param_name}/{s.dim}/{s.role}/{len(s.index)}" for s in g.slices
        )
        parts.append(f"{g.name}:{g.num_units}:{g.min_units}:{slices}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def device_name(device: torch.device) -> str:
    """The device timed on, as a table's key holds it (``cuda: NVIDIA H200``, ``cpu: <model>
    x2``): a table from another machine is not reused."""
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"cpu: {_cpu_model()} x{cpu_cores()}"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _table_batch(model: nn.Module, measure: Measure, timing: LatencyTiming, variants: int) -> int:
    """The largest of ``batch_size`` halved k times whose estimated build fits the budget.

    One timed pass at ``batch_size`` is taken as the time of every pass (narrowed models are
    faster), and halving the batch as halving the time.
    """
    batch = timing.batch_size
    (pass_ms,) = measure([model], batch, 1)
    calls = math.ceil(variants / MODELS_PER_CALL)
    passes = (variants + calls) * (timing.warmup + timing.table_repeats)
    while batch > 1 and passes * pass_ms / 1000.0 > timing.table_budget_s:
        batch //= 2
        pass_ms /= 2
    return batch


def _narrowed(model: nn.Module, variant: Variant) -> nn.Module:
    """A deep copy of ``model`` with each group's lowest-index units removed down to its width
    in ``variant``; ``model`` itself is left as it was."""
    undo = Snapshot(variant[0][0].graph)
    try:
        for group, width in variant:
            group.prune(list(range(group.num_units - width)))
        return copy.deepcopy(model)
    finally:
        undo.restore()


def _shapes(inputs: Any) -> Any:
    """The shapes and dtypes of example inputs, nested like them."""
    if isinstance(inputs, torch.Tensor):
        return [list(inputs.shape), str(inputs.dtype)]
    if isinstance(inputs, Mapping):
        return {str(k): _shapes(v) for k, v in inputs.items()}
    if isinstance(inputs, (list, tuple)):
        return [_shapes(v) for v in inputs]
    return repr(inputs)


def _digest(key: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
