"""MkDocs hook: the parts of the docs that are generated from the code, so they cannot drift.

A page asks for generated text with a line of its own holding ``<!-- generated: NAME -->``;
:data:`GENERATORS` maps each NAME to the function that renders it:

* ``cli``: ``prunekit --help`` and the ``--help`` of every subcommand, from the real parser;
* ``config-flags``: which command-line flag sets which configuration key;
* ``config-table`` / ``config-yaml``: every key of the runner's ``DEFAULTS`` with its type,
  allowed values (``RANGES``, ``CHOICES``) and a description from :data:`DESCRIPTIONS`;
* ``criteria`` / ``schedules``: the built-in registry entries with their docstrings/options;
* ``face-task``: the ``face`` task's description, defaults, ranges and presets (a note when
  the task is not installed).

A configuration key without a description, a description of a key that no longer exists and an
unknown generator name are logged as warnings, which ``mkdocs build --strict`` turns into a
failed build. The hook also renders Sphinx roles in docstrings (``:class:`X``` -> ``X``).
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import logging
import os
import re
from collections.abc import Callable, Iterator
from typing import Any

import yaml

log = logging.getLogger("mkdocs.hooks.prunekit")

MARKER = re.compile(r"^<!-- generated: ([\w-]+) -->$", re.MULTILINE)
HELP_WIDTH = "88"

#: What each configuration key means (the key set itself comes from the code).
DESCRIPTIONS: dict[str, str] = {
    "task": "The task being run. Filled in from the command line; a value in a file is "
    "overwritten.",
    "seed": "Seeds Python's, NumPy's and torch's RNGs; step N reseeds with `seed + N`. "
    "`prunekit compare --seeds K` runs `seed`, `seed + 1`, ... `seed + K - 1`.",
    "device": "`auto` is CUDA when available, else the CPU. Asking for `cuda` without CUDA "
    "is an error.",
    "threads": "torch CPU threads for the run and the latency measurement; `null` keeps "
    "torch's default.",
    "baseline.epochs": "Epochs of the default baseline recipe (`Task.prepare_baseline` trains "
    "from scratch); a task that loads pretrained weights may ignore it.",
    "baseline.lr": "Learning rate of the default baseline recipe.",
    "prune.criterion": "Importance criterion: a built-in (see [Concepts](concepts.md#criteria)) "
    "or a plugin's name (`prunekit list criteria`).",
    "prune.criterion_options": "Keyword arguments of the criterion's constructor, e.g. "
    "`{variant: param}` for `taylor` or `{normalize: l2}`. Replaced whole by an override.",
    "prune.schedule": "How the target is spread over the steps "
    "(see [Concepts](concepts.md#schedules)).",
    "prune.target": "What to remove, relative to the unpruned model: exactly one of `params`, "
    "`macs`, `channels`, a fraction strictly between 0 and 1. Replaced whole by an override "
    "(`{macs: 0.3}` drops the default `params`).",
    "prune.steps": "Pruning steps; each one scores, prunes, fine-tunes and evaluates.",
    "prune.scope": "`local`: every channel group loses the same fraction; `global`: the "
    "lowest-scoring units across all groups go first.",
    "prune.round_to": "Keep a multiple of this many units in every pruned group; `auto` = 8 in "
    "groups of 64 units or more (fast kernels, see [Results](results.md#realized-speed-on-cpu)), "
    "`null` = no rounding.",
    "prune.min_channels": "Fewest units any group keeps.",
    "prune.score_batches": "Batches of `Task.score_batches()` scored before each step by a "
    "gradient criterion; `null` = one whole epoch.",
    "finetune.epochs": "Fine-tuning epochs after each pruning step (0 = none).",
    "finetune.lr": "Learning rate of the fine-tuning optimiser (rebuilt after every step).",
    "stop.max_drop": "Stop once the primary metric falls more than this below the baseline "
    "(in the metric's own units); `best.pt` is then the last step within it. `null` = never.",
    "latency.batch_size": "Batch size of the latency measurement (always on the CPU).",
    "latency.repeats": "Timed forward passes; the median is reported.",
    "latency.warmup": "Untimed forward passes before the timed ones.",
    "latency.threads": "CPU threads of the latency measurement; `null` = the run's `threads` "
    "(`compare --jobs N` sets it so that the baseline is timed like the runs).",
}


# ---------------------------------------------------------------------- mkdocs events
def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    """Replace every ``<!-- generated: NAME -->`` line with what NAME renders."""

    def render(match: re.Match[str]) -> str:
        name = match[1]
        if name not in GENERATORS:
            log.warning("%s: unknown generated section %r", page.file.src_uri, name)
            return match[0]
        return GENERATORS[name]()

    return MARKER.sub(render, markdown)


ROLE = re.compile(r":(?:class|func|meth|attr|mod|exc|data|obj):<code>~?([^<]*)</code>")


def on_page_content(html: str, **_: Any) -> str:
    """Docstrings use Sphinx roles (``:class:`~a.B```); show them as plain code (``B``)."""
    return ROLE.sub(lambda m: f"<code>{m[1].rsplit('.', 1)[-1]}</code>", html)


# ---------------------------------------------------------------------- CLI reference
@contextlib.contextmanager
def _help_width() -> Iterator[None]:
    """A fixed help width, so the page does not depend on the terminal that builds it."""
    saved = {k: os.environ.get(k) for k in ("COLUMNS", "NO_COLOR")}
    os.environ.update(COLUMNS=HELP_WIDTH, NO_COLOR="1")
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def cli_help() -> dict[str, tuple[str, str]]:
    """``{"": (summary, help), "run": (summary, help), ...}`` of the ``prunekit`` parser."""
    from prunekit.cli.main import _parser

    with _help_width():
        parser = _parser()
        out = {"": (parser.description or "", parser.format_help())}
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                summaries = {a.dest: a.help or "" for a in action._choices_actions}
                for name, sub in action.choices.items():
                    out[name] = (summaries.get(name, ""), sub.format_help())
    return out


def cli_reference() -> str:
    parts = []
    for name, (summary, text) in cli_help().items():
        title = f"prunekit {name}".strip()
        summary = summary[:1].upper() + summary[1:].rstrip(".")
        parts.append(f"## `{title}`\n\n{summary}.\n\n```text\n{text.rstrip()}\n```\n")
    return "\n".join(parts)


def config_flags() -> str:
    """Which ``run``/``compare`` flag sets which configuration key."""
    from prunekit.cli.main import _config_args

    class Names:  # every attribute is its own name: _config_args then maps key -> flag
        def __getattr__(self, name: str) -> str:
            return name

    rows = ["| flag | configuration key |", "|---|---|"]
    for key, attr in _config_args(Names()).items():
        rows.append(f"| `--{attr.replace('_', '-')}` | `{key}` |")
    rows.append("| `--set KEY=VALUE` | any key; the value is read as YAML |")
    rows.append("| `--config FILE` | a YAML file of keys |")
    return "\n".join(rows) + "\n"


# ---------------------------------------------------------------------- configuration
def config_keys() -> list[tuple[str, Any]]:
    """``(dotted key, default)`` of every leaf of the runner's ``DEFAULTS``."""
    from prunekit.runner.config import ATOMIC, DEFAULTS

    def walk(tree: dict[str, Any], prefix: str) -> Iterator[tuple[str, Any]]:
        for key, value in tree.items():
            path = prefix + key
            if isinstance(value, dict) and value and path not in ATOMIC:
                yield from walk(value, path + ".")
            else:
                yield path, value

    return list(walk(DEFAULTS, ""))


def _kind(key: str, default: Any) -> str:
    from prunekit.runner.config import RANGES

    names = {bool: "boolean", int: "integer", float: "number", str: "string", dict: "mapping"}
    if default is not None:
        return names.get(type(default), type(default).__name__)
    low, high = RANGES.get(key, (None, None))
    if isinstance(low, int) or isinstance(high, int):
        return "integer or `null`"
    if isinstance(low, float) or isinstance(high, float):
        return "number or `null`"
    return "any"


def _allowed(key: str, default: Any) -> str:
    from prunekit.runner.config import CHOICES, RANGES, TARGET_KINDS

    if key in CHOICES:
        return ", ".join(f"`{c}`" for c in CHOICES[key])
    if key == "prune.target":
        return "one of " + ", ".join(f"`{k}`" for k in TARGET_KINDS) + " in (0, 1)"
    if key not in RANGES:
        return ""
    low, high = RANGES[key]
    integer = (
        isinstance(default, int)
        if default is not None
        else isinstance(low, int) or isinstance(high, int)
    )
    ge, le = (">=", "<=") if integer else (">", "<")  # integer bounds inclusive, float exclusive
    if high is None:
        return f"{ge} {low:g}"
    if low is None:
        return f"{le} {high:g}"
    return f"{ge} {low:g} and {le} {high:g}"


class _Dumper(yaml.SafeDumper):
    """Block-style YAML, except that lists of values stay on one line (``[0, 1, 2]``)."""


_Dumper.add_representer(
    list, lambda dumper, data: dumper.represent_sequence("tag:yaml.org,2002:seq", data, True)
)


def _yaml(value: Any) -> str:
    return yaml.dump(value, Dumper=_Dumper, sort_keys=False)


def _inline(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("\n...")


def config_table() -> str:
    keys = config_keys()
    for key in sorted(set(DESCRIPTIONS) - {k for k, _ in keys}):
        log.warning("docs/hooks.py describes config key %r, which no longer exists", key)
    rows = ["| key | default | type | allowed | meaning |", "|---|---|---|---|---|"]
    for key, default in keys:
        meaning = DESCRIPTIONS.get(key)
        if meaning is None:
            log.warning("config key %r has no description: add one to docs/hooks.py", key)
            meaning = ""
        allowed = _allowed(key, default)
        rows.append(
            f"| `{key}` | `{_inline(default)}` | {_kind(key, default)} | {allowed} | {meaning} |"
        )
    return "\n".join(rows) + "\n"


def config_yaml() -> str:
    from prunekit.runner.config import DEFAULTS

    return f'```yaml title="The generic defaults"\n{_yaml(DEFAULTS)}```\n'


# ---------------------------------------------------------------------- registries
def _builtins(kind: str) -> list[tuple[str, Any]]:
    """Registered objects of ``kind`` that prunekit itself defines (plugins left out)."""
    import prunekit as pk

    reg = pk.registry(kind)
    entries = [(name, reg.get(name)) for name in reg.names()]
    return [(name, obj) for name, obj in entries if obj.__module__.startswith("prunekit.")]


def _first_line(obj: Any) -> str:
    return (inspect.getdoc(obj) or "").splitlines()[0].replace("|", "\\|")


def criteria_table() -> str:
    rows = ["| name | scores | needs gradients | options |", "|---|---|---|---|"]
    for name, cls in _builtins("criteria"):
        options = [
            f"`{p.name}={p.default!r}`"
            for p in inspect.signature(cls).parameters.values()
            if p.default is not inspect.Parameter.empty
        ]
        grad = "yes" if cls.needs_grad else "no"
        rows.append(f"| `{name}` | {_first_line(cls)} | {grad} | {', '.join(options)} |")
    return "\n".join(rows) + "\n"


def schedules_table() -> str:
    rows = ["| name | after step *k* of *n* |", "|---|---|"]
    rows += [f"| `{name}` | {_first_line(cls)} |" for name, cls in _builtins("schedules")]
    return "\n".join(rows) + "\n"


# ---------------------------------------------------------------------- the face task
def face_task() -> str:
    """The ``face`` task's module docstring, defaults and ranges (a note without the task)."""
    import prunekit as pk

    try:
        tasks = pk.available("tasks")
    except pk.PrunekitError as exc:
        log.warning("cannot list the tasks: %s", exc)
        return ""
    if "face" not in tasks:
        return (
            '!!! note "The `face` task is not installed in this build of the docs"\n\n'
            "    Its description and defaults appear here when `prunekit-face` is installed.\n"
        )
    task = pk.registry("tasks").get("face")
    intro = inspect.getdoc(inspect.getmodule(task)) or _first_line(task)
    parts = [
        intro,
        "Its defaults override the [generic ones](configuration.md); every key can be set with "
        "`--set KEY=VALUE` or a `--config` file:",
        f'```yaml title="face task defaults"\n{_yaml(task.default_config())}```',
    ]
    rows = "".join(
        f"| `{key}` | {_bound(low)} | {_bound(high)} |\n"
        for key, (low, high) in task.config_ranges.items()
    )
    if rows:
        parts.append(
            "The task's own ranges (integer bounds inclusive, number bounds exclusive):\n\n"
            f"| key | low | high |\n|---|---|---|\n{rows}"
        )
    for name, preset in getattr(task, "presets", {}).items():
        head = f"**Preset `{name}`** (`--preset {name}`)"
        if preset:
            parts.append(f'{head} changes:\n\n```yaml title="{name}"\n{_yaml(preset)}```')
        else:
            parts.append(f"{head}: the defaults above, unchanged.")
    return "\n\n".join(parts) + "\n"


def _bound(value: Any) -> str:
    return "—" if value is None else f"{value:g}"


GENERATORS: dict[str, Callable[[], str]] = {
    "cli": cli_reference,
    "config-flags": config_flags,
    "config-table": config_table,
    "config-yaml": config_yaml,
    "criteria": criteria_table,
    "schedules": schedules_table,
    "face-task": face_task,
}
