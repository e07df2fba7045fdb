"""Run configuration: the declaration of every key, layered merging and validation.

A run's configuration is a nested dict resolved from, lowest to highest precedence: the declared
defaults (:class:`RunConfig` plus the task's own :attr:`~prunekit.Task.sections`), the task's
``default_config()`` overrides, a preset, a YAML file, command-line flags, then ``--set
key=value`` overrides. Each layer is checked against the declaration before it is merged, so an
error names the layer it came from; nothing is written before everything has passed.

The sections reuse the engine's own settings types (:class:`~prunekit.PruneSettings`,
:class:`~prunekit.latency.LatencySettings`, :class:`~prunekit.recovery.budget.Budget`), so each
rule and its message exist once, and the docs' configuration reference is generated from here.
"""

from __future__ import annotations

import copy
import functools
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import Field, create_model

from prunekit import yamlfile
from prunekit.device import MAX_THREADS, DeviceName
from prunekit.errors import PrunekitError
from prunekit.latency import LatencySettings
from prunekit.pruner import PruneSettings
from prunekit.recovery.budget import Budget
from prunekit.registry import CRITERIA, RECOVERIES, SCHEDULES, TASKS
from prunekit.settings import Settings, check, sections
from prunekit.tasks.base import Task

#: where ``--data`` falls back to when a task reads a data folder and none is given
DATA_ENV = "PRUNEKIT_DATA"


class BaselineSettings(Settings):
    """Where the run starts from."""

    epochs: int = Field(
        1,
        ge=0,
        description="Epochs of the default baseline recipe (`Task.prepare_baseline` trains from "
        "scratch); a task that loads pretrained weights may ignore it.",
    )
    lr: float = Field(0.01, gt=0, description="Learning rate of the default baseline recipe.")
    checkpoint: str | None = Field(
        None,
        description="Start from this checkpoint (a run's `checkpoints/step-0.pt`, a comparison's "
        "`baseline.pt`) instead of preparing the baseline: the network and the task's training "
        "state are loaded, the recipe is skipped.",
    )
    control: bool = Field(
        False,
        description="At the end of the run, also give a copy of the baseline the training that "
        "recovery gave the pruned network (the methods that train on the task's own targets, "
        "e.g. `finetune`, step by step with the same options and budget) and report it beside "
        "the baseline, so that a pruned model beating the baseline is not an artifact of that "
        "extra training.",
    )


class PruneConfig(PruneSettings):
    """The ``prune`` section: the Pruner's settings plus the names it looks up."""

    criterion: str = Field(
        "taylor",
        description="Importance criterion: a built-in (see [Concepts](concepts.md#criteria)) "
        "or a plugin's name (`prunekit list criteria`).",
    )
    criterion_options: dict[str, Any] = Field(
        default_factory=dict,
        description="Keyword arguments of the criterion's constructor, e.g. `{variant: param}` "
        "for `taylor` or `{normalize: l2}`. Replaced whole by an override.",
    )
    schedule: str = Field(
        "linear",
        description="How the target is spread over the steps "
        "(see [Concepts](concepts.md#schedules)).",
    )
    ignored_layers: list[str] = Field(
        default_factory=list,
        description="Layers (qualified names, e.g. `features.fire9.expand1x1`; a block names "
        "all its layers) whose output channels stay whole, besides the task's own "
        "(`Task.ignored_layers`). `prunekit inspect` lists the names.",
    )
    score_batches: int | None = Field(
        None,
        ge=1,
        le=2**31 - 1,
        description="Batches scored before each step: of `Task.score_batches()` (loss and "
        "gradients) for a gradient criterion, of `Task.recovery_batches()` (forward passes "
        "only) for an activation criterion such as `obs`; `null` = one whole epoch.",
    )


class RecoverySettings(Settings):
    """How a pruned network gets its function back after every step."""

    methods: list[str] = Field(
        default_factory=lambda: ["finetune"],
        description="Recovery methods run in this order after every pruning step "
        "(`prunekit list recoveries`); `[]` = none.",
    )
    options: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Keyword arguments of each method's constructor, by method name, e.g. "
        "`{distill: {lr: 1e-3}}`. An override merges option by option "
        "(`--set recovery.options.distill.lr=3e-4` keeps distill's other options).",
    )
    budget: Budget = Field(default_factory=Budget, description="Budget of one step's recovery.")
    evaluate_before: bool = Field(
        True,
        description="Also evaluate each pruned model before its recovery (the record's "
        "`recovery.before`), so the log shows what recovery bought; `false` saves one "
        "evaluation per step.",
    )


class StopSettings(Settings):
    """When a run stops before its last step."""

    max_drop: float | None = Field(
        None,
        ge=0,
        description="Stop once the primary metric falls more than this below the baseline (in "
        "the metric's own units); `best.pt` is then the last step within it. `null` = never.",
    )


class RunConfig(Settings):
    """Every generic key of a run."""

    task: str | None = Field(
        None,
        description="The task being run. Filled in from the command line; a value in a file "
        "is overwritten.",
    )
    seed: int = Field(
        0,
        ge=0,
        le=2**32 - 1,
        description="Seeds Python's, NumPy's and torch's RNGs; step N reseeds with `seed + N`. "
        "`prunekit compare --seeds K` runs `seed`, `seed + 1`, ... `seed + K - 1`.",
    )
    device: DeviceName = Field(
        "auto",
        description="`auto` is CUDA when available, else the CPU. Asking for `cuda` without "
        "CUDA is an error.",
    )
    threads: int | None = Field(
        None,
        ge=1,
        le=MAX_THREADS,
        description="torch CPU threads for the run and the latency measurement; `null` keeps "
        "torch's default.",
    )
    timeout_s: float = Field(
        1800.0,
        gt=0,
        le=7 * 24 * 3600,
        description="Data-parallel runs: seconds a process waits for the others at a "
        "collective (rank 0 evaluating, saving) before the run stops with an error naming "
        "the processes that stopped answering.",
    )
    baseline: BaselineSettings = Field(default_factory=BaselineSettings)
    prune: PruneConfig = Field(default_factory=PruneConfig)
    recovery: RecoverySettings = Field(default_factory=RecoverySettings)
    stop: StopSettings = Field(default_factory=StopSettings)
    latency: LatencySettings = Field(default_factory=LatencySettings)


@functools.cache
def schema(task_cls: type[Task] | None = None) -> type[RunConfig]:
    """The declaration of a run of ``task_cls``: the generic keys plus the task's sections."""
    extra = dict(task_cls.sections) if task_cls is not None else {}
    clash = sorted(set(extra) & set(RunConfig.model_fields))
    if clash:
        raise PrunekitError(
            f"task {task_cls.__name__} declares section {clash[0]!r}, which is a generic "
            "section: rename it"
        )
    if not extra:
        return RunConfig
    fields: dict[str, Any] = {
        name: (cls, Field(default_factory=cls)) for name, cls in extra.items()
    }
    return create_model(f"{task_cls.__name__}Config", __base__=RunConfig, **fields)


def defaults(task_cls: type[Task] | None = None) -> dict[str, Any]:
    """The declared defaults of a run of ``task_cls``, with the task's overrides applied."""
    base = schema(task_cls)().model_dump()
    if task_cls is None:
        return base
    overrides = task_cls.default_config()
    check(schema(task_cls), overrides, f"{task_cls.__name__}.default_config()")
    return merge(base, overrides, task_cls)


#: the recovery methods' options: merged by method, then option by option
RECOVERY_OPTIONS = "recovery.options"


def merge(
    base: dict[str, Any], override: dict[str, Any], task_cls: type[Task] | None = None
) -> dict[str, Any]:
    """``base`` updated with ``override`` (neither is modified): declared sections and the
    recovery methods' options merge key by key, every other value (a target, the criterion's
    options, which belong to one criterion) is replaced whole."""
    merged_into = set(sections(schema(task_cls)))

    def merges(path: str) -> bool:
        parent, _, _ = path.rpartition(".")
        return path in merged_into or RECOVERY_OPTIONS in (path, parent)

    def walk(base: dict[str, Any], override: dict[str, Any], prefix: str) -> dict[str, Any]:
        out = copy.deepcopy(base)
        for key, value in override.items():
            path = prefix + key
            old = out.get(key)
            if isinstance(old, dict) and isinstance(value, dict) and merges(path):
                out[key] = walk(old, value, path + ".")
            else:
                out[key] = copy.deepcopy(value)
        return out

    return walk(base, override, "")


def unflatten(flat: dict[str, Any]) -> dict[str, Any]:
    """``{"a.b": 1}`` -> ``{"a": {"b": 1}}``."""
    nested: dict[str, Any] = {}
    for dotted, value in flat.items():
        *parents, leaf = dotted.split(".")
        node = nested
        for depth, part in enumerate(parents, start=1):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                parent = ".".join(parents[:depth])
                raise PrunekitError(
                    f"config key {dotted!r} cannot be set: {parent!r} is already set to "
                    f"{node!r}, not a mapping; drop one of the two"
                )
        node[leaf] = value
    return nested


def load_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML config file as a dict; errors name the file, line and column."""
    return yamlfile.load_mapping(path)


def parse_sets(items: Iterable[str]) -> dict[str, Any]:
    """``["prune.steps=3"]`` -> ``{"prune": {"steps": 3}}``; values are parsed as YAML."""
    flat = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise PrunekitError(f"--set expects KEY=VALUE (e.g. prune.steps=3), got {item!r}")
        try:
            flat[key.strip()] = yamlfile.parse(text, f"--set {item}")
        except PrunekitError:
            raise PrunekitError(f"--set {item}: value is not valid YAML") from None
    return unflatten(flat)


def resolve(
    task: str,
    config_file: str | Path | None = None,
    flags: dict[str, Any] | None = None,
    sets: Iterable[str] = (),
    preset: str | None = None,
    data: str | Path | None = None,
) -> dict[str, Any]:
    """The validated configuration of a new run of ``task``.

    ``preset`` names one of the task's :attr:`~prunekit.Task.presets`; ``flags`` maps dotted
    keys to command-line values (``None`` = flag not given); ``sets`` are raw ``KEY=VALUE``
    strings; ``data`` is the ``--data`` folder, stored under the task's
    :attr:`~prunekit.Task.data_key` (default ``$PRUNEKIT_DATA``), as an absolute path.
    """
    task_cls = TASKS.get(task)
    if preset is not None and preset not in task_cls.presets:
        known = ", ".join(sorted(task_cls.presets)) or "none"
        raise PrunekitError(f"task {task!r} has no preset {preset!r}: its presets are {known}")
    layers = [
        (task_cls.presets.get(preset or "", {}), f"preset {preset}"),
        (load_yaml(config_file) if config_file else {}, str(config_file)),
        (unflatten({k: v for k, v in (flags or {}).items() if v is not None}), "the flags"),
        (parse_sets(sets), "--set"),
    ]
    config = defaults(task_cls)
    for layer, source in layers:
        check(schema(task_cls), layer, source)
        config = merge(config, layer, task_cls)
    config["task"] = task
    config = _with_data_root(config, task_cls, data)
    return _checked(config, task_cls, "the configuration")


def validate(config: dict[str, Any], source: str) -> dict[str, Any]:
    """Check a resolved configuration (e.g. a run dir's ``config.yaml``); fill in missing keys."""
    if not isinstance(config, dict):
        raise PrunekitError(f"{source} must hold a mapping, not {type(config).__name__}")
    if not isinstance(config.get("task"), str):
        raise PrunekitError(
            f"{source} names no task: add a line `task: NAME` (see `prunekit list tasks`)"
        )
    task_cls = TASKS.get(config["task"])
    check(schema(task_cls), config, source)
    return _checked(merge(defaults(task_cls), config, task_cls), task_cls, source)


def with_data_root(config: dict[str, Any], data: str | Path) -> dict[str, Any]:
    """``config`` with its task's data folder moved to ``data`` (``eval``/``--resume`` of a run
    whose data moved)."""
    task_cls = TASKS.get(str(config["task"]))
    return _checked(_with_data_root(config, task_cls, data), task_cls, "--data")


def data_root(config: dict[str, Any]) -> str | None:
    """The data folder a configuration's task reads (``None`` for tasks that read none)."""
    key = TASKS.get(str(config["task"])).data_key
    if key is None:
        return None
    node: Any = config
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _with_data_root(
    config: dict[str, Any], task_cls: type[Task], data: str | Path | None
) -> dict[str, Any]:
    key = task_cls.data_key
    if key is None:
        if data is not None:
            raise PrunekitError(
                f"task {config['task']!r} reads no data folder, so --data {data} has no effect: "
                "drop it"
            )
        return config
    current = data_root(config)
    chosen = data if data is not None else current or os.environ.get(DATA_ENV) or None
    if chosen is None:
        return config
    # stored absolute, so that eval and resume work from any directory
    absolute = str(Path(chosen).expanduser().resolve())
    return merge(config, unflatten({key: absolute}), task_cls)


def _checked(config: dict[str, Any], task_cls: type[Task], source: str) -> dict[str, Any]:
    """The whole configuration checked against the declaration, and its registry names."""
    config = check(schema(task_cls), config, source).model_dump()
    CRITERIA.get(config["prune"]["criterion"])  # unknown names list the known ones
    SCHEDULES.get(config["prune"]["schedule"])
    methods = config["recovery"]["methods"]
    for name in methods:
        RECOVERIES.get(name)
    unused = sorted(set(config["recovery"]["options"]) - set(methods))
    for name in unused:
        RECOVERIES.get(name)  # a misspelt method name in options is a mistake too
    return config
