"""MkDocs hook: the parts of the docs that are generated from the code, so they cannot drift.

A page asks for generated text with a line of its own holding ``<!-- generated: NAME -->``;
:data:`GENERATORS` maps each NAME to the function that renders it:

* ``cli``: ``prunekit --help`` and the ``--help`` of every subcommand, from the real parser;
* ``config-flags``: which command-line flag sets which configuration key;
* ``config-table`` / ``config-yaml``: every key declared by
  :class:`prunekit.runner.config.RunConfig`, with its default, what it accepts and its
  description, all read from the one declaration;
* ``criteria`` / ``schedules``: the built-in registry entries with their docstrings/options;
* ``face-task``: the ``face`` task's description, defaults, ranges and presets (a note when
  the task is not installed).

A configuration key without a description and an unknown generator name are logged as
warnings, which ``mkdocs build --strict`` turns into a failed build. The hook also renders
Sphinx roles in docstrings (``:class:`X``` -> ``X``).
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
def config_keys(cls: Any = None) -> list[tuple[str, Any]]:
    """``(dotted key, pydantic field)`` of every leaf key declared by ``cls`` (default: the
    generic run configuration)."""
    from prunekit.runner.config import RunConfig
    from prunekit.settings import keys

    return list(keys(cls or RunConfig))


def _default(field: Any) -> Any:
    value = field.get_default(call_default_factory=True)
    return value.model_dump() if hasattr(value, "model_dump") else value


def _key_rows(cls: Any, prefix: str = "") -> list[str]:
    from prunekit.settings import describe

    rows = ["| key | default | allowed | meaning |", "|---|---|---|---|"]
    for key, field in config_keys(cls):
        meaning = field.description
        if not meaning:
            log.warning("config key %r has no description: add one to its declaration", key)
            meaning = ""
        allowed = describe(field.annotation, field).replace("|", "\\|")
        rows.append(f"| `{prefix}{key}` | `{_inline(_default(field))}` | {allowed} | {meaning} |")
    return rows


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
    return "\n".join(_key_rows(None)) + "\n"


def config_yaml() -> str:
    from prunekit.runner.config import defaults

    return f'```yaml title="The generic defaults"\n{_yaml(defaults())}```\n'


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
    for name, section in task.sections.items():
        rows = "\n".join(_key_rows(section, f"{name}."))
        parts.append(f"The task's own `{name}` section:\n\n{rows}")
    for name, preset in getattr(task, "presets", {}).items():
        head = f"**Preset `{name}`** (`--preset {name}`)"
        if preset:
            parts.append(f'{head} changes:\n\n```yaml title="{name}"\n{_yaml(preset)}```')
        else:
            parts.append(f"{head}: the defaults above, unchanged.")
    return "\n\n".join(parts) + "\n"


GENERATORS: dict[str, Callable[[], str]] = {
    "cli": cli_reference,
    "config-flags": config_flags,
    "config-table": config_table,
    "config-yaml": config_yaml,
    "criteria": criteria_table,
    "schedules": schedules_table,
    "face-task": face_task,
}
