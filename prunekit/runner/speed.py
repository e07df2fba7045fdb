"""``prunekit latency``: the measured speed of every model a run or a comparison produced.

Runs record a latency per step while other work may share the machine; this re-measures every
checkpoint afterwards at several batch sizes and sets each latency beside the MACs it was
supposed to save. Latency depends on the architecture only, so models with the
same layer shapes (e.g. the seeds of a deterministic criterion) are timed once, and all of them
in interleaved rounds so that their ratios compare like with like, on torch eager or on ONNX
Runtime (exported, BatchNorms folded: as deployed). Where the machine's load or
scattered rounds spoil a measurement (:func:`prunekit.latency.reliability`), its row says so
instead of giving a verdict.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

import prunekit as pk
from prunekit import yamlfile
from prunekit.errors import PrunekitError
from prunekit.latency import Runtime, measure_latencies, reliability, resolve_runtime
from prunekit.registry import TASKS
from prunekit.reporting.plots import compare_plot, plot_title
from prunekit.reporting.tables import Table, size
from prunekit.reporting.text import counted
from prunekit.runner.checkpoint import open_checkpoint
from prunekit.runner.rundir import CompareDir, RunDir

#: the speed goal of a pruned model: latency ratio <= min(1, MACs ratio + SLACK)
SLACK = 0.10


def checkpoints(folder: Path) -> list[tuple[str, int, Path]]:
    """``(criterion, step, checkpoint)`` of a compare directory (its ``baseline.pt`` and every
    run's steps) or of a run directory (step 0 is the baseline)."""
    folder = Path(folder)
    found: list[tuple[str, int, Path]] = []
    if (folder / "baseline.pt").is_file():
        found.append(("baseline", 0, folder / "baseline.pt"))
        run_dirs = sorted(p for p in (folder / "runs").glob("*") if p.is_dir())
    elif RunDir(folder).config.is_file():
        run_dirs = [folder]
    else:
        run_dirs = []
    for run_dir in run_dirs:
        criterion = RunDir(run_dir).read_config()["prune"]["criterion"]
        for path in sorted((run_dir / "checkpoints").glob("step-*.pt")):
            step = int(re.fullmatch(r"step-(\d+)\.pt", path.name).group(1))  # type: ignore[union-attr]
            if step == 0 and found:
                continue  # a compare run's step 0 is the shared baseline
            found.append(("baseline" if step == 0 else criterion, step, path))
    if not found:
        raise PrunekitError(
            f"{folder} holds no checkpoints: give a run directory or a compare directory"
        )
    return found


def speed_table(
    folder: Path,
    batches: Sequence[int] = (1, 32),
    threads: int | None = None,
    device: str = "cpu",
    repeats: int = 9,
    runtime: Runtime = "torch",
) -> Table:
    """Mean params, MACs and latency per criterion and step (over seeds), each latency also as
    a ratio to the baseline's; ``goal`` says whether the largest batch meets
    ``latency ratio <= min(1, MACs ratio + 0.10)`` and no batch is slower than the baseline, or,
    where the row's times or the baseline's fail :func:`~prunekit.latency.reliability`, why
    they cannot be trusted (``goal_met`` is then None and ``unreliable`` holds the reason).
    Every record names the ``runtime`` the models ran on and whether they were ``fused``."""
    target = resolve_runtime(runtime, device)  # a missing runtime is refused before any loading
    entries = checkpoints(folder)
    models: dict[tuple, torch.nn.Module] = {}  # one model per architecture
    sizes: list[tuple[str, int, tuple, dict[str, int]]] = []
    example = None
    for criterion, step, path in entries:
        opened = open_checkpoint(path)
        example = opened.task.example_inputs() if example is None else example
        shapes = tuple(tuple(p.shape) for p in opened.model.parameters())
        models.setdefault(shapes, opened.model)
        sizes.append((criterion, step, shapes, pk.measure(opened.model, example)))
    timed: dict[tuple, dict[int, dict[str, Any]]] = {shapes: {} for shapes in models}
    for b in batches:
        # interleaved rounds: every architecture is timed under the same machine conditions
        results = measure_latencies(
            list(models.values()), example, b, threads, repeats, 2, target, runtime
        )
        for shapes, result in zip(models, results, strict=True):
            timed[shapes][b] = result
    measured: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for criterion, step, shapes, size_ in sizes:
        measured.setdefault((criterion, step), []).append({**size_, "timed": timed[shapes]})
    base_items = measured[("baseline", 0)]
    base = _mean(base_items, batches)
    headers = ["criterion", "step", "models", "params", "MACs"]
    headers += [f"batch {b}: ms (ratio)" for b in batches] + ["goal"]
    rows, records, doubts = [], [], []
    measured_on = {key: base_items[0]["timed"][batches[0]][key] for key in ("runtime", "fused")}
    for (criterion, step), items in measured.items():
        mean = _mean(items, batches)
        macs_ratio = mean["macs"] / base["macs"]
        ratios = {b: mean["latency"][b] / base["latency"][b] for b in batches}
        goal = max(ratios.values()) <= 1.0 and ratios[max(batches)] <= macs_ratio + SLACK
        doubt = _doubt(items + base_items, batches)  # a ratio is as good as both its times
        if doubt:
            doubts.append(doubt)
            verdict = f"unreliable: {doubt}"
        else:
            verdict = "-" if step == 0 else ("met" if goal else "NOT met")
        rows.append(
            [
                criterion,
                str(step),
                str(len(items)),
                size(mean["params"], 1 - mean["params"] / base["params"]),
                size(mean["macs"], 1 - macs_ratio),
                *(f"{mean['latency'][b]:.2f} ({ratios[b]:.3f})" for b in batches),
                verdict,
            ]
        )
        records.append(
            {
                "criterion": criterion,
                "step": step,
                "models": len(items),
                "params": mean["params"],
                "macs": mean["macs"],
                "macs_ratio": macs_ratio,
                **{f"latency_b{b}_ms": mean["latency"][b] for b in batches},
                **{f"latency_b{b}_ratio": ratios[b] for b in batches},
                "goal_met": goal if step and not doubt else None,
                "unreliable": doubt,
                **measured_on,
            }
        )
    where = {
        "torch": f"{target.type} latency",
        "onnxruntime": f"ONNX Runtime {target.type.upper()}, BatchNorm folded: latency",
    }[runtime]
    note = (
        f"{where}, median of {repeats} interleaved passes per batch size, "
        f"{_threads(base_items[0]['timed'])}; goal: no batch slower than the "
        f"baseline and, at batch {max(batches)}, latency ratio <= MACs ratio + {SLACK:.2f}."
    )
    if doubts:
        single = all(r["threads"] == 1 for r in base_items[0]["timed"].values())
        note += (
            f"\nThe measurement could not be trusted for {len(doubts)} of "
            f"{counted(len(rows), 'row')} ({doubts[0]}): rerun on an idle machine"
            f"{'' if single else ' or with --threads 1'}."
        )
    return Table(headers, rows, records, note)


def _doubt(items: list[dict[str, Any]], batches: Sequence[int]) -> str | None:
    """The first reason not to trust the latency of any of ``items`` at any of ``batches``."""
    reasons = (reliability(item["timed"][b]) for item in items for b in batches)
    return next((reason for reason in reasons if reason), None)


def _threads(timed: dict[int, dict[str, Any]]) -> str:
    """``2 thread(s)``, or ``1 thread(s) of 2 requested (capped to the free cores)``."""
    used = sorted({result["threads"] for result in timed.values()})
    requested = next(iter(timed.values()))["threads_requested"]
    text = f"{used[0]}" if len(used) == 1 else f"{used[0]}-{used[-1]}"
    text += " thread(s)"
    if used[0] < requested:
        text += f" of {requested} requested (capped to the free cores)"
    return text


def _mean(items: list[dict[str, Any]], batches: Sequence[int]) -> dict[str, Any]:
    return {
        "params": float(np.mean([i["params"] for i in items])),
        "macs": float(np.mean([i["macs"] for i in items])),
        "latency": {
            b: float(np.mean([i["timed"][b]["median_ms"] for i in items])) for b in batches
        },
    }


def latency_plot(folder: Path, table: Table, path: Path) -> None:
    """A comparison's plot (``compare.png``'s two panels) with the latency of ``table``, just
    measured at its largest batch, in place of the one each run timed while it ran (which other
    work on the machine may have spoiled)."""
    compare = CompareDir(Path(folder))
    results = compare.summary("results.json")
    if not results.is_file():
        raise PrunekitError(
            f"--plot needs a finished comparison, and {folder} has no results.json: give the "
            "output folder of `prunekit compare`"
        )
    config = yamlfile.load_mapping(compare.config)
    primary = TASKS.get(config["task"]).primary_metric
    batch = max(int(m.group(1)) for h in table.headers if (m := re.match(r"batch (\d+)", h)))
    latency = {(r["criterion"], r["step"]): r[f"latency_b{batch}_ms"] for r in table.records}
    summary = []
    for row in json.loads(results.read_text()):
        criterion = row["criterion"].split(" / ")[0]  # a recipe's label: "criterion / recipe"
        summary.append(
            {
                **row,
                "latency_ms": latency[(criterion, row["step"])],
                "metrics": {primary: [row[f"{primary}_mean"], row[f"{primary}_std"]]},
            }
        )
    labels = list(dict.fromkeys(r["criterion"] for r in summary if r["step"]))
    criteria = list(dict.fromkeys(label.split(" / ")[0] for label in labels))
    recipes = list(dict.fromkeys(label.split(" / ")[1] for label in labels if " / " in label))
    # a comparison of criteria ran the configured recovery (compare names no recipe then)
    recipes = recipes or ["+".join(config["recovery"]["methods"]) or "none"]
    first = sorted(p for p in (compare.root / "runs").glob("*") if p.is_dir())[0]
    source = (RunDir(first).read_log()[0].get("provenance") or {}).get("data.source")
    heading = plot_title(config["task"], source, criteria, recipes)
    compare_plot(summary, primary, path, heading, note=f"latency: {table.note.splitlines()[0]}")
