"""``prunekit compare``: criteria x recovery recipes x seeds from one shared baseline.

The baseline is prepared once and saved as ``OUT/baseline.pt``; every run starts from it
(``baseline.checkpoint``), so all criteria and recipes prune exactly the same model. Runs live
in ``OUT/runs/<criterion>[-<recipe>]-seed<N>/`` and the summary goes to
``OUT/results.{md,csv,tex,json}`` and ``OUT/compare.png``. A recipe is recovery methods joined
by ``+`` (``reconstruct+distill``), or ``none``.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import prunekit as pk
from prunekit import atomic
from prunekit.errors import PrunekitError
from prunekit.recovery import make_recovery
from prunekit.registry import TASKS
from prunekit.reporting import Table, compare_plot, compare_table, plot_title
from prunekit.runner import run
from prunekit.runner.config import merge, validate
from prunekit.runner.rundir import CompareDir

History = list[dict[str, Any]]
OUTPUTS = {
    "github": "results.md",
    "csv": "results.csv",
    "latex": "results.tex",
    "json": "results.json",
}


@dataclass
class Comparison:
    """Where the comparison lives, its summary rows and the rendered table."""

    out: Path
    summary: list[dict[str, Any]]
    table: Table


def parse_recipe(recipe: str) -> list[str]:
    """``"reconstruct+distill"`` -> ``["reconstruct", "distill"]``; ``"none"`` -> ``[]``."""
    methods = [m.strip() for m in recipe.split("+") if m.strip()]
    if recipe.strip() == "none":
        return []
    if not methods or "none" in methods:
        raise PrunekitError(
            f"recovery recipe {recipe!r} is malformed: join method names with +, e.g. "
            "reconstruct+distill, or write none"
        )
    return methods


def compare(
    config: dict[str, Any],
    criteria: list[str],
    seeds: int = 1,
    out: Path | None = None,
    jobs: int = 1,
    quiet: bool = False,
    recipes: list[str] | None = None,
) -> Comparison:
    """Run every criterion x recovery recipe with ``seeds`` seeds (``seed``, ``seed + 1``, ...)
    and summarise. ``recipes`` default to the configured ``recovery.methods``.

    ``jobs > 1`` runs that many criterion-recipe pairs in parallel processes (each gets an
    equal share of the CPU threads unless ``threads`` is configured).
    """
    if not criteria:
        raise PrunekitError("--criteria is empty: name at least one criterion, e.g. taylor,l1")
    if seeds < 1 or jobs < 1:
        raise PrunekitError(f"--seeds and --jobs must be >= 1, got {seeds} and {jobs}")
    # the seeds run are seed .. seed + seeds - 1: the last must be a valid seed too
    validate(merge(config, {"seed": config["seed"] + seeds - 1}), f"--seeds {seeds}")
    for name in criteria:  # fail before writing anything
        pk.make_criterion(name, options=config["prune"]["criterion_options"])
    given = recipes is not None
    recipes = recipes or ["+".join(config["recovery"]["methods"]) or "none"]
    for recipe in recipes:
        for method in parse_recipe(recipe):
            make_recovery(method, config["recovery"]["options"].get(method))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = out or Path("runs") / f"{config['task']}-compare-{stamp}"
    folder = CompareDir(out)
    with folder.writing():  # one process writes a comparison at a time
        echo = _echo(quiet)
        pairs = [(c, r) for c in criteria for r in recipes]
        what = ", ".join(criteria) + (f" x recovery {', '.join(recipes)}" if given else "")
        echo(f"prunekit compare {config['task']}: {what} x {seeds} seed(s) -> {out}")
        per_job = max(1, (os.cpu_count() or 1) // jobs)
        if jobs > 1 and not config["threads"] and not config["latency"]["threads"]:
            # the baseline trains on every thread but is timed with the runs' share, so that the
            # latency column compares like with like
            config = merge(config, {"latency": {"threads": per_job}})
        if not config["baseline"]["checkpoint"]:
            run.make_baseline(config, folder.baseline, quiet=quiet, echo=echo)
            config = merge(config, {"baseline": {"checkpoint": str(folder.baseline.resolve())}})
        folder.write_config(config)
        if jobs > 1 and not config["threads"]:
            config = merge(config, {"threads": per_job})
        seed_list = [config["seed"] + i for i in range(seeds)]
        names = [f"{c}-{r}" if given else c for c, r in pairs]
        work = [(config, c, r, name, seed_list, out, quiet) for (c, r), name in zip(pairs, names)]
        if jobs > 1:
            # spawn, not fork: forking a process that already runs torch threads can deadlock
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
                histories = list(pool.map(_run_pair, *zip(*work)))
        else:
            histories = [_run_pair(*args) for args in work]
        task = TASKS.get(config["task"])
        labels = [f"{c} / {r}" if given else c for c, r in pairs]
        summary = summarize(
            dict(zip(labels, histories)), task.primary_metric, task.higher_is_better
        )
        table = compare_table(summary, task.primary_metric)
        title = f"{config['task']}: {config['prune']['schedule']} schedule, {seeds} seed(s)"
        for fmt, name in OUTPUTS.items():
            text = table.render(fmt)
            if fmt == "github":
                text = f"# {title}\n\n{text}\n![{task.primary_metric}](compare.png)\n"
            atomic.write_text(folder.summary(name), text)
        source = (histories[0][0][0].get("provenance") or {}).get("data.source")
        heading = plot_title(config["task"], source, criteria, recipes)
        compare_plot(summary, task.primary_metric, folder.plot, heading, note=title)
        return Comparison(out, summary, table)


def _run_pair(
    config: dict[str, Any],
    criterion: str,
    recipe: str,
    name: str,
    seeds: list[int],
    out: Path,
    quiet: bool,
) -> list[History]:
    """Every seed of one criterion and recovery recipe, each started from the shared baseline
    (one job)."""
    histories = []
    for seed in seeds:
        cfg = merge(
            config,
            {
                "seed": seed,
                "prune": {"criterion": criterion},
                "recovery": {"methods": parse_recipe(recipe)},
            },
        )
        cfg = validate(cfg, "the comparison")
        result = run.start(
            cfg, CompareDir(out).run(name, seed).root, quiet=quiet, echo=_echo(quiet)
        )
        histories.append(result.records)
    return histories


def summarize(
    results: dict[str, list[History]], primary: str, higher_is_better: bool
) -> list[dict[str, Any]]:
    """Mean ± std over seeds per criterion and step; the shared baseline first.

    The row with the best mean ``primary`` metric at each step gets ``best = True``.
    """
    baseline = next(iter(results.values()))[0][0]
    rows = [_aggregate("baseline", [baseline])]
    for criterion, histories in results.items():
        steps = sorted({r["step"] for history in histories for r in history[1:]})
        for step in steps:
            records = [r for history in histories for r in history if r["step"] == step]
            rows.append(_aggregate(criterion, records))
    for step in {row["step"] for row in rows if row["step"]}:
        level = [row for row in rows if row["step"] == step]
        pick = max if higher_is_better else min
        pick(level, key=lambda row: row["metrics"][primary][0])["best"] = True
    return rows


def _aggregate(criterion: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    def mean(values: list[float]) -> float:
        return float(np.mean(values))

    def mean_std(values: list[float]) -> list[float]:
        return [mean(values), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0]

    metrics = records[0]["metrics"]
    return {
        "criterion": criterion,
        "step": records[0]["step"],
        "seeds": len(records),
        "params": mean([r["params"] for r in records]),
        "params_removed": mean([r["achieved"]["params"] for r in records]),
        "macs": mean([r["macs"] for r in records]),
        "macs_removed": mean([r["achieved"]["macs"] for r in records]),
        "latency_ms": mean([r["latency_ms"] for r in records]),
        "metrics": {m: mean_std([r["metrics"][m] for r in records]) for m in metrics},
        "best": False,
    }


def _echo(quiet: bool) -> run.Echo:
    return _silent if quiet else print


def _silent(_message: str) -> None:
    """An ``echo`` that prints nothing (module level, so worker processes can receive it)."""
