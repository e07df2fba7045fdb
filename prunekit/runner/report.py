"""The end of a run: ``final.pt``, ``best.pt``, ``report.md`` and ``curve.png``."""

from __future__ import annotations

from typing import Any

from prunekit import atomic
from prunekit.reporting import provenance_items, run_plot, run_table
from prunekit.runner.rundir import RunDir
from prunekit.tasks.base import Task


def write_report(
    run_dir: RunDir,
    config: dict[str, Any],
    task: Task,
    history: list[dict[str, Any]],
    best: dict[str, Any],
    settings: str,
) -> None:
    """Copy the last and the best step's checkpoints and render the run's table and plot, both
    headed by the provenance that the step-0 record holds."""
    primary, target = task.primary_metric, next(iter(config["prune"]["target"]))
    atomic.copy(run_dir.checkpoint(history[-1]["step"]), run_dir.final)
    atomic.copy(run_dir.checkpoint(best["step"]), run_dir.best)
    title = f"{config['task']} / {config['prune']['criterion']}"
    table = run_table(history, primary, target).render("github")
    items = provenance_items(history[0].get("provenance") or {})
    listed = "".join(f"- {item}\n" for item in items)
    header = f"# {title}\n\n{settings}\n\n" + (f"Provenance:\n\n{listed}\n" if items else "")
    atomic.write_text(run_dir.report, f"{header}{table}\n![{primary} vs parameters](curve.png)\n")
    run_plot(history, primary, run_dir.curve, title, note="; ".join(items))
