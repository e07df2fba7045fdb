"""Inference latency: the wall-clock time of one forward pass of a batch, robustly summarised.

A pass that waits for CPU time measures the queue, not the model: the measurement uses no more
threads than the machine has free cores, records the load around it, and :func:`reliability`
says when its numbers cannot be trusted.

The passes run on torch eager or, as many models are deployed, on ONNX Runtime: each model is then
exported once, its BatchNorms folded, and timed in an ONNX Runtime session.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from prunekit.allocator import keeps_freed_memory
from prunekit.device import MAX_THREADS, resolve_device
from prunekit.engine.measure import forward
from prunekit.errors import PrunekitError
from prunekit.folding import fuse
from prunekit.reporting.text import counted
from prunekit.settings import Settings

if TYPE_CHECKING:
    from onnxruntime import InferenceSession

#: the largest batch or pass count a measurement takes (beyond it, torch overflows or the
#: measurement would never end)
MAX_COUNT = 100_000

#: a measurement is not trusted while the machine's load (other processes' threads ready to
#: run) exceeds this many per core: its passes then waited for CPU time
MAX_LOAD_PER_CORE = 1.0
#: nor when its rounds disagree: (p90 - p10) / median above this fraction means the machine's
#: speed changed while it was timed
MAX_SPREAD = 0.25
#: the time constant of the 1-minute load average, in seconds
LOAD_WINDOW_S = 60.0

#: where the forward passes run
Runtime = Literal["torch", "onnxruntime"]
#: one timed forward pass of one model
Pass = Callable[[], object]


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
        description="CPU threads of the latency measurement (at most the free cores); "
        "`null` = the run's `threads` "
        "(`compare --jobs N` sets it so that the baseline is timed like the runs).",
    )
    runtime: Runtime = Field(
        "torch",
        description="Where the passes run: `torch` (eager) or `onnxruntime` (ONNX Runtime, "
        "as deployed: the model exported to ONNX with its BatchNorms folded; needs "
        "`pip install onnxruntime`, and onnxruntime-gpu for device `cuda`).",
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
    runtime: Runtime = DEFAULT.runtime,
) -> dict[str, Any]:
    """``median_ms``, ``p10_ms`` and ``p90_ms`` of a forward pass on ``batch_size`` samples,
    and the conditions they were measured under (see :func:`measure_latencies`).

    ``example_inputs`` (a tensor or a tuple/list/dict of tensors, batch size 1) are repeated to
    ``batch_size``. The model runs in eval mode under ``torch.inference_mode``; a model living on
    another device is copied, so the caller's model is never moved. On ``runtime="onnxruntime"``
    the model exported by :func:`export_onnx` runs in an :func:`onnx_session` instead.
    ``threads`` (default: torch's current count) sets torch's CPU thread count (the session's
    intra-op threads) for the measurement only, capped to the free cores.
    """
    (result,) = measure_latencies(
        [model], example_inputs, batch_size, threads, repeats, warmup, device, runtime
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
    runtime: Runtime = DEFAULT.runtime,
) -> list[dict[str, Any]]:
    """:func:`measure_latency` of several models, timed in interleaved rounds (one pass of
    each model per round), so that drifts of the machine (clock, other load) hit all alike and
    their ratios stay comparable.

    Besides the times, every result holds ``threads`` (used) and ``threads_requested`` (fewer
    are used when the free cores are fewer), ``cores``, the load ``load_before`` and
    ``load_after`` the measurement (the threads of other processes ready to run, from Linux's
    ``/proc``; elsewhere the 1-minute load average, None where the system has none) and
    ``load_self``, the measurement's own share of that average (0 with ``/proc``, which leaves
    this process out); :func:`reliability` judges them. ``runtime`` names where the passes
    ran and ``fused`` whether the BatchNorms were folded (on ``onnxruntime``, see
    :func:`export_onnx`).
    """
    LatencySettings(
        batch_size=batch_size, threads=threads, repeats=repeats, warmup=warmup, runtime=runtime
    )
    device = resolve_runtime(runtime, device)
    with tempfile.TemporaryDirectory(prefix="prunekit-latency-") as folder:
        # prepared (exported) first: the load is sampled right before the timing
        start = _prepare(models, example_inputs, batch_size, device, runtime, Path(folder))
        cores = cpu_cores()
        others = _others_ready()  # None where /proc is missing: the load average then
        load_before = _load_average() if others is None else others
        requested = threads or torch.get_num_threads()
        used = requested if load_before is None else min(requested, free_cores(load_before, cores))
        wall_start, cpu_start = time.perf_counter(), time.process_time()
        with start(used) as passes:
            times = _rounds(passes, repeats, warmup)
    conditions = {
        "runtime": runtime,
        "fused": runtime == "onnxruntime",
        "threads": used,
        "threads_requested": requested,
        "cores": cores,
        "load_before": load_before,
        "load_after": _load_average() if others is None else _others_ready(),
        "load_self": 0.0
        if others is not None
        else own_load(time.process_time() - cpu_start, time.perf_counter() - wall_start),
    }
    summaries = []
    for timed in times:
        p10, median, p90 = np.percentile(timed, [10, 50, 90])
        summaries.append(
            {"median_ms": float(median), "p10_ms": float(p10), "p90_ms": float(p90), **conditions}
        )
    return summaries


def resolve_runtime(runtime: Runtime, device: str | torch.device) -> torch.device:
    """The device ``device`` names (:func:`~prunekit.device.resolve_device`), once ``runtime``
    is known to run on it: ONNX Runtime installed, with its CUDA provider for a CUDA device."""
    LatencySettings(runtime=runtime)
    resolved = resolve_device(device)
    if runtime == "onnxruntime":
        _onnxruntime(resolved)
    return resolved


def runtime_version(runtime: Runtime) -> str:
    """``runtime`` and the version of the package it runs (and of torch, which exports for
    ONNX Runtime), as a latency cache key names it."""
    if runtime == "onnxruntime":
        ort = _onnxruntime(torch.device("cpu"))
        return f"onnxruntime {ort.__version__}, torch {torch.__version__}"
    return f"torch {torch.__version__}"


def export_onnx(model: nn.Module, example_inputs: Any, batch_size: int, path: Path) -> Path:
    """``model`` written to the ONNX file ``path`` as ONNX Runtime latency measures it, as it is
    deployed: on CPU in eval mode, its BatchNorms folded (:func:`prunekit.fuse`), for a batch
    of ``batch_size`` (``example_inputs`` repeated); the caller's model is left as it was."""
    from prunekit.runner.export import EXPORTERS  # the runner imports all of prunekit

    if not isinstance(example_inputs, torch.Tensor):
        raise PrunekitError(
            "ONNX Runtime latency needs a model whose example input is one tensor, got "
            f"{type(example_inputs).__name__}: use runtime torch"
        )
    cpu = torch.device("cpu")
    batch = _to_batch(example_inputs, batch_size, cpu)
    folded, _ = fuse(_on(model, cpu), batch)  # a copy
    EXPORTERS["onnx"](folded.eval(), batch, path)
    return path


def onnx_session(path: Path, threads: int, device: str | torch.device = "cpu") -> InferenceSession:
    """An ONNX Runtime session of the file ``path`` on ``threads`` intra-op threads and one
    inter-op thread, with the CPU provider (CUDA's for a CUDA device). Its threads sleep between
    runs instead of spinning, so that a session waiting for its turn in a round leaves the cores
    to the one being timed.

    In a process that keeps freed memory (:mod:`prunekit.allocator`, as the command line does)
    the session allocates from that heap instead of its own arena: with both, eight copies of
    a model timed in interleaved rounds beside it ran at 0.85 of its time (the first session
    ran slower; docs/results.md), which biased every ratio to the first model, the parent;
    without the arena the copies ran at 1.00 of it."""
    device = torch.device(device)
    ort = _onnxruntime(device)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.enable_cpu_mem_arena = not keeps_freed_memory()
    provider = "CUDAExecutionProvider" if device.type == "cuda" else "CPUExecutionProvider"
    return ort.InferenceSession(str(path), options, providers=[provider])


def reliability(result: Mapping[str, Any]) -> str | None:
    """Why a result of :func:`measure_latency` cannot be trusted (``load 5.2 on 2 cores``,
    ``rounds spread 48% > 25% of the median``), or None when it can.

    The load judged is the larger of ``load_before`` and ``load_after`` less the measurement's
    own share, so that a measurement keeping every core busy does not condemn itself.
    """
    load = max(result["load_before"] or 0.0, (result["load_after"] or 0.0) - result["load_self"])
    if load > MAX_LOAD_PER_CORE * result["cores"]:
        return f"load {round(load, 2):g} on {counted(result['cores'], 'core')}"
    spread = (result["p90_ms"] - result["p10_ms"]) / result["median_ms"]
    if spread > MAX_SPREAD:
        return f"rounds spread {spread:.0%} > {MAX_SPREAD:.0%} of the median"
    return None


def cpu_cores() -> int:
    """The cores this process may run on (its CPU affinity where the system has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def free_cores(load: float, cores: int) -> int:
    """``cores`` less ``load``, rounded (a core at least half idle counts as free), at least 1."""
    return max(1, math.floor(cores - load + 0.5))


def own_load(cpu_s: float, wall_s: float) -> float:
    """The share of the 1-minute load average that ``cpu_s`` seconds of this process's CPU
    time over the last ``wall_s`` seconds account for (the average decays exponentially)."""
    return cpu_s / wall_s * (1.0 - math.exp(-wall_s / LOAD_WINDOW_S))


def _others_ready(
    samples: int = 5, interval_s: float = 0.01, proc: Path = Path("/proc")
) -> float | None:
    """Threads of other processes running or ready to run now, the mean of a few samples of
    Linux's ``/proc`` (None without it); this process and its children are left out, so that a
    run's own training, which the 1-minute load average remembers, does not count against it."""
    if not (proc / "self" / "stat").is_file():
        return None
    mine = {str(os.getpid())}
    counts = []
    for _ in range(samples):
        ready = 0
        for stat in proc.glob("[0-9]*/task/[0-9]*/stat"):
            try:
                text = stat.read_text()
            except OSError:  # the thread ended meanwhile
                continue
            fields = text[text.rindex(")") + 2 :].split()  # after "pid (command) "
            if stat.parent.parent.parent.name in mine or fields[1] in mine:  # self or a child
                continue
            ready += fields[0] == "R"
        counts.append(ready)
        time.sleep(interval_s)
    return sum(counts) / samples


def _load_average() -> float | None:
    """The 1-minute load average, None where the system keeps none (Windows)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def _onnxruntime(device: torch.device) -> Any:
    """The ``onnxruntime`` module, refused when missing or without a provider for ``device``."""
    try:
        import onnxruntime
    except ImportError:
        raise PrunekitError(
            "latency runtime 'onnxruntime' needs the onnxruntime package, which is not "
            "installed: pip install onnxruntime"
        ) from None
    providers = onnxruntime.get_available_providers()
    if device.type == "cuda" and "CUDAExecutionProvider" not in providers:
        raise PrunekitError(
            "device 'cuda' on the onnxruntime runtime needs onnxruntime-gpu's "
            f"CUDAExecutionProvider, which this onnxruntime lacks (it has {', '.join(providers)})"
            ": pip install onnxruntime-gpu, or use device cpu"
        )
    return onnxruntime


def _prepare(
    models: Sequence[nn.Module],
    example_inputs: Any,
    batch_size: int,
    device: torch.device,
    runtime: Runtime,
    folder: Path,
) -> Callable[[int], contextlib.AbstractContextManager[list[Pass]]]:
    """What opens the passes of ``models`` on ``runtime`` for a given thread count, all the
    slow work done: the models moved to ``device``, or exported to ONNX files in ``folder``."""
    if runtime == "onnxruntime":
        files = _exported(models, example_inputs, batch_size, folder)
        batch = _to_batch(example_inputs, batch_size, torch.device("cpu")).numpy()
        return functools.partial(_onnx_passes, files, batch, device)
    moved = [_on(model, device) for model in models]
    inputs = _to_batch(example_inputs, batch_size, device)
    return functools.partial(_torch_passes, moved, inputs, device)


def _exported(
    models: Sequence[nn.Module], example_inputs: Any, batch_size: int, folder: Path
) -> list[Path]:
    """:func:`export_onnx` of every model into ``folder``; a failure names the model."""
    files = []
    for i, model in enumerate(models):
        try:
            files.append(export_onnx(model, example_inputs, batch_size, folder / f"{i}.onnx"))
        except PrunekitError:
            raise
        except Exception as exc:  # torch.export fails on data-dependent control flow and more
            which = f"{i + 1} of {len(models)} " if len(models) > 1 else ""
            raise PrunekitError(
                f"model {which}({type(model).__name__}) cannot be exported to ONNX for the "
                f"onnxruntime latency: {_reason(exc)}; measure it with runtime torch"
            ) from exc
    return files


def _reason(exc: BaseException) -> str:
    """The first line of the innermost cause of ``exc`` (torch's exporter wraps the cause in
    pages of advice)."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


@contextlib.contextmanager
def _torch_passes(
    models: Sequence[nn.Module], inputs: Any, device: torch.device, threads: int
) -> Iterator[list[Pass]]:
    """The passes of ``models`` on torch eager: eval mode, inference mode and ``threads``
    torch threads while they are timed; modes and thread count are restored after."""
    previous_threads = torch.get_num_threads()
    was_training = [model.training for model in models]
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            for model in models:
                model.eval()
            yield [functools.partial(_torch_pass, model, inputs, device) for model in models]
    finally:
        torch.set_num_threads(previous_threads)
        for model, mode in zip(models, was_training, strict=True):
            model.train(mode)


def _torch_pass(model: nn.Module, inputs: Any, device: torch.device) -> None:
    forward(model, inputs)
    _synchronize(device)  # CUDA runs asynchronously: the pass ends when its kernels do


@contextlib.contextmanager
def _onnx_passes(
    files: Sequence[Path], batch: np.ndarray, device: torch.device, threads: int
) -> Iterator[list[Pass]]:
    """The passes of the ONNX ``files`` on ``batch``, one :func:`onnx_session` each."""
    sessions = [onnx_session(path, threads, device) for path in files]
    yield [
        functools.partial(session.run, None, {session.get_inputs()[0].name: batch})
        for session in sessions
    ]


def _rounds(passes: Sequence[Pass], repeats: int, warmup: int) -> list[list[float]]:
    """Milliseconds of every pass in each of ``repeats`` rounds (one call of each pass per
    round), after ``warmup`` untimed calls of each."""
    for run in passes:
        for _ in range(warmup):
            run()
    times: list[list[float]] = [[] for _ in passes]
    for _ in range(repeats):
        for run, timed in zip(passes, times, strict=True):
            start = time.perf_counter()
            run()
            timed.append((time.perf_counter() - start) * 1000.0)
    return times


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
