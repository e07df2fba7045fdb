"""The loop behind ``prunekit run``: baseline, then score -> prune -> fine-tune -> evaluate.

A run's checkpoints are its memory. Step 0 is the baseline; after every step the model, the
pruner, the task's training state and the whole log so far go into ``checkpoints/step-N.pt``
(atomically). Every step reseeds the RNGs with ``seed + step``, so continuing from any
checkpoint ends exactly where an uninterrupted run would.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

import prunekit as pk
from prunekit.errors import PrunekitError
from prunekit.latency import measure_latency
from prunekit.registry import TASKS
from prunekit.reporting import run_plot, run_table
from prunekit.runner.distributed import World, joined
from prunekit.runner.rundir import RunDir, copy_atomic, default_root
from prunekit.runner.seeding import rng_state, seed_everything, set_rng_state, torch_settings
from prunekit.tasks.base import Task

Echo = Callable[[str], None]


@dataclass
class RunResult:
    """Where a run lives, its per-step records (step 0 = baseline) and how it ended."""

    run_dir: Path
    records: list[dict[str, Any]]
    stopped_early: bool


def start(
    config: dict[str, Any],
    out: Path | None = None,
    *,
    baseline: Path | None = None,
    quiet: bool = False,
    echo: Echo = print,
) -> RunResult:
    """Run a validated ``config`` in the new directory ``out``.

    ``baseline`` is a checkpoint written by :func:`make_baseline` to start from instead of
    preparing the baseline again (``prunekit compare`` shares one across its runs).
    """
    with torch_settings(config["threads"]), joined(config["device"]) as world:
        out = world.share(out or default_root(config["task"], config["prune"]["criterion"]))
        run_dir = RunDir(out)
        if world.is_main:
            run_dir.ensure_new()
        session = _Session(config, quiet, echo, world, baseline)  # may raise: no files yet
        if world.is_main:
            run_dir.write_config(config)
        session.banner(run_dir)
        return session.run(run_dir)


def resume(path: Path, *, quiet: bool = False, echo: Echo = print) -> RunResult:
    """Continue the run in ``path`` from its last checkpoint (a finished run is re-reported)."""
    run_dir = RunDir(Path(path))
    config = run_dir.read_config()
    with torch_settings(config["threads"]), joined(config["device"]) as world:
        session = _Session(config, quiet, echo, world, run_dir.latest_checkpoint())
        session.banner(run_dir)
        return session.run(run_dir)


def make_baseline(
    config: dict[str, Any], path: Path, *, quiet: bool = False, echo: Echo = print
) -> dict[str, Any]:
    """Prepare and evaluate the baseline of ``config`` once, save it to ``path``; its record."""
    with torch_settings(config["threads"]):
        session = _Session(config, quiet, echo)
        record = session.prepare_baseline()
        session.save(path, [record])
        return record


class _Session:
    """One process's view of a run: the task, the model and the pruner, built from a config
    and optionally a checkpoint. In a data-parallel run (see :mod:`~prunekit.runner.distributed`)
    every rank trains and scores its share of the data; rank 0 alone evaluates and writes."""

    def __init__(
        self,
        config: dict[str, Any],
        quiet: bool,
        echo: Echo,
        world: World | None = None,
        checkpoint: Path | None = None,
    ) -> None:
        self.config, self.world = config, world or World()
        self.echo = echo if self.world.is_main else _silent
        self.prune = config["prune"]
        seed_everything(config["seed"])
        self.device = resolve_device(config["device"])
        self.task = TASKS.get(config["task"])(config, self.device)
        self.task.show_progress = not quiet and self.world.is_main
        self.world.shard(self.task)
        self.model = self.task.build_model()
        self.history: list[dict[str, Any]] = []
        self.run_dir: RunDir | None = None  # set by run()
        state = None
        if checkpoint is not None:
            state = pk.read_checkpoint(checkpoint)
            pk.load(checkpoint, self.model)
            self.task.load_state_dict(
                {k[5:]: v for k, v in state["extra"].items() if k.startswith("task.")}
            )
            set_rng_state(state["extra"])
            self.history = list(state["meta"]["history"])
        self.model.to(self.device)
        self.example = self.task.example_inputs()
        self.model.eval()  # tracing must not update BatchNorm statistics
        self.pruner = pk.Pruner(
            self.model,
            self.example,
            criterion=self.prune["criterion"],
            schedule=self.prune["schedule"],
            target=self.prune["target"],
            steps=self.prune["steps"],
            scope=self.prune["scope"],
            ignored_layers=self.task.ignored_layers(self.model),
            round_to=self.prune["round_to"],
            min_channels=self.prune["min_channels"],
            seed=config["seed"],
            criterion_options=self.prune["criterion_options"],
        )
        if state is not None and state["pruner"] is not None:
            self.pruner.load_state_dict(state["pruner"])
        self.trained = self.world.wrap(self.model)  # what training sees: DDP in data-parallel runs

    # ------------------------------------------------------------------ the loop
    def run(self, run_dir: RunDir) -> RunResult:
        """Baseline if there is none yet, then the remaining steps, then the reports."""
        self.run_dir = run_dir
        if not self.history:
            self.history = [self.prepare_baseline()]
        if self.world.is_main:
            if run_dir.latest_checkpoint() is None:
                self.save(run_dir.checkpoint(0), self.history)
            run_dir.write_log(self.history)  # the checkpoint is the truth, even after a crash
        self.echo(self._line(self.history[0]))
        while not self.pruner.done and self._tolerated(self.history[-1]):
            record = self._step()
            self.history.append(record)
            if self.world.is_main:
                self.save(run_dir.checkpoint(record["step"]), self.history)
                run_dir.append_log(record)
            self.world.barrier()
            self.echo(self._line(record))
        return self._finish()

    def prepare_baseline(self) -> dict[str, Any]:
        """Bring the model to its starting point with the task's recipe; the step-0 record."""
        started = time.perf_counter()
        seed_everything(self.config["seed"])
        how = self.task.prepare_baseline(self.trained)
        return {**self._record(0, None, None, started), "baseline": how}

    def _step(self) -> dict[str, Any]:
        n = self.pruner.step_index + 1
        started = time.perf_counter()
        seed_everything(self.config["seed"] + n)
        self._score(n)
        self.pruner.all_reduce()  # every rank must choose the same channels
        report = self.pruner.step()
        self.trained = self.world.wrap(self.model)  # the shapes changed
        loss = self._finetune(n)
        return self._record(n, report, loss, started)

    def _score(self, n: int) -> None:
        if not self.pruner.needs_grad:
            return
        batches = self.task.score_batches()
        if self.prune["score_batches"] is not None:
            batches = itertools.islice(batches, self.prune["score_batches"])
        self.model.eval()  # score the model as it is: no BatchNorm statistics updates
        self.model.zero_grad()  # fine-tuning's last gradients must not count as a score batch
        for batch in self.task.progress(batches, f"score {n}"):
            loss = self.task.loss(self.model, batch)
            self._check_finite(float(loss.detach()), f"step {n}: the scoring loss")
            loss.backward()
            self.pruner.accumulate()

    def _finetune(self, n: int) -> float | None:
        loss = None
        if self.config["finetune"]["epochs"]:
            optimizer = self.task.make_optimizer(self.trained, self.config["finetune"]["lr"])
            for _ in range(self.config["finetune"]["epochs"]):
                loss = self.task.train_epoch(self.trained, optimizer)["loss"]
                self._check_finite(loss, f"step {n}: the fine-tuning loss")
        return loss

    def _record(
        self, step: int, report: pk.StepReport | None, train_loss: float | None, started: float
    ) -> dict[str, Any]:
        """The step's record: sizes, latency and metrics, measured by rank 0 for every rank."""
        self.world.sync_buffers(self.model)  # after training: the model rank 0 evaluates
        if not self.world.is_main:  # rank 0 measures, the others take its record
            return self.world.share({})
        if report is None:  # the baseline: nothing planned, nothing removed
            sizes = pk.measure(self.model, self.example)
            achieved = {"params": 0.0, "macs": 0.0, "channels": 0.0}
            planned = {"target": 0.0, **achieved}
        else:
            sizes = {"params": report.params, "macs": report.macs}
            planned, achieved = report.planned, report.achieved
        timing = self.config["latency"]
        latency = measure_latency(
            self.model,
            self.example,
            batch_size=timing["batch_size"],
            threads=timing["threads"] or self.config["threads"],
            repeats=timing["repeats"],
            warmup=timing["warmup"],
        )
        record = {
            "step": step,
            "params": sizes["params"],
            "macs": sizes["macs"],
            "latency_ms": latency["median_ms"],
            "metrics": evaluate(self.task, self.model),
            "planned": planned,
            "achieved": achieved,
            "train_loss": train_loss,
            "wall_s": round(time.perf_counter() - started, 3),
        }
        return self.world.share(record)

    def _tolerated(self, record: dict[str, Any]) -> bool:
        """Whether ``record``'s primary metric is within ``stop.max_drop`` of the baseline."""
        max_drop = self.config["stop"]["max_drop"]
        if max_drop is None:
            return True
        primary = self.task.primary_metric
        drop = self.history[0]["metrics"][primary] - record["metrics"][primary]
        return (drop if self.task.higher_is_better else -drop) <= max_drop

    def _check_finite(self, loss: float, what: str) -> None:
        if not math.isfinite(loss):
            last = self.run_dir.latest_checkpoint()
            raise PrunekitError(
                f"{what} is {loss}: training diverged, so the run stopped; the last good "
                f"checkpoint is {last} (try a lower finetune.lr)"
            )

    # ------------------------------------------------------------------ output
    def save(self, path: Path, history: list[dict[str, Any]]) -> None:
        extra = {f"task.{k}": v for k, v in self.task.state_dict().items()}
        try:
            pk.save(
                path,
                self.model,
                # the baseline carries no pruning state, so runs with any criterion can share it
                pruner=self.pruner if self.pruner.step_index else None,
                meta={"task": self.config["task"], "config": self.config, "history": history},
                extra={**extra, **rng_state()},
            )
        except OSError as exc:  # a full disk, a lost mount: pk.save left earlier files intact
            raise PrunekitError(
                f"cannot write checkpoint {path} ({exc.strerror or exc}): the run stopped and its "
                "earlier checkpoints are intact; free some disk space, then resume it"
            ) from exc

    def _finish(self) -> RunResult:
        run_dir, history = self.run_dir, self.history
        best = [r for r in history if self._tolerated(r)][-1]
        primary, target = self.task.primary_metric, self.pruner.target.metric
        if self.world.is_main:
            copy_atomic(run_dir.checkpoint(history[-1]["step"]), run_dir.final)
            copy_atomic(run_dir.checkpoint(best["step"]), run_dir.best)
            title = f"{self.config['task']} / {self.prune['criterion']}"
            table = run_table(history, primary, target).render("github")
            run_dir.report.write_text(
                f"# {title}\n\n{self._settings()}\n\n{table}\n"
                f"![{primary} vs parameters](curve.png)\n"
            )
            run_plot(history, primary, run_dir.curve, title)
        self.world.barrier()
        stopped = best is not history[-1]
        if stopped:
            self.echo(
                f"stopped early: {primary} at step {history[-1]['step']} fell more than "
                f"stop.max_drop={self.config['stop']['max_drop']} below the baseline; "
                f"best.pt is step {best['step']}"
            )
        return RunResult(run_dir.root, history, stopped)

    def banner(self, run_dir: RunDir) -> None:
        self.echo(f"prunekit run {self.config['task']}: {self._settings()}")
        self.echo(f"data: {self.task.describe_data() or 'not described by the task'}")
        self.echo(f"run dir: {run_dir.root}")

    def _settings(self) -> str:
        p = self.prune
        return (
            f"criterion {p['criterion']}, schedule {p['schedule']}, target {self.pruner.target} "
            f"in {p['steps']} step(s), {p['scope']} scope, seed {self.config['seed']}, "
            f"device {self.device}"
        )

    def _line(self, r: dict[str, Any]) -> str:
        metrics = ", ".join(f"{k} {v:.4f}" for k, v in r["metrics"].items())
        head = (
            f"baseline ({r['baseline']})"
            if r["step"] == 0
            else f"step {r['step']}/{self.prune['steps']}"
        )
        return (
            f"{head}: params {r['params']:,} (-{r['achieved']['params']:.1%}), "
            f"MACs {r['macs']:,}, latency {r['latency_ms']:.2f} ms, {metrics} [{r['wall_s']} s]"
        )


def evaluate(task: Task, model: nn.Module) -> dict[str, float]:
    """``task.evaluate(model)`` in eval mode without gradients; checks the primary metric."""
    model.eval()
    with torch.no_grad():
        metrics = {k: float(v) for k, v in task.evaluate(model).items()}
    if task.primary_metric not in metrics:
        raise PrunekitError(
            f"{type(task).__name__}.evaluate() returned {sorted(metrics)}, without its primary "
            f"metric {task.primary_metric!r}"
        )
    return metrics


def _silent(_message: str) -> None:
    """The echo of ranks other than 0."""


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; asking for missing CUDA is an error."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise PrunekitError("device 'cuda' was requested but CUDA is not available: use cpu")
    return torch.device(name)
