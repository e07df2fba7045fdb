"""The ``prunekit`` command line: list, run, compare, report, eval, latency, export, inspect.

Every :class:`~prunekit.PrunekitError` becomes one line ``prunekit: error: ...`` and exit
status 2; an interrupted command exits with 130. Each command imports what it needs (torch
above all) when it runs, so that ``--help`` and usage errors answer at once.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prunekit.allocator import keep_freed_memory
from prunekit.errors import PrunekitError
from prunekit.reporting.inspect import FORMATS as INSPECT_FORMATS
from prunekit.reporting.tables import FORMATS
from prunekit.runner.interrupt import Interrupted, raise_on_signals

if TYPE_CHECKING:
    from prunekit.runner.distributed import World

KINDS = ("tasks", "criteria", "schedules", "recoveries")
#: :data:`prunekit.runner.export.FORMATS`, which imports torch (a test checks they agree)
EXPORT_FORMATS = ("onnx", "pt2")


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); the exit status."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help or a usage error (argparse already printed it)
        return int(exc.code or 0)
    args.argv = sys.argv[1:] if argv is None else list(argv)
    keep_freed_memory()  # 2-3x faster CPU passes; see prunekit.allocator
    try:
        with raise_on_signals():
            return args.command(args)
    except PrunekitError as exc:
        print(f"prunekit: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a full disk, a lost mount: what was written atomically is intact
        where = f" {exc.filename}" if exc.filename else ""
        print(
            f"prunekit: error: file system error{where} ({exc.strerror or exc}): free some "
            "space or choose another path, then run the command again",
            file=sys.stderr,
        )
        return 2
    except Interrupted as exc:
        print(f"prunekit: interrupted by {exc}", file=sys.stderr)
        return 130


# ---------------------------------------------------------------------- commands
def _list(args: argparse.Namespace) -> int:
    from prunekit.registry import registry

    for kind in [args.kind] if args.kind else KINDS:
        reg = registry(kind)
        print(f"{kind}:")
        for name in reg.names():
            print(f"  {name:<18} {reg.describe(name)}  [{reg.source(name)}]")
        for name, why in reg.broken().items():
            print(f"  {name:<18} BROKEN: {why}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from prunekit.runner import run
    from prunekit.runner.distributed import World
    from prunekit.runner.rundir import default_root

    echo = _echo(args.quiet)
    if args.resume:
        out, config = Path(args.resume), None
        flags = [v for v in _config_args(args).values() if v is not None]
        if args.task or args.out or args.config or args.set or flags:
            raise PrunekitError(
                f"--resume continues {out} with its own config.yaml: drop the task and the "
                "config flags"
            )
    elif not args.task:
        raise PrunekitError("name a task (see `prunekit list tasks`) or pass --resume RUN_DIR")
    else:
        config = _resolve(args)
        out = Path(args.out) if args.out else default_root(args.task, config["prune"]["criterion"])
    world = World.from_env()
    if args.nproc is not None and args.nproc != world.size:
        return _launch(args, out, fresh=config is not None, world=world)
    try:
        if config is None:
            result = run.resume(out, quiet=args.quiet, echo=echo, data=args.data)
        else:
            result = run.start(config, out, quiet=args.quiet, echo=echo)
    except Interrupted:
        if world.is_main:
            print(f"interrupted: continue with `prunekit run --resume {out}`", file=sys.stderr)
        return 130
    if world.is_main:
        print(f"done: {result.run_dir / 'report.md'}")
    return 0


def _launch(args: argparse.Namespace, out: Path, fresh: bool, world: World) -> int:
    """``prunekit run --nproc N``: these very arguments again in N processes, as torchrun runs
    them; a new run's directory is fixed here so that every process uses the same."""
    from prunekit.runner.distributed import launch
    from prunekit.runner.rundir import RunDir

    if world.size > 1:
        raise PrunekitError(
            f"--nproc {args.nproc} disagrees with torchrun's {world.size} processes: drop --nproc"
        )
    if args.nproc < 1:
        raise PrunekitError(f"--nproc {args.nproc} is out of range: give an integer >= 1")
    argv = args.argv
    if fresh:
        RunDir(out).ensure_new()  # the config is valid too: fail here, before any process starts
        argv = [*argv, "--out", str(out)]
    return launch(args.nproc, argv)


def _compare(args: argparse.Namespace) -> int:
    from prunekit.runner import compare

    config = _resolve(args)
    criteria = list(dict.fromkeys(n.strip() for n in args.criteria.split(",") if n.strip()))
    recipes = None
    if args.recoveries is not None:
        recipes = list(dict.fromkeys(r.strip() for r in args.recoveries.split(",") if r.strip()))
        if not recipes:
            raise PrunekitError("--recoveries is empty: e.g. none,reconstruct,reconstruct+distill")
    result = compare.compare(
        config,
        criteria,
        seeds=args.seeds,
        out=Path(args.out) if args.out else None,
        jobs=args.jobs,
        quiet=args.quiet,
        recipes=recipes,
    )
    print(result.table.render("plain"), end="")
    print(f"done: {result.out / 'results.md'}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from prunekit.registry import registry
    from prunekit.reporting import run_table
    from prunekit.runner.rundir import RunDir

    run_dir = RunDir(Path(args.run_dir))
    config = run_dir.read_config()
    task = registry("tasks").get(config["task"])
    (target,) = config["prune"]["target"]
    print(run_table(run_dir.read_log(), task.primary_metric, target).render(args.format), end="")
    return 0


def _eval(args: argparse.Namespace) -> int:
    import prunekit as pk
    from prunekit.runner import run
    from prunekit.runner.checkpoint import open_checkpoint

    opened = open_checkpoint(Path(args.checkpoint), args.task, data=args.data)
    opened.task.show_progress = not args.quiet
    print(f"data: {opened.task.describe_data() or 'not described by the task'}")
    changes = run.data_changes(opened.meta.get("history") or [], opened.task.provenance())
    if changes is None:
        print(f"note: {opened.path} records no data provenance: the data cannot be checked")
    elif changes and args.data is None:
        raise PrunekitError(
            f"these are not the data {opened.path} was run on ({changes}): pass --data DIR to "
            "evaluate on other data on purpose"
        )
    elif changes:
        print(f"note: evaluating on other data than the run used ({changes})")
    metrics = run.evaluate(opened.task, opened.model)
    sizes = pk.measure(opened.model, opened.task.example_inputs())
    print(f"{opened.path}: params {sizes['params']:,}, MACs {sizes['macs']:,}")
    for name, value in metrics.items():
        print(f"{name}: {value:.6g}")
    return 0


def _latency(args: argparse.Namespace) -> int:
    from prunekit import atomic
    from prunekit.runner.speed import speed_table

    batches = _int_list(args.batch, "--batch")
    table = speed_table(
        Path(args.folder),
        batches,
        args.threads,
        args.device,
        repeats=args.repeats,
        runtime=args.runtime,
    )
    text = table.render(args.format)
    if args.out:
        atomic.write_text(args.out, text)
    if args.plot:
        from prunekit.runner.speed import latency_plot

        latency_plot(Path(args.folder), table, Path(args.plot))
    print(text, end="")
    return 0


def _int_list(text: str, flag: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise PrunekitError(f"{flag} {text!r} is not a list of positive integers: e.g. 1,32")
    return values


def _export(args: argparse.Namespace) -> int:
    from prunekit.runner import export

    out = export.export(
        Path(args.source), args.format, args.out and Path(args.out), args.task, fuse=args.fuse
    )
    print(f"exported {out} (matches PyTorch to {export.TOLERANCE:g} on random inputs)")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from prunekit.reporting.inspect import render
    from prunekit.runner import inspect

    if ":" not in args.target:
        if args.input_shape is not None:
            raise PrunekitError(
                f"--input-shape is for a module:function: task {args.target!r} gives its own "
                "example inputs"
            )
        found = inspect.describe_task(args.target, args.config, args.set, args.preset, args.data)
    else:
        task_flags = {
            "--config": args.config,
            "--set": args.set,
            "--preset": args.preset,
            "--data": args.data,
        }
        given = [flag for flag, value in task_flags.items() if value]
        if given:
            raise PrunekitError(f"{given[0]} configures a task, not the factory {args.target!r}")
        shape = None if args.input_shape is None else _int_list(args.input_shape, "--input-shape")
        found = inspect.describe_factory(args.target, shape)
    print(render(found, args.format), end="")
    return 0


# ---------------------------------------------------------------------- helpers
def _resolve(args: argparse.Namespace) -> dict[str, Any]:
    import prunekit as pk
    from prunekit.runner.config import resolve

    flags = _config_args(args)
    if flags.get("prune.target") is not None:
        flags["prune.target"] = pk.Target.split(flags["prune.target"])
    if flags.get("recovery.methods") is not None:
        text = flags["recovery.methods"]
        flags["recovery.methods"] = (
            [] if text == "none" else [m.strip() for m in text.split(",") if m.strip()]
        )
    return resolve(args.task, args.config, flags, args.set, preset=args.preset, data=args.data)


def _config_args(args: argparse.Namespace) -> dict[str, Any]:
    """Dotted config key -> value of each config flag (``None`` = not given)."""
    keys = {
        "criterion": "prune.criterion",
        "schedule": "prune.schedule",
        "target": "prune.target",
        "steps": "prune.steps",
        "scope": "prune.scope",
        "seed": "seed",
        "device": "device",
        "threads": "threads",
        "max_drop": "stop.max_drop",
        "recovery": "recovery.methods",
    }
    return {key: getattr(args, attr, None) for attr, key in keys.items()}


def _echo(quiet: bool) -> Callable[[str], None]:
    return (lambda _message: None) if quiet else print


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prunekit", description="Dependency-graph-aware structured pruning for PyTorch."
    )
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    p = sub.add_parser("list", help="registered tasks, criteria, schedules and recoveries")
    p.add_argument("kind", nargs="?", choices=KINDS)
    p.set_defaults(command=_list)

    p = sub.add_parser("run", help="prune a task's model step by step")
    p.add_argument("task", nargs="?", help="task name (see `prunekit list tasks`)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    p.add_argument("--criterion", help="importance criterion (see `prunekit list criteria`)")
    _config_flags(p)
    p.add_argument("--out", metavar="DIR", help="run dir (default runs/TASK-CRITERION-TIME)")
    p.add_argument(
        "--nproc", type=int, metavar="N", help="data-parallel processes on this machine (DDP)"
    )
    p.set_defaults(command=_run)

    p = sub.add_parser("compare", help="compare criteria over seeds from one baseline")
    p.add_argument("task", help="task name (see `prunekit list tasks`)")
    p.add_argument("--criteria", required=True, help="comma-separated, e.g. taylor,l1,random")
    p.add_argument("--seeds", type=int, default=1, help="seeds per criterion (default 1)")
    p.add_argument(
        "--recoveries",
        metavar="RECIPES",
        help="recovery recipes side by side, e.g. none,reconstruct,reconstruct+distill",
    )
    p.add_argument("--jobs", type=int, default=1, help="runs in parallel processes")
    _config_flags(p)
    p.add_argument("--out", metavar="DIR", help="output dir (default runs/TASK-compare-TIME)")
    p.set_defaults(command=_compare)

    p = sub.add_parser("report", help="print a run's table")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--format", choices=FORMATS, default="plain")
    p.set_defaults(command=_report)

    p = sub.add_parser("eval", help="evaluate a checkpoint")
    p.add_argument("checkpoint", metavar="CHECKPOINT")
    p.add_argument("--task", help="task, for checkpoints that do not name theirs")
    p.add_argument(
        "--data",
        metavar="DIR",
        help="evaluate on this data folder instead (without it, data other than the run's fail)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(command=_eval)

    p = sub.add_parser("latency", help="time every checkpoint of a run or comparison")
    p.add_argument("folder", metavar="RUN_DIR|COMPARE_DIR")
    p.add_argument("--batch", default="1,32", help="batch sizes (default 1,32)")
    p.add_argument("--threads", type=int, help="CPU threads (default: torch's)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    p.add_argument("--repeats", type=int, default=9, help="timed passes per batch size")
    p.add_argument(
        "--runtime",
        default="torch",
        help="torch (eager) or onnxruntime (exported, BatchNorms folded; default torch)",
    )
    p.add_argument("--format", choices=FORMATS, default="plain")
    p.add_argument("--out", metavar="FILE", help="also write the table to FILE")
    p.add_argument(
        "--plot",
        metavar="PNG",
        help="a comparison's plot redrawn with these latencies (largest batch)",
    )
    p.set_defaults(command=_latency)

    p = sub.add_parser("export", help="export a checkpoint to ONNX or torch.export (.pt2)")
    p.add_argument("source", metavar="RUN_DIR|CHECKPOINT")
    p.add_argument("--format", choices=EXPORT_FORMATS, required=True)
    p.add_argument("--out", metavar="FILE", help="default: the checkpoint path, new suffix")
    p.add_argument("--task", help="task, for checkpoints that do not name theirs")
    p.add_argument(
        "--no-fuse",
        dest="fuse",
        action="store_false",
        help="keep the BatchNorms (default: fold them into the layers before them)",
    )
    p.set_defaults(command=_export)

    p = sub.add_parser("inspect", help="show a model's channel groups and why layers are left out")
    p.add_argument("target", metavar="TASK|MODULE:FUNCTION", help="a task, or a model factory")
    p.add_argument(
        "--input-shape",
        metavar="SHAPE",
        help="shape of a factory's random example input (default 1,3,224,224)",
    )
    p.add_argument("--preset", help="a named configuration the task ships")
    p.add_argument("--config", metavar="FILE", help="YAML file of the task's config overrides")
    p.add_argument("--data", metavar="DIR", help="dataset folder, for tasks that read one")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="any config key (YAML)"
    )
    p.add_argument("--format", choices=INSPECT_FORMATS, default="plain")
    p.set_defaults(command=_inspect)
    return parser


def _config_flags(p: argparse.ArgumentParser) -> None:
    """The flags that override configuration keys, shared by ``run`` and ``compare``."""
    p.add_argument("--preset", help="a named configuration the task ships (e.g. face: paper)")
    p.add_argument("--config", metavar="FILE", help="YAML file of config overrides")
    p.add_argument("--data", metavar="DIR", help="dataset folder, for tasks that read one")
    p.add_argument(
        "--recovery",
        metavar="METHODS",
        help="recovery after each step, e.g. reconstruct,distill (or none)",
    )
    p.add_argument("--schedule", help="pruning schedule (see `prunekit list schedules`)")
    p.add_argument(
        "--target",
        metavar="KIND=VALUE",
        help="what to reach: params=0.4, macs=0.4 or channels=0.4 (fraction removed), "
        "latency=0.6 (measured time kept, as a fraction of the unpruned model's)",
    )
    p.add_argument("--steps", type=int, help="pruning steps")
    p.add_argument("--scope", help="local (per layer) or global ranking")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="auto, cpu or cuda")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--max-drop", type=float, help="stop once the primary metric drops this much")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="any config key (YAML)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars or step lines")
