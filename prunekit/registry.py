"""Registries: the one extension mechanism for criteria, schedules, recoveries and tasks.

In-tree code registers with a decorator (``@register_criterion("l1")``); installed distributions
register through the entry-point groups ``prunekit.criteria``, ``prunekit.schedules``,
``prunekit.recoveries`` and ``prunekit.tasks``, which are loaded the first time a registry is
looked up. Every name remembers where it came from (``prunekit``, or the distribution that
installed it), which ``prunekit list`` shows. A plugin that fails to import is reported once, with
its distribution, and the rest of the registry stays usable.
"""

from __future__ import annotations

import difflib
import importlib
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from prunekit.errors import PrunekitError

BUILTIN = "prunekit"


@dataclass(frozen=True)
class Entry:
    """A registered object and where it came from (``prunekit`` or ``DISTRIBUTION VERSION``)."""

    obj: Any
    source: str


class Registry:
    """A name -> class mapping backed by a decorator and an entry-point group.

    ``base`` (``"module:Class"``, imported when first needed) is the class every registered
    object must subclass: registering anything else is refused with a clear error.
    """

    def __init__(self, kind: str, group: str, base: str, plural: str | None = None) -> None:
        self.kind = kind
        self.plural = plural or f"{kind}s"
        self.group = group
        self._base = base
        self._items: dict[str, Entry] = {}
        self._broken: dict[str, str] = {}
        self._entry_points_loaded = False

    # ------------------------------------------------------------------ registering
    def register(self, name: str) -> Callable[[Any], Any]:
        """Decorator: register a class under ``name`` (a later registration shadows it, with a
        warning when it comes from elsewhere)."""

        def decorator(obj: Any) -> Any:
            self._add(name, obj, _source_of(obj))
            return obj

        return decorator

    def unregister(self, name: str) -> None:
        """Forget ``name`` (tests and interactive sessions that registered a throwaway)."""
        self._items.pop(name, None)

    @contextmanager
    def temporarily(self, name: str, obj: Any) -> Iterator[Any]:
        """Register ``obj`` as ``name`` for the duration of a ``with`` block, then restore what
        was there before (nothing leaks out of a test)."""
        self._load_entry_points()
        before = self._items.get(name)
        self._add(name, obj, _source_of(obj), warn=False)
        try:
            yield obj
        finally:
            if before is None:
                self._items.pop(name, None)
            else:
                self._items[name] = before

    def _add(self, name: str, obj: Any, source: str, warn: bool = True) -> None:
        base = self.base
        if not (isinstance(obj, type) and issubclass(obj, base)):
            raise PrunekitError(
                f"cannot register {obj!r} as {self.kind} {name!r} (from {source}): a {self.kind} "
                f"must be a subclass of {base.__module__}.{base.__qualname__}"
            )
        old = self._items.get(name)
        if warn and old is not None and old.obj is not obj:
            warnings.warn(
                f"{self.kind} {name!r} from {source} shadows the one from {old.source}",
                stacklevel=3,
            )
        self._items[name] = Entry(obj, source)

    @property
    def base(self) -> type:
        """The class every registered object subclasses."""
        module, _, attr = self._base.partition(":")
        return getattr(importlib.import_module(module), attr)

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        # set first: a plugin that imports prunekit and looks names up must not recurse here
        self._entry_points_loaded = True
        # the base's package imports and so registers the built-in names, before any plugin's
        importlib.import_module(self._base.partition(":")[0])
        for ep in entry_points(group=self.group):
            source = _distribution(ep)
            try:
                obj = ep.load()
            except Exception as exc:  # a broken plugin must not break every command
                self._report_broken(ep.name, f"{ep.value} from {source} failed to import: {exc}")
                continue
            try:
                self._add(ep.name, obj, source)
            except PrunekitError as exc:
                self._report_broken(ep.name, str(exc))

    def _report_broken(self, name: str, why: str) -> None:
        message = (
            f"{self.kind} plugin {name!r} is unavailable: {why}; "
            "fix or uninstall the distribution that provides it"
        )
        self._broken[name] = message
        warnings.warn(message, stacklevel=4)

    # ------------------------------------------------------------------ looking up
    def names(self) -> list[str]:
        """All registered names, entry points included, sorted."""
        self._load_entry_points()
        return sorted(self._items)

    def broken(self) -> dict[str, str]:
        """Plugins of this kind that failed to load: name -> why."""
        self._load_entry_points()
        return dict(self._broken)

    def get(self, name: str) -> Any:
        """The class registered as ``name``; a clear error with suggestions otherwise."""
        self._load_entry_points()
        if name not in self._items:
            if name in self._broken:
                raise PrunekitError(self._broken[name])
            known = self.names()
            close = difflib.get_close_matches(str(name), known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise PrunekitError(
                f"unknown {self.kind} {name!r}: {hint}known {self.plural} are {', '.join(known)}"
            )
        return self._items[name].obj

    def source(self, name: str) -> str:
        """Where ``name`` came from: ``prunekit`` or the installing distribution."""
        self.get(name)
        return self._items[name].source

    def describe(self, name: str) -> str:
        """First line of the registered class's docstring (for ``prunekit list``)."""
        doc = (getattr(self.get(name), "__doc__", None) or "").strip()
        return doc.splitlines()[0] if doc else ""


def _source_of(obj: Any) -> str:
    module = getattr(obj, "__module__", "") or ""
    if module == BUILTIN or module.startswith(BUILTIN + "."):
        return BUILTIN
    return module.split(".")[0] or "?"


def _distribution(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return f"{dist.name} {dist.version}" if dist is not None else ep.value.split(":")[0]


CRITERIA = Registry(
    "criterion", "prunekit.criteria", "prunekit.criteria.base:Criterion", "criteria"
)
SCHEDULES = Registry("schedule", "prunekit.schedules", "prunekit.schedules.base:Schedule")
RECOVERIES = Registry(
    "recovery", "prunekit.recoveries", "prunekit.recovery.base:Recovery", "recoveries"
)
TASKS = Registry("task", "prunekit.tasks", "prunekit.tasks.base:Task")

_REGISTRIES = {
    "criteria": CRITERIA,
    "schedules": SCHEDULES,
    "recoveries": RECOVERIES,
    "tasks": TASKS,
}


def register_criterion(name: str) -> Callable[[Any], Any]:
    """Decorator registering a :class:`prunekit.Criterion` subclass by name."""
    return CRITERIA.register(name)


def register_schedule(name: str) -> Callable[[Any], Any]:
    """Decorator registering a :class:`prunekit.Schedule` subclass by name."""
    return SCHEDULES.register(name)


def register_recovery(name: str) -> Callable[[Any], Any]:
    """Decorator registering a :class:`prunekit.Recovery` subclass by name."""
    return RECOVERIES.register(name)


def register_task(name: str) -> Callable[[Any], Any]:
    """Decorator registering a :class:`prunekit.Task` subclass by name."""
    return TASKS.register(name)


def registry(kind: str) -> Registry:
    """The registry for ``"criteria"``, ``"schedules"``, ``"recoveries"`` or ``"tasks"``."""
    if kind not in _REGISTRIES:
        raise PrunekitError(f"unknown registry {kind!r}: choose one of {', '.join(_REGISTRIES)}")
    return _REGISTRIES[kind]


def available(kind: str) -> list[str]:
    """Registered names of one kind, entry points included."""
    return registry(kind).names()
