"""Reading configuration YAML: one loader, one set of error messages.

YAML's safe loader, except that ``1e-4`` is a float (PyYAML follows YAML 1.1 and would read it
as a string, which trips every learning rate written that way) and that a key given twice in a
mapping is an error (PyYAML keeps the last one and silently drops the other). Errors name the
file, the line and the column.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from prunekit.errors import PrunekitError


class Loader(yaml.SafeLoader):
    """The safe loader with YAML 1.2 floats and unique keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *defaults` may be overridden: YAML's merge, not a duplicate
            key = self.construct_object(key_node, deep=True)
            try:
                first = lines.get(key)
            except TypeError:  # an unhashable key: the safe loader reports it below
                continue
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    problem=f"duplicate key {key!r} (first on line {first}): keep one of them",
                    problem_mark=key_node.start_mark,
                )
            lines[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
    list("-+.0123456789"),
)


def parse(text: str, where: str) -> Any:
    """The YAML document in ``text``; ``where`` names it in errors (a file, ``--set x=...``)."""
    try:
        return yaml.load(text, Loader=Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        place = f"{where}, line {mark.line + 1}, column {mark.column + 1}" if mark else where
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise PrunekitError(f"malformed YAML in {place}: {problem}") from None


def load_mapping(path: str | Path, text: str | None = None) -> dict[str, Any]:
    """The mapping a YAML file holds (``{}`` when empty); ``text`` instead of reading ``path``."""
    if text is None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise PrunekitError(f"cannot read config file {path}: {exc.strerror}") from exc
        except UnicodeDecodeError as exc:
            line = exc.object[: exc.start].count(b"\n") + 1
            raise PrunekitError(
                f"config file {path}, line {line}, is not UTF-8 text: save it as UTF-8"
            ) from exc
    data = parse(text, str(path))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise PrunekitError(f"config file {path} must hold a mapping, not {type(data).__name__}")
    return data
