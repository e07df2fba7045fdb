"""The loop behind ``prunekit run``: baseline, then score -> prune -> recover -> evaluate.

A run's checkpoints are its memory. Step 0 is the baseline; after every step the model, the
pruner, the task's training state and the whole log so far go into ``checkpoints/step-N.pt``
(atomically). Every step reseeds the RNGs with ``seed + step``, so continuing from any
checkpoint, even after an interrupt in the middle of a step's recovery, ends exactly where an
uninterrupted run would.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
import itertools
import json
import math
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

import prunekit as pk
from prunekit import atomic
from prunekit.device import resolve_device
from prunekit.errors import PrunekitError
from prunekit.latency import measure_latency, reliability
from prunekit.recovery import RecoveryContext, make_recovery, recover
from prunekit.registry import RECOVERIES, TASKS
from prunekit.reporting import counted, provenance_items, run_table
from prunekit.runner.checkpoint import EpochFile, discard_epochs, restore_run, save_run
from prunekit.runner.config import with_data_root
from prunekit.runner.control import FILENAME as CONTROL
from prunekit.runner.control import control_note
from prunekit.runner.distributed import World, joined
from prunekit.runner.progress import progress_line, time_split
from prunekit.runner.report import write_report
from prunekit.runner.rundir import RunDir, default_root
from prunekit.runner.seeding import seed_everything, torch_settings
from prunekit.tasks.base import Task, data_provenance

Echo = Callable[[str], None]


@dataclass
class RunResult:
    """Where a run lives, its per-step records (step 0 = baseline) and how it ended."""

    run_dir: Path
    records: list[dict[str, Any]]
    stopped_early: bool


def start(
    config: dict[str, Any], out: Path | None = None, *, quiet: bool = False, echo: Echo = print
) -> RunResult:
    """Run a validated ``config`` in the new directory ``out``."""
    with (
        torch_settings(config["threads"]),
        joined(resolve_device(config["device"]), config["timeout_s"]) as world,
    ):
        out = world.share(out or default_root(config["task"], config["prune"]["criterion"]))
        run_dir = RunDir(out)
        with _writing(run_dir, world, new=True):
            session = _Session(config, quiet, echo, world)  # may raise: no files yet
            if world.is_main:
                run_dir.write_config(config)
            session.banner(run_dir)
            return session.run(run_dir)


def resume(
    path: Path, *, quiet: bool = False, echo: Echo = print, data: str | None = None
) -> RunResult:
    """Continue the run in ``path`` from its last checkpoint (a finished run is re-reported);
    ``data`` points it at its data folder where that has moved."""
    run_dir = RunDir(Path(path))
    config = run_dir.read_config()
    if data is not None:
        config = with_data_root(config, data)
    with (
        torch_settings(config["threads"]),
        joined(resolve_device(config["device"]), config["timeout_s"]) as world,
        _writing(run_dir, world),
    ):
        session = _Session(config, quiet, echo, world, run_dir.latest_checkpoint(), run_dir)
        if data is not None and world.is_main:
            run_dir.write_config(config)  # the run's data live there now: later resumes too
        session.banner(run_dir)
        return session.run(run_dir)


def _writing(
    run_dir: RunDir, world: World, new: bool = False
) -> contextlib.AbstractContextManager[None]:
    """The run directory's lock for rank 0, which alone writes; nothing for the other ranks."""
    return run_dir.writing(new) if world.is_main else contextlib.nullcontext()


def make_baseline(
    config: dict[str, Any], path: Path, *, quiet: bool = False, echo: Echo = print
) -> dict[str, Any]:
    """Prepare and evaluate the baseline of ``config`` once, save it to ``path``; its record.

    Runs that set ``baseline.checkpoint`` to ``path`` then start from it (``prunekit compare``
    shares one baseline across its runs this way).
    """
    with torch_settings(config["threads"]):
        session = _Session(config, quiet, echo)
        record = session.prepare_baseline()
        session.save(path, [record])
        return record


class _Session:
    """One process's view of a run: the task, the model, the pruner and the recovery, built
    from a config and optionally a checkpoint. In a data-parallel run (see
    :mod:`~prunekit.runner.distributed`) every rank trains and scores its share of the data;
    rank 0 alone evaluates and writes."""

    def __init__(
        self,
        config: dict[str, Any],
        quiet: bool,
        echo: Echo,
        world: World | None = None,
        checkpoint: Path | None = None,
        run_dir: RunDir | None = None,
    ) -> None:
        self.config, self.world = config, world or World()
        self.echo = echo if self.world.is_main else _silent
        self.prune = config["prune"]
        seed_everything(config["seed"])
        self.device = resolve_device(config["device"])
        self.task = TASKS.get(config["task"])(config, self.device)
        self.task.show_progress = not quiet and self.world.is_main
        self.task.parallel = self.world
        self.model = self.task.build_model()
        self.history: list[dict[str, Any]] = []
        self.run_dir = run_dir
        state = None
        if checkpoint is not None:
            state = restore_run(checkpoint, self.model, self.task)
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
            rank=self.prune["rank"],
            ignored_layers=[*self.task.ignored_layers(self.model), *self.prune["ignored_layers"]],
            round_to=self.prune["round_to"],
            min_channels=self.prune["min_channels"],
            prune_outputs=self.prune["prune_outputs"],
            seed=config["seed"],
            criterion_options=self.prune["criterion_options"],
            # a latency target times models as the run's steps are timed
            latency=self._latency_timing(),
        )
        if state is not None and state["pruner"] is not None:
            self.pruner.load_state_dict(state["pruner"])
            self._outputs_pruned()
        recovery = config["recovery"]
        self.methods = [make_recovery(m, recovery["options"].get(m)) for m in recovery["methods"]]
        self.recovery: RecoveryContext | None = None  # built with the parent, once per session
        self.phases: dict[str, float] = {}  # seconds per phase of the step being made

    @contextlib.contextmanager
    def _phase(self, name: str) -> Iterator[None]:
        """Time a phase of the current step into its record's ``phases_s``."""
        started = time.perf_counter()
        try:
            yield
        finally:
            spent = time.perf_counter() - started
            self.phases[name] = round(self.phases.get(name, 0.0) + spent, 3)

    def _latency_timing(self) -> dict[str, Any] | None:
        """The run's ``latency`` settings on its device, for a latency target; None otherwise."""
        if pk.Target.parse(self.prune["target"]).metric != "latency":
            return None
        timing = dict(self.config["latency"])
        timing["threads"] = timing["threads"] or self.config["threads"]
        return {**timing, "device": str(self.device)}

    # ------------------------------------------------------------------ the loop
    def run(self, run_dir: RunDir) -> RunResult:
        """Baseline if there is none yet, then the remaining steps, then the reports."""
        self.run_dir = run_dir
        if not self.history:
            self.history = [self.prepare_baseline()]
        if self.world.is_main:
            if run_dir.latest_checkpoint() is None:
                self.save(run_dir.checkpoint(0), self.history)
            discard_epochs(run_dir.baseline_epoch)  # step 0 holds the baseline now
            run_dir.write_log(self.history)  # the checkpoint is the truth, even after a crash
        self.echo(self._line(self.history[0]))
        self.echo(progress_line(self.history, self.prune["steps"]))
        while not self.pruner.done and self._tolerated(self.history[-1]):
            record = self._step()
            self.history.append(record)
            if self.world.is_main:
                self.save(run_dir.checkpoint(record["step"]), self.history)
                run_dir.append_log(record)
            self.world.barrier()
            self.echo(self._line(record))
            self.echo(progress_line(self.history, self.prune["steps"]))
        return self._finish()

    def prepare_baseline(self) -> dict[str, Any]:
        """Bring the model to its starting point: ``baseline.checkpoint`` if set, else the
        task's recipe; the step-0 record."""
        started = time.perf_counter()
        self.phases = {}
        seed_everything(self.config["seed"])
        saved = self.config["baseline"]["checkpoint"]
        if saved:
            state = restore_run(Path(saved), self.model, self.task, rng=False)
            self.model.to(self.device)
            self._check_trained(f"the baseline checkpoint {saved} is broken", "use another one")
            how = f"loaded {saved}"
            measured = state["meta"].get("history") or [{}]
            if measured[0].get("step") == 0 and _same_evaluation(state["meta"], self.config):
                # measured already, on the same data; the provenance is this run's
                return {**measured[0], "baseline": how, "provenance": self.provenance}
        else:
            # resumable from its last epoch (a comparison's shared baseline has no run directory)
            epoch_file = self.run_dir.baseline_epoch if self.run_dir is not None else None
            if epoch_file is not None:
                write = self.world.is_main
                self.task.epoch_checkpoint = EpochFile(epoch_file, self.config, write, self.echo)
            with self._phase("baseline"):
                how = self.task.prepare_baseline(self.model)
            try:
                self._check_trained("the baseline training diverged", self._change("baseline.lr"))
            except PrunekitError:
                if epoch_file is not None and self.world.is_main:  # nothing there to resume
                    discard_epochs(epoch_file)
                raise
        return {**self._record(0, None, started), "baseline": how, "provenance": self.provenance}

    def _step(self) -> dict[str, Any]:
        n = self.pruner.step_index + 1
        started = time.perf_counter()
        self.phases = {}
        context = self._recovery_context()  # the parent is the model before its first step
        seed_everything(self.config["seed"] + n)
        with self._phase("score"):
            self._score(n)
            self.pruner.all_reduce()  # every rank must choose the same channels
        with self._phase("prune"):
            report = self.pruner.step()
            self._outputs_pruned()
        recovery: dict[str, Any] = {"methods": [], "images": 0, "seconds": 0.0}
        if self.methods:
            if self.config["recovery"]["evaluate_before"] and self.world.is_main:
                with self._phase("evaluate_before"):
                    recovery["before"] = evaluate(self.task, self.model)
            with self._phase("recover"):
                recovery.update(self._recover(n, context))
            self.world.sync_state(self.model)  # every rank recovered alike; rank 0's counts
        return {**self._record(n, report, started), "recovery": recovery}

    def _outputs_pruned(self) -> None:
        kept = self.pruner.output_kept
        if kept is not None:
            self.task.outputs_pruned(kept)

    def _score(self, n: int) -> None:
        if self.pruner.needs_inputs:
            self._observe(n)
        if not self.pruner.needs_grad:
            return
        batches = self.task.score_batches()
        if self.prune["score_batches"] is not None:
            batches = itertools.islice(batches, self.prune["score_batches"])
        self.model.eval()  # score the model as it is: no BatchNorm statistics updates
        self.model.zero_grad()  # training's last gradients must not count as a score batch
        scored = 0
        for batch in self.task.progress(batches, f"score {n}"):
            loss = self.task.loss(self.model, batch)
            self._check_finite(float(loss.detach()), n)
            loss.backward()
            self.pruner.accumulate()
            scored += 1
        if not scored:
            raise PrunekitError(
                f"step {n}: {self.prune['criterion']} needs gradients but the task yielded no "
                "score batches (is the training set smaller than one batch?)"
            )

    def _observe(self, n: int) -> None:
        """Forward passes over the (label-free) recovery batches for an activation criterion."""
        batches: Iterable[Any] = self.task.recovery_batches()
        if self.prune["score_batches"] is not None:
            batches = itertools.islice(batches, self.prune["score_batches"])
        self.model.eval()
        seen = 0
        with torch.no_grad(), self.pruner.observing():
            for batch in self.task.progress(batches, f"score {n}"):
                self.model(self.task.model_inputs(batch))
                seen += 1
        if not seen:
            raise PrunekitError(
                f"step {n}: {self.prune['criterion']} needs forward passes but the task yielded "
                "no recovery batches"
            )

    def _recovery_context(self) -> RecoveryContext | None:
        """The recovery context of this session, built once: it holds the frozen parent (the
        baseline network) and caches its outputs across steps."""
        if self.recovery is None and self.methods:
            parent = self._parent() if any(m.needs_parent for m in self.methods) else None
            self.recovery = RecoveryContext(parent=parent, batches=self.task.recovery_batches)
        return self.recovery

    def _parent(self) -> nn.Module:
        if self.pruner.step_index == 0:
            parent = copy.deepcopy(self.model)
        else:  # resumed after some steps: the baseline is step 0's checkpoint
            parent = self.task.build_model()
            assert self.run_dir is not None
            pk.load(self.run_dir.checkpoint(0), parent)
        parent.to(self.device).eval()
        for p in parent.parameters():
            p.requires_grad_(False)
        return parent

    def _recover(self, n: int, context: RecoveryContext | None) -> dict[str, Any]:
        assert context is not None
        budget = self.config["recovery"]["budget"]
        try:
            reports = recover(
                self.model,
                context.parent,
                self.methods,
                self.task.recovery_batches,
                budget=pk.Budget(**budget),
                task=self.task,
                outputs=self.task.outputs,
                kept=self.pruner.kept,
                output_kept=self.pruner.output_kept,
                inputs=self.task.model_inputs,
                device=self.device,
                log=lambda message: self.echo(f"  {message}"),
                context=context,  # keeps the parent's outputs cached across steps
            )
        except PrunekitError as exc:
            assert self.run_dir is not None
            raise PrunekitError(
                f"step {n}: {exc}; the last good checkpoint is {self.run_dir.latest_checkpoint()}: "
                f"a resumed run reads its settings from {self.run_dir.config}, so make the "
                "change there, then resume"
            ) from None
        return {
            "methods": [
                {"method": r.method, "images": r.images, "seconds": round(r.seconds, 3), **r.stats}
                for r in reports
            ],
            "images": sum(r.images for r in reports),
            "seconds": round(sum(r.seconds for r in reports), 3),
        }

    def _record(self, step: int, report: pk.StepReport | None, started: float) -> dict[str, Any]:
        """The step's record: sizes, latency and metrics, measured by rank 0 for every rank."""
        self.world.sync_buffers(self.model)  # after training: the model rank 0 evaluates
        if not self.world.is_main:  # rank 0 measures, the others take its record
            return self.world.share({})
        if report is None:  # the baseline: nothing planned, nothing removed
            sizes = pk.measure(self.model, self.example)
            achieved = dict.fromkeys(["params", "macs", "channels", self.pruner.target.metric], 0.0)
            planned = {"target": 0.0, **achieved}
        else:
            sizes = {"params": report.params, "macs": report.macs}
            planned, achieved = report.planned, report.achieved
        timing = self.config["latency"]
        with self._phase("latency"):
            latency = measure_latency(
                self.model,
                self.example,
                batch_size=timing["batch_size"],
                threads=timing["threads"] or self.config["threads"],
                repeats=timing["repeats"],
                warmup=timing["warmup"],
                device=self.device,
                runtime=timing["runtime"],
            )
        doubt = reliability(latency)  # noted only when the machine spoilt the measurement
        record = {
            "step": step,
            "params": sizes["params"],
            "macs": sizes["macs"],
            "latency_ms": latency["median_ms"],
            **({"latency_note": f"unreliable: {doubt}"} if doubt else {}),
        }
        with self._phase("evaluate"):
            record["metrics"] = evaluate(self.task, self.model)
        record |= {
            "planned": planned,
            "achieved": achieved,
            "wall_s": round(time.perf_counter() - started, 3),
            "phases_s": dict(self.phases),
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

    def _check_trained(self, what: str, fix: str) -> None:
        """Refuse a baseline holding NaN/inf weights or statistics (BatchNorm's running
        variance overflows first): every later phase would diverge and take the blame."""
        tensors = itertools.chain(self.model.named_parameters(), self.model.named_buffers())
        for name, tensor in tensors:
            if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                raise PrunekitError(f"{what}: {name!r} is not finite; {fix}")

    def _check_finite(self, loss: float, n: int) -> None:
        """Stop at a non-finite scoring loss of step ``n``, naming the phase that made the
        model it scores and what to change if that phase diverged."""
        if math.isfinite(loss):
            return
        assert self.run_dir is not None
        last = self.run_dir.latest_checkpoint()
        methods = self.config["recovery"]["methods"]
        saved = self.config["baseline"]["checkpoint"]
        if n > 1 and methods:  # pruning alone never makes weights diverge
            origin = f"step {n - 1}'s recovery ({'+'.join(methods)})"
            trained = [
                m for m in methods if "lr" in inspect.signature(RECOVERIES.get(m)).parameters
            ]
            change = (
                "lower " + " or ".join(f"recovery.options.{m}.lr" for m in trained)
                if trained
                else "drop a method from recovery.methods"
            )
            fix = f"delete it, {change} in {self.run_dir.config} and resume"
        elif saved:
            origin, fix = f"the baseline checkpoint {saved}", "start a new run from another one"
        else:
            origin, fix = "the baseline training", "start a new run with a lower baseline.lr"
        raise PrunekitError(
            f"step {n}: the scoring loss is {loss}: the run stopped; the last good checkpoint "
            f"is {last}, unless the model it holds diverged in {origin}: then {fix}"
        )

    def _change(self, setting: str) -> str:
        """How to lower ``setting``: a resumed run reads its settings from its config.yaml."""
        if self.run_dir is None:  # a comparison's shared baseline
            return f"lower {setting}"
        root = self.run_dir.root
        return f"lower {setting} in {self.run_dir.config}, then `prunekit run --resume {root}`"

    # ------------------------------------------------------------------ output
    def save(self, path: Path, history: list[dict[str, Any]]) -> None:
        meta = {"task": self.config["task"], "config": self.config, "history": history}
        # the baseline carries no pruning state, so runs with any criterion can share it
        pruner = self.pruner if self.pruner.step_index else None
        save_run(path, self.model, self.task, pruner, meta)

    def _finish(self) -> RunResult:
        run_dir, history = self.run_dir, self.history
        assert run_dir is not None
        best = [r for r in history if self._tolerated(r)][-1]
        trained = [
            n for n, m in zip(self.config["recovery"]["methods"], self.methods) if m.extra_training
        ]
        control = self._control(trained)
        note = control_note(history, trained, control, self.task.primary_metric)
        if self.world.is_main:
            write_report(run_dir, self.config, self.task, history, best, self._settings(), note)
        self.world.barrier()
        target = next(iter(self.config["prune"]["target"]))
        self.echo(run_table(history, self.task.primary_metric, target).render("plain"))
        if note:
            self.echo(note)
        stopped = best is not history[-1]
        if stopped:
            self.echo(
                f"stopped early: {self.task.primary_metric} at step {history[-1]['step']} fell "
                f"more than stop.max_drop={self.config['stop']['max_drop']} below the baseline; "
                f"best.pt is step {best['step']}"
            )
        return RunResult(run_dir.root, history, stopped)

    def _control(self, trained: list[str]) -> dict[str, Any] | None:
        """The control baseline's record (:mod:`~prunekit.runner.control`), trained once and
        kept in the run directory; None where it is not asked for or there is nothing to give."""
        steps = [r["step"] for r in self.history[1:]]
        if not (self.config["baseline"]["control"] and trained and steps):
            return None
        assert self.run_dir is not None
        path = self.run_dir.root / CONTROL
        if path.is_file():  # a finished run re-reported: the control of the same steps holds
            saved = json.loads(path.read_text())
            if saved.get("steps") == steps and saved.get("methods") == trained:
                return saved
        started = time.perf_counter()
        model = self.task.build_model()
        restore_run(self.run_dir.checkpoint(0), model, self.task, rng=False)
        model.to(self.device)
        methods = [m for m in self.methods if m.extra_training]
        images = 0
        for n in steps:  # the training each step's recovery gave, in the same order and seeds
            seed_everything(self.config["seed"] + n)
            self.echo(f"control: the baseline given step {n}'s training ({'+'.join(trained)})")
            reports = recover(
                model,
                None,
                methods,
                self.task.recovery_batches,
                budget=pk.Budget(**self.config["recovery"]["budget"]),
                task=self.task,
                outputs=self.task.outputs,
                inputs=self.task.model_inputs,
                device=self.device,
            )
            images += sum(r.images for r in reports)
            self.world.sync_state(model)
        record = {"steps": steps, "methods": trained, "images": images}
        if self.world.is_main:
            record["metrics"] = evaluate(self.task, model)
        record["seconds"] = round(time.perf_counter() - started, 3)
        record = self.world.share(record)
        if self.world.is_main:
            atomic.write_text(path, json.dumps(record, indent=2) + "\n")
        return record

    @functools.cached_property
    def provenance(self) -> dict[str, str | int]:
        """This session's :func:`provenance` (the step-0 record keeps the run's first)."""
        return provenance(self.task, self.device)

    def banner(self, run_dir: RunDir) -> None:
        self.echo(f"prunekit run {self.config['task']}: {self._settings()}")
        self.echo(f"data: {self.task.describe_data() or 'not described by the task'}")
        data = data_provenance(self.provenance)  # the data line above describes these
        rest = {k: v for k, v in self.provenance.items() if k not in data}
        self.echo(f"provenance: {', '.join(provenance_items(rest))}")
        changes = data_changes(self.history, self.provenance)  # resumed on other data?
        if changes:
            self.echo(f"note: the data differ from those the run started on: {changes}")
        self.echo(f"run dir: {run_dir.root}")

    def _settings(self) -> str:
        p = self.prune
        methods = "+".join(self.config["recovery"]["methods"]) or "none"
        return (
            f"criterion {p['criterion']}, schedule {p['schedule']}, target {self.pruner.target} "
            f"in {counted(p['steps'], 'step')}, {p['scope']} scope, recovery {methods}, "
            f"seed {self.config['seed']}, device {self.device}"
        )

    def _line(self, r: dict[str, Any]) -> str:
        metrics = ", ".join(f"{k} {v:.4f}" for k, v in r["metrics"].items())
        head = (
            f"baseline ({r['baseline']})"
            if r["step"] == 0
            else f"step {r['step']}/{self.prune['steps']}"
        )
        line = (
            f"{head}: params {r['params']:,} (-{r['achieved']['params']:.1%}), "
            f"MACs {r['macs']:,}, latency {r['latency_ms']:.2f} ms, {metrics} [{time_split(r)}]"
        )
        recovery = r.get("recovery") or {}
        primary = self.task.primary_metric
        before = (recovery.get("before") or {}).get(primary)
        if recovery.get("methods") and before is not None:  # rank 0 evaluated before recovery
            line += (
                f"; recovery {'+'.join(m['method'] for m in recovery['methods'])}: "
                f"{primary} {before:.4f} -> {r['metrics'][primary]:.4f}, "
                f"{counted(recovery['images'], 'image')}, {recovery['seconds']:.1f} s"
            )
        return line


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


def provenance(task: Task, device: torch.device) -> dict[str, str | int]:
    """What a run's numbers rest on beyond its configuration: the task's data and model
    (:meth:`~prunekit.Task.provenance`), the software (prunekit, its git commit where it runs
    from a checkout, torch) and the machine (device, CPU threads)."""
    found: dict[str, str | int] = {**task.provenance(), "prunekit": pk.__version__}
    commit = git_commit()
    if commit:
        found["git"] = commit
    found.update(torch=str(torch.__version__), device=str(device), threads=torch.get_num_threads())
    return found


@functools.cache
def git_commit() -> str | None:
    """The short commit of prunekit's source checkout, ``+dirty`` with uncommitted changes;
    None for an installed package or where git is missing or fails."""
    source = Path(pk.__file__).resolve().parent.parent
    if not (source / ".git").exists():
        return None

    def git(*args: str) -> str:
        command = ["git", "-C", str(source), *args]
        return subprocess.run(
            command, capture_output=True, text=True, timeout=10, check=True
        ).stdout

    try:
        head = git("rev-parse", "--short=12", "HEAD").strip()
        dirty = bool(git("status", "--porcelain", "--untracked-files=no").strip())
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}+dirty" if dirty else head


def data_changes(history: list[dict[str, Any]], now: dict[str, str | int]) -> str | None:
    """How the data of provenance ``now`` differ from those a run recorded in the step-0
    record of ``history``: ``key: recorded -> now`` items, empty when alike; None when the run
    recorded none (made by an older prunekit, or not by a run)."""
    recorded = data_provenance((history[0].get("provenance") or {}) if history else {})
    if not recorded:
        return None
    current = data_provenance(now)
    return "; ".join(
        f"{key}: {recorded.get(key, '(none)')} -> {current.get(key, '(none)')}"
        for key in dict.fromkeys([*recorded, *current])
        if recorded.get(key) != current.get(key)
    )


#: keys whose values do not change how a baseline measures (a comparison varies them)
_RUN_KEYS = ("seed", "prune", "recovery", "stop", "baseline")


def _same_evaluation(meta: dict[str, Any], config: dict[str, Any]) -> bool:
    """Whether a checkpoint's baseline record holds for ``config``: same task and settings,
    apart from how the run prunes and recovers."""
    saved = meta.get("config") or {}

    def strip(c: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in c.items() if k not in _RUN_KEYS}

    return meta.get("task") == config["task"] and strip(saved) == strip(config)


def _silent(_message: str) -> None:
    """The echo of ranks other than 0."""
