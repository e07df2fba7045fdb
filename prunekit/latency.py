"""Inference latency: the wall-clock time of one forward pass of a batch, robustly summarised."""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from pydantic import Field
from torch import nn

from prunekit.device import MAX_THREADS, resolve_device
from prunekit.engine.measure import forward
from prunekit.settings import Settings

#: the largest batch or pass count a measurement takes (beyond it, torch overflows or the
#: measurement would never end)
MAX_COUNT = 100_000


class LatencySettings(Settings):
    """How latency is measured (the ``latency`` section of a run's config)."""

    batch_size: int = Field(
        32, ge=1, le=MAX_COUNT, description="Batch size of the latency measurement."
    )
    repeats: int = Field(
        9, ge=1, le=MAX_COUNT, description="Timed forward passes; the median is reported."
    )
    warmup: int = Field(
        2, ge=0, le=MAX_COUNT, description="Untimed forward passes before the timed ones."
    )
    threads: int | None = Field(
        None,
        ge=1,
        le=MAX_THREADS,
        description="CPU threads of the latency measurement; `null` = the run's `threads` "
        "(`compare --jobs N` sets it so that the baseline is timed like the runs).",
    )


DEFAULT = LatencySettings()


def measure_latency(
    model: nn.Module,
    example_inputs: Any,
    batch_size: int = DEFAULT.batch_size,
    threads: int | None = DEFAULT.threads,
    repeats: int = DEFAULT.repeats,
    warmup: int = DEFAULT.warmup,
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """``{"median_ms", "p10_ms", "p90_ms"}`` of a forward pass on ``batch_size`` samples.

    ``example_inputs`` (a tensor or a tuple/list/dict of tensors, batch size 1) are repeated to
    ``batch_size``. The model runs in eval mode under ``torch.inference_mode``; a model living on
    another device is copied, so the caller's model is never moved. ``threads`` sets torch's CPU
    thread count for the measurement only.
    """
    (result,) = measure_latencies(
        [model], example_inputs, batch_size, threads, repeats, warmup, device
    )
    return result


def measure_latencies(
    models: Sequence[nn.Module],
    example_inputs: Any,
    batch_size: int = DEFAULT.batch_size,
    threads: int | None = DEFAULT.threads,
    repeats: int = DEFAULT.repeats,
    warmup: int = DEFAULT.warmup,
    device: str | torch.device = "cpu",
) -> list[dict[str, float]]:
    """:func:`measure_latency` of several models, timed in interleaved rounds (one pass of
    each model per round), so that drifts of the machine (clock, other load) hit all alike and
    their ratios stay comparable."""
    LatencySettings(batch_size=batch_size, threads=threads, repeats=repeats, warmup=warmup)
    device = resolve_device(device)
    models = [_on(model, device) for model in models]
    inputs = _to_batch(example_inputs, batch_size, device)
    previous_threads = torch.get_num_threads()
    was_training = [model.training for model in models]
    if threads:
        torch.set_num_threads(threads)
    times: list[list[float]] = [[] for _ in models]
    try:
        with torch.inference_mode():
            for model in models:
                model.eval()
                for _ in range(warmup):
                    forward(model, inputs)
            for _ in range(repeats):
                for model, timed in zip(models, times, strict=True):
                    _synchronize(device)
                    start = time.perf_counter()
                    forward(model, inputs)
                    _synchronize(device)
                    timed.append((time.perf_counter() - start) * 1000.0)
    finally:
        torch.set_num_threads(previous_threads)
        for model, mode in zip(models, was_training, strict=True):
            model.train(mode)
    summaries = []
    for timed in times:
        p10, median, p90 = np.percentile(timed, [10, 50, 90])
        summaries.append({"median_ms": float(median), "p10_ms": float(p10), "p90_ms": float(p90)})
    return summaries


def _on(model: nn.Module, device: torch.device) -> nn.Module:
    first = next(model.parameters(), None)
    moved = first is not None and first.device != device
    return copy.deepcopy(model).to(device) if moved else model


def _to_batch(inputs: Any, batch_size: int, device: torch.device) -> Any:
    if isinstance(inputs, torch.Tensor):
        reps = -(-batch_size // inputs.shape[0])  # ceil division
        return torch.cat([inputs] * reps)[:batch_size].to(device)
    if isinstance(inputs, dict):
        return {k: _to_batch(v, batch_size, device) for k, v in inputs.items()}
    return type(inputs)(_to_batch(v, batch_size, device) for v in inputs)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
