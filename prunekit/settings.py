"""Declared settings: every key's type, range, choices and meaning, stated once.

A :class:`Settings` subclass is a pydantic model whose fields declare keys
(``steps: int = Field(1, ge=1, description=...)``). The engine validates its own arguments with
these classes (``Pruner(steps=0)``), the run configuration is built out of them, and the docs'
configuration reference is generated from them; :func:`check` turns a validation failure into the
one-line error that every caller shows, so a rule and its message live in one place.

A field whose type is a :class:`Settings` subclass is a *section*: configuration layers merge
into it key by key. A section class with ``atomic = True`` (a target, say) is a value instead:
an override replaces it whole.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from typing import Any, ClassVar, Literal, TypeVar, get_args, get_origin

import annotated_types as at
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.fields import FieldInfo

from prunekit.errors import PrunekitError

S = TypeVar("S", bound="Settings")


class Settings(BaseModel):
    """Base class of declared settings: strict types (an integer is a number, but ``"3"`` is
    not an integer), unknown keys refused, immutable once built."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    #: merged whole by configuration layers instead of key by key
    atomic: ClassVar[bool] = False

    def __init__(self, **data: Any) -> None:
        if _CHECKING.get():  # inside check(): it formats the error with the whole key path
            super().__init__(**data)
            return
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise PrunekitError(_message(type(self), exc, None, "")) from None


#: set while :func:`check` validates, so that nested sections leave the message to it
_CHECKING: ContextVar[bool] = ContextVar("prunekit_settings_checking", default=False)


def check(cls: type[S], data: Mapping[str, Any], source: str | None = None, prefix: str = "") -> S:
    """``cls`` built from ``data``; any mistake is one :class:`PrunekitError` line.

    With ``source`` (``"--set"``, a file name) the message speaks of config keys (``config key
    'prune.steps' in --set must be an integer >= 1, got 0``); without it, of arguments
    (``steps=0 is invalid: give an integer >= 1``).
    """
    if not isinstance(data, Mapping):
        where = f"config key {prefix.rstrip('.')!r}" if prefix else cls.__name__
        raise PrunekitError(f"{where} must be {describe(cls)}, got {data!r}")
    _check_key_types(data, prefix, source)
    token = _CHECKING.set(True)
    try:
        return cls.model_validate(dict(data))
    except ValidationError as exc:
        raise PrunekitError(_message(cls, exc, source, prefix)) from None
    finally:
        _CHECKING.reset(token)


def _check_key_types(data: Mapping[Any, Any], prefix: str, source: str | None) -> None:
    """Every key of ``data`` (at any depth) is a string: a YAML key such as ``1`` or ``null``
    would otherwise reach pydantic as a keyword argument that is not one."""
    for key, value in data.items():
        if not isinstance(key, str):
            where = f" in {source}" if source else ""
            parent = f"config key {prefix.rstrip('.')!r}" if prefix else "the configuration"
            raise PrunekitError(
                f"{parent}{where} has the key {key!r} ({type(key).__name__}): keys must be "
                "names (strings)"
            )
        if isinstance(value, Mapping):
            _check_key_types(value, f"{prefix}{key}.", source)


def keys(cls: type[Settings], prefix: str = "") -> Iterator[tuple[str, FieldInfo]]:
    """``(dotted key, field)`` of every leaf key of ``cls``, sections walked into."""
    for name, field in cls.model_fields.items():
        section = _section(field.annotation)
        if section is not None and not section.atomic:
            yield from keys(section, f"{prefix}{name}.")
        else:
            yield prefix + name, field


def sections(cls: type[Settings], prefix: str = "") -> Iterator[str]:
    """Dotted names of the sections of ``cls`` (mappings merged key by key)."""
    for name, field in cls.model_fields.items():
        section = _section(field.annotation)
        if section is not None and not section.atomic:
            yield prefix + name
            yield from sections(section, f"{prefix}{name}.")


def describe(annotation: Any, field: FieldInfo | None = None) -> str:
    """What a key accepts, in words: ``an integer >= 1``, ``one of local, global``, ..."""
    if field is not None and isinstance(field.json_schema_extra, dict):
        allowed = field.json_schema_extra.get("allowed")
        if allowed:
            return str(allowed)
    bounds = _bounds(field.metadata if field is not None else [])
    options = _union(annotation)
    if len(options) > 1:
        literals = [v for o in options if get_origin(o) is Literal for v in get_args(o)]
        rest = [o for o in options if get_origin(o) is not Literal and o is not type(None)]
        words = [repr(v) for v in literals]
        if type(None) in options:
            words.append("null")
        words += [describe(o, field if len(rest) == 1 else None) for o in rest]
        return ", ".join(words[:-1]) + " or " + words[-1] if len(words) > 1 else words[0]
    (only,) = options
    inner, meta = _strip(only)
    bounds = bounds or _bounds(meta)
    if get_origin(inner) is Literal:
        return "one of " + ", ".join(str(v) for v in get_args(inner))
    if isinstance(inner, type) and issubclass(inner, Settings):
        return str(inner.model_config.get("title") or "a mapping")
    base = {
        bool: "true or false",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a mapping",
    }.get(get_origin(inner) or inner, getattr(inner, "__name__", str(inner)))
    return f"{base} {bounds}" if bounds else base


def _bounds(metadata: list[Any]) -> str:
    low = high = None
    lo_sym = hi_sym = ""
    for m in metadata:
        if isinstance(m, at.Ge):
            low, lo_sym = m.ge, ">="
        elif isinstance(m, at.Gt):
            low, lo_sym = m.gt, ">"
        elif isinstance(m, at.Le):
            high, hi_sym = m.le, "<="
        elif isinstance(m, at.Lt):
            high, hi_sym = m.lt, "<"
    if low is not None and high is not None:
        left = "[" if lo_sym == ">=" else "("
        right = "]" if hi_sym == "<=" else ")"
        return f"in {left}{low}, {high}{right}"
    if low is not None:
        return f"{lo_sym} {low}"
    if high is not None:
        return f"{hi_sym} {high}"
    return ""


def _strip(annotation: Any) -> tuple[Any, list[Any]]:
    """``Annotated[int, Field(ge=1)]`` -> ``(int, [Ge(1)])``."""
    if get_origin(annotation) is typing.Annotated:
        inner, *extra = get_args(annotation)
        meta: list[Any] = []
        for e in extra:
            meta.extend(e.metadata if isinstance(e, FieldInfo) else [e])
        return inner, meta
    return annotation, []


def _union(annotation: Any) -> list[Any]:
    if get_origin(annotation) in (typing.Union, types.UnionType):
        return list(get_args(annotation))
    return [annotation]


def _section(annotation: Any) -> type[Settings] | None:
    inner, _ = _strip(annotation)
    return inner if isinstance(inner, type) and issubclass(inner, Settings) else None


def _field(cls: type[Settings], loc: tuple[Any, ...]) -> tuple[FieldInfo | None, int]:
    """The declared field a validation error's location points at, and how many location
    parts name keys (the rest are pydantic's union-branch labels)."""
    model: type[Settings] | None = cls
    field = None
    depth = 0
    for part in loc:
        if model is None or not isinstance(part, str) or part not in model.model_fields:
            break
        field = model.model_fields[part]
        depth += 1
        model = _section(field.annotation)
    return field, depth


def _message(cls: type[Settings], exc: ValidationError, source: str | None, prefix: str) -> str:
    error = exc.errors()[0]
    loc = tuple(error["loc"])
    field, depth = _field(cls, loc)
    path = (prefix + ".".join(str(p) for p in loc[: max(depth, 1)])).rstrip(".")
    if error["type"] == "extra_forbidden":
        path = prefix + ".".join(str(p) for p in loc)
        known = [prefix + k for k, _ in keys(cls)]
        return _unknown(path, known, source)
    value = error.get("input")
    got = f"got {value!r}"
    if error["type"].endswith("_type") or error["type"] in ("literal_error",):
        got += f" ({type(value).__name__})"
    if field is None or error["type"] in ("value_error", "assertion_error"):
        reason = str(error.get("ctx", {}).get("error", error["msg"]))
        if source:
            return f"config key {path!r} in {source}: {reason}"
        return f"{path}={value!r}: {reason}" if path else f"{cls.__name__}: {reason}"
    allowed = describe(field.annotation, field)
    if source:
        return f"config key {path!r} in {source} must be {allowed}, {got}"
    return f"{path}={value!r} is invalid: give {allowed}"


def _unknown(path: str, known: list[str], source: str | None) -> str:
    close = difflib.get_close_matches(path, known, n=1, cutoff=0.6)
    if not close:  # a misplaced key: compare its last part with every key's last part
        tails = {key.rsplit(".", 1)[-1]: key for key in known}
        close = [tails[m] for m in difflib.get_close_matches(path.rsplit(".", 1)[-1], tails, 1)]
    hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(known)}"
    where = f" in {source}" if source else ""
    kind = "config key" if source else "argument"
    return f"unknown {kind} {path!r}{where}: {hint}"
