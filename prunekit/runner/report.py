"""The end of a run: ``final.pt``, ``best.pt``, ``report.md`` and ``curve.png``."""

from __future__ import annotations

from typing import Any

from prunekit import atomic
from prunekit.reporting import plot_title, provenance_items, run_plot, run_table
from prunekit.runner.rundir import RunDir
from prunekit.tasks.base import Task


def write_report(
    run_dir: RunDir,
    config: dict[str, Any],
    task: Task,
    history: list[dict[str, Any]],
    best: dict[str, Any],
    settings: str,
    note: str = "",
) -> None:
    """Copy the last and the best step's checkpoints and render the run's table and plot, both
    headed by the provenance that the step-0 record holds; ``note`` goes under the table."""
    primary, target = task.primary_metric, next(iter(config["prune"]["target"]))
    atomic.copy(run_dir.checkpoint(history[-1]["step"]), run_dir.final)
    atomic.copy(run_dir.checkpoint(best["step"]), run_dir.best)
    title = f"{config['task']} / {config['prune']['criterion']}"
    table = run_table(history, primary, target).render("github")
    provenance = history[0].get("provenance") or {}
    items = provenance_items(provenance)
    listed = "".join(f"- {item}\n" for item in items)
    header = f"# {title}\n\n{settings}\n\n" + (f"Provenance:\n\n{listed}\n" if items else "")
    footer = f"{note}\n\n" if note else ""
    atomic.write_text(
        run_dir.report,
        f"{header}{table}\n{footer}![{primary} vs parameters and latency](curve.png)\n",
    )
    recipe = "+".join(config["recovery"]["methods"]) or "none"
    heading = plot_title(
        config["task"], provenance.get("data.source"), [config["prune"]["criterion"]], [recipe]
    )
    run_plot(history, primary, run_dir.curve, heading, note="; ".join(items))
