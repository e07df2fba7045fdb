"""Registries: the one extension mechanism for criteria, schedules and tasks.

In-tree code registers with a decorator (``@register_criterion("l1")``); installed distributions
register through the entry-point groups ``prunekit.criteria``, ``prunekit.schedules`` and
``prunekit.tasks``, which are loaded lazily the first time a registry is looked up.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

from prunekit.errors import PrunekitError


class Registry:
    """A name -> factory mapping backed by a decorator and an entry-point group."""

    def __init__(self, kind: str, group: str, plural: str | None = None) -> None:
        self.kind = kind
        self.plural = plural or f"{kind}s"
        self.group = group
        self._items: dict[str, Any] = {}
        self._entry_points_loaded = False

    def register(self, name: str) -> Callable[[Any], Any]:
        """Decorator: register ``obj`` under ``name`` (a later registration replaces it)."""

        def decorator(obj: Any) -> Any:
            self._items[name] = obj
            return obj

        return decorator

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        for ep in entry_points(group=self.group):
            if ep.name in self._items:
                continue
            try:
                self._items[ep.name] = ep.load()
            except Exception as exc:  # a broken plugin must not break every command
                raise PrunekitError(
                    f"{self.kind} plugin {ep.name!r} ({ep.value}) failed to import: {exc}; "
                    f"fix or uninstall the distribution that provides it"
                ) from exc

    def names(self) -> list[str]:
        """All registered names, entry points included, sorted."""
        self._load_entry_points()
        return sorted(self._items)

    def get(self, name: str) -> Any:
        """The object registered as ``name``; a clear error with suggestions otherwise."""
        self._load_entry_points()
        if name not in self._items:
            known = self.names()
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise PrunekitError(
                f"unknown {self.kind} {name!r}: {hint}known {self.plural} are {', '.join(known)}"
            )
        return self._items[name]

    def describe(self, name: str) -> str:
        """First line of the registered object's docstring (for ``prunekit list``)."""
        doc = (getattr(self.get(name), "__doc__", None) or "").strip()
        return doc.splitlines()[0] if doc else ""


CRITERIA = Registry("criterion", "prunekit.criteria", plural="criteria")
SCHEDULES = Registry("schedule", "prunekit.schedules")
TASKS = Registry("task", "prunekit.tasks")

_REGISTRIES = {"criteria": CRITERIA, "schedules": SCHEDULES, "tasks": TASKS}


def register_criterion(name: str) -> Callable[[Any], Any]:
    """Decorator registering a :class:`prunekit.criteria.Criterion` subclass by name."""
    return CRITERIA.register(name)


def register_schedule(name: str) -> Callable[[Any], Any]:
    """Decorator registering a :class:`prunekit.schedules.Schedule` subclass by name."""
    return SCHEDULES.register(name)


def register_task(name: str) -> Callable[[Any], Any]:
    """Decorator registering a :class:`prunekit.Task` subclass by name."""
    return TASKS.register(name)


def registry(kind: str) -> Registry:
    """The registry for ``"criteria"``, ``"schedules"`` or ``"tasks"``."""
    if kind not in _REGISTRIES:
        raise PrunekitError(f"unknown registry {kind!r}: choose one of {', '.join(_REGISTRIES)}")
    return _REGISTRIES[kind]


def available(kind: str) -> list[str]:
    """Registered names of one kind, entry points included."""
    return registry(kind).names()
