"""Run configuration: generic defaults, layered merging and validation with helpful errors.

A configuration is a nested dict resolved from, lowest to highest precedence: ``DEFAULTS``, the
task's ``default_config()``, a YAML file, command-line flags, then ``--set key=value``
overrides. The merged defaults double as the schema: a key's type is its default's type
(``None`` accepts anything) and ``RANGES`` / ``CHOICES`` (plus ``Task.config_ranges``) bound
its value. Everything is checked before a run writes a single file.
"""

from __future__ import annotations

import copy
import difflib
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

from prunekit.errors import PrunekitError
from prunekit.registry import CRITERIA, SCHEDULES, TASKS
from prunekit.tasks.base import Task

DEFAULTS: dict[str, Any] = {
    "task": None,
    "seed": 0,
    "device": "auto",  # auto = cuda when available, else cpu
    "threads": None,  # torch CPU threads; None = torch's default
    "baseline": {"epochs": 1, "lr": 0.01},  # used by Task.prepare_baseline's default
    "prune": {
        "criterion": "taylor",
        "criterion_options": {},
        "schedule": "linear",
        "target": {"params": 0.5},  # fraction to remove: one of params, macs, channels
        "steps": 4,
        "scope": "local",
        "round_to": "auto",  # "auto", null or an int: see prunekit.engine.planner.AUTO_ROUND
        "min_channels": 1,
        "score_batches": None,  # batches scored per step; None = a whole epoch
    },
    "finetune": {"epochs": 1, "lr": 0.01},
    "stop": {"max_drop": None},  # stop once the primary metric drops more than this
    "latency": {"batch_size": 32, "repeats": 9, "warmup": 2, "threads": None},
}

#: Allowed numeric ranges ``(low, high)``, ``None`` = unbounded. Bounds are inclusive for
#: integer keys and exclusive for float keys (so ``lr`` must be > 0 but ``epochs`` may be 0).
RANGES: dict[str, tuple[float | None, float | None]] = {
    "seed": (0, None),
    "threads": (1, None),
    "baseline.epochs": (0, None),
    "baseline.lr": (0.0, None),
    "prune.steps": (1, None),
    "prune.min_channels": (1, None),
    "prune.score_batches": (1, None),
    "finetune.epochs": (0, None),
    "finetune.lr": (0.0, None),
    "stop.max_drop": (0.0, None),
    "latency.batch_size": (1, None),
    "latency.repeats": (1, None),
    "latency.warmup": (0, None),
    "latency.threads": (1, None),
}

CHOICES: dict[str, tuple[str, ...]] = {
    "device": ("auto", "cpu", "cuda"),
    "prune.scope": ("local", "global"),
}

TARGET_KINDS = ("params", "macs", "channels")

#: Mappings that are values rather than sections: an override replaces them whole instead of
#: being merged key by key (``target: {macs: 0.3}`` must not keep the default ``params``).
ATOMIC = {"prune.target", "prune.criterion_options"}


class _Loader(yaml.SafeLoader):
    """YAML's safe loader, except that ``1e-4`` is a float (PyYAML follows YAML 1.1 and
    would read it as a string, which trips every learning rate written that way)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
    list("-+.0123456789"),
)


def merge(base: dict[str, Any], override: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``base`` updated recursively with ``override`` (neither is modified)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        path = prefix + key
        old = out.get(key)
        if isinstance(old, dict) and isinstance(value, dict) and path not in ATOMIC:
            out[key] = merge(old, value, path + ".")
        elif isinstance(old, float) and _is_int(value):
            out[key] = float(value)  # YAML reads `lr: 1` as an int
        else:
            out[key] = copy.deepcopy(value)
    return out


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
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise PrunekitError(f"cannot read config file {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        raise PrunekitError(
            f"config file {path}, line {line}, is not UTF-8 text: save it as UTF-8"
        ) from exc
    try:
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise PrunekitError(f"malformed YAML in {where}: {problem}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise PrunekitError(f"config file {path} must hold a mapping, not {type(data).__name__}")
    return data


def parse_sets(items: Iterable[str]) -> dict[str, Any]:
    """``["prune.steps=3"]`` -> ``{"prune": {"steps": 3}}``; values are parsed as YAML."""
    flat = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise PrunekitError(f"--set expects KEY=VALUE (e.g. prune.steps=3), got {item!r}")
        try:
            flat[key.strip()] = yaml.load(text, Loader=_Loader)
        except yaml.YAMLError as exc:
            raise PrunekitError(f"--set {item}: value is not valid YAML") from exc
    return unflatten(flat)


def parse_target(text: str) -> dict[str, float]:
    """``"params=0.4"`` -> ``{"params": 0.4}`` (the ``--target`` flag)."""
    kind, sep, value = text.partition("=")
    if sep and kind.strip():
        try:
            return {kind.strip(): float(value)}
        except ValueError:
            pass
    kinds = "|".join(TARGET_KINDS)
    raise PrunekitError(f"--target expects {kinds}=FRACTION (e.g. params=0.4), got {text!r}")


def resolve(
    task: str,
    config_file: str | Path | None = None,
    flags: dict[str, Any] | None = None,
    sets: Iterable[str] = (),
    preset: str | None = None,
) -> dict[str, Any]:
    """The validated configuration of a run of ``task``.

    ``preset`` names one of the task's :attr:`~prunekit.Task.presets`, applied over its
    defaults; ``flags`` maps dotted keys to command-line values (``None`` = flag not given);
    ``sets`` are raw ``KEY=VALUE`` strings.
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
    schema = _schema(task_cls)
    config = merge(DEFAULTS, task_cls.default_config())
    for layer, source in layers:
        _check_keys_and_types(layer, schema, source)
        config = merge(config, layer)
    config["task"] = task
    _check_values(config, task_cls)
    return config


def validate(config: dict[str, Any], source: str) -> dict[str, Any]:
    """Check a resolved configuration (e.g. a run dir's ``config.yaml``); fill in missing keys."""
    task_cls = TASKS.get(str(config.get("task")))
    _check_keys_and_types(config, _schema(task_cls), source)
    config = merge(merge(DEFAULTS, task_cls.default_config()), config)
    _check_values(config, task_cls)
    return config


def _schema(task_cls: type[Task]) -> dict[str, Any]:
    # Like the merged defaults, except that a generic ``None`` (any value) stays ``None`` so a
    # task default of 4 does not forbid ``prune.score_batches: null``.
    def keep_none(generic: dict[str, Any], merged: dict[str, Any]) -> dict[str, Any]:
        for key, value in generic.items():
            if value is None:
                merged[key] = None
            elif isinstance(value, dict) and isinstance(merged.get(key), dict):
                keep_none(value, merged[key])
        return merged

    schema = keep_none(DEFAULTS, merge(DEFAULTS, task_cls.default_config()))
    schema["prune"]["round_to"] = None  # a string or an int: checked by _check_round_to
    return schema


def _check_keys_and_types(layer: dict[str, Any], schema: dict[str, Any], source: str) -> None:
    known = [path for path, _ in _leaves(schema)]

    def check(layer: dict[str, Any], schema: dict[str, Any], prefix: str) -> None:
        for key, value in layer.items():
            path = prefix + str(key)
            if key not in schema:
                raise PrunekitError(_unknown_key_message(path, known, source))
            default = schema[key]
            if default is None:
                continue
            if isinstance(default, dict):
                if not isinstance(value, dict):
                    raise PrunekitError(_type_message(path, dict, value, source))
                if default and path not in ATOMIC:
                    check(value, default, path + ".")
            elif not _has_type(value, type(default)):
                raise PrunekitError(_type_message(path, type(default), value, source))

    check(layer, schema, "")


def _check_values(config: dict[str, Any], task_cls: type[Task]) -> None:
    ranges = {**RANGES, **task_cls.config_ranges}
    defaults = dict(_leaves(merge(DEFAULTS, task_cls.default_config())))
    for path, value in _leaves(config):
        if path in ranges and value is not None:
            _check_range(path, value, ranges[path], defaults.get(path))
        if path in CHOICES and value not in CHOICES[path]:
            allowed = ", ".join(CHOICES[path])
            raise PrunekitError(f"config key {path!r} must be one of {allowed}, got {value!r}")
    _check_target(config["prune"]["target"])
    _check_round_to(config["prune"]["round_to"])
    CRITERIA.get(config["prune"]["criterion"])  # unknown names list the known ones
    SCHEDULES.get(config["prune"]["schedule"])


def _check_range(path: str, value: Any, bounds: tuple[Any, Any], default: Any) -> None:
    low, high = bounds
    integer = isinstance(default, int) if default is not None else _is_int(low) or _is_int(high)
    if (integer and not _is_int(value)) or not _has_type(value, float):
        kind = int if integer else float
        raise PrunekitError(_type_message(path, kind, value, "the configuration"))
    if integer:
        ok = (low is None or value >= low) and (high is None or value <= high)
        allowed = _describe_range(low, high, ">=", "<=", "[", "]")
    else:
        ok = (low is None or value > low) and (high is None or value < high)
        allowed = _describe_range(low, high, ">", "<", "(", ")")
    if not ok:
        kind = "an integer" if integer else "a number"
        raise PrunekitError(f"config key {path!r} must be {kind} {allowed}, got {value!r}")


def _check_round_to(value: Any) -> None:
    if value not in (None, "auto") and not (_is_int(value) and value >= 1):
        raise PrunekitError(
            f"config key 'prune.round_to' must be 'auto', null or an integer >= 1, got {value!r}"
        )


def _describe_range(low: Any, high: Any, ge: str, le: str, left: str, right: str) -> str:
    if high is None:
        return f"{ge} {low}"
    if low is None:
        return f"{le} {high}"
    return f"in {left}{low}, {high}{right}"


def _check_target(target: dict[str, Any]) -> None:
    kinds = "|".join(TARGET_KINDS)
    if len(target) != 1 or next(iter(target)) not in TARGET_KINDS:
        raise PrunekitError(
            f"config key 'prune.target' must name exactly one of {kinds} "
            f"(e.g. {{params: 0.4}}), got {target!r}"
        )
    ((kind, fraction),) = target.items()
    _check_range(f"prune.target.{kind}", fraction, (0.0, 1.0), 0.5)


def _unknown_key_message(path: str, known: list[str], source: str) -> str:
    close = difflib.get_close_matches(path, known, n=1, cutoff=0.6)
    if not close:  # a misplaced key: compare its last part with every key's last part
        tails = {key.rsplit(".", 1)[-1]: key for key in known}
        close = [tails[m] for m in difflib.get_close_matches(path.rsplit(".", 1)[-1], tails, 1)]
    hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(known)}"
    return f"unknown config key {path!r} in {source}: {hint}"


def _type_message(path: str, expected: type, value: Any, source: str) -> str:
    names = {
        bool: "true or false",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a mapping",
    }
    got = f"{value!r} ({type(value).__name__})"
    return f"config key {path!r} in {source} must be {names.get(expected, expected)}, got {got}"


def _has_type(value: Any, expected: type) -> bool:
    if expected is float:
        return _is_int(value) or isinstance(value, float)
    if expected is int:
        return _is_int(value)
    return isinstance(value, expected)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _leaves(tree: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(dotted key, value)`` of every leaf; atomic and free-form mappings count as leaves."""
    for key, value in tree.items():
        path = prefix + str(key)
        if isinstance(value, dict) and value and path not in ATOMIC:
            yield from _leaves(value, path + ".")
        else:
            yield path, value
