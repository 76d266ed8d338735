"""Settings declared once: one frozen dataclass per component, read by one loader.

A component declares its TOML keys as fields of a ``@settings`` dataclass, each made with
:func:`setting` (default, bounds, secret, choices, old names, one-line doc). The loader
reads a :class:`bridge.config.Table` into it by the field types, so defaults live in one
place and every error names the file and key. Example::

    @settings
    class LogSettings:
        name: str = setting(doc="unique name of this sink")
        path: Path | None = setting(None, doc="file to append to; stdout when unset")
        max_bytes: int = setting(100_000_000, min=0, doc="rotate beyond this size (0: never)")

Supported field types: ``str``, ``str | int`` (a string that may be written as a number;
read as a string), ``int``, ``float``, ``bool``, ``Path``, ``ZoneInfo``, ``tuple[str, ...]``
(a TOML list), ``dict[str, str]`` (a table of strings), another settings class (a sub-table),
``tuple[<settings class>, ...]`` (an array of tables) and ``X | None`` of any of them.
Cross-field rules go in an optional ``validate(self, v)`` method that calls
``v.error(key, message)`` or ``v.warn(key, message)``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, dataclass_transform
from zoneinfo import ZoneInfo

from bridge.errors import ConfigError

if TYPE_CHECKING:
    from bridge.config import Table

T = TypeVar("T")

__all__ = ["Validator", "iter_fields", "load_settings", "setting", "settings"]


@dataclass(frozen=True)
class Meta:
    doc: str
    min: float | None = None
    max: float | None = None
    secret: bool = False
    choices: tuple[str, ...] | None = None
    aliases: tuple[str, ...] = ()
    key: str | None = None  # TOML key when it differs from the field name


def setting(
    default: Any = MISSING,
    *,
    doc: str,
    min: float | None = None,
    max: float | None = None,
    secret: bool = False,
    choices: tuple[str, ...] | None = None,
    aliases: tuple[str, ...] = (),
    key: str | None = None,
    factory: Callable[[], Any] | None = None,
) -> Any:
    """One TOML key: its default (none: required), bounds, whether it is secret, its doc.

    ``aliases`` are older names still accepted, with a deprecation warning.
    """
    meta = {"bridge": Meta(doc, min, max, secret, choices, aliases, key)}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


# setting() is deliberately not a field specifier: to the type checker every setting has a
# default (the loader, not the constructor, enforces required keys).
@dataclass_transform(kw_only_default=True, frozen_default=True)
def settings(cls: type[T]) -> type[T]:
    """Make ``cls`` a frozen, keyword-only settings dataclass."""
    return dataclass(frozen=True, kw_only=True)(cls)


class Validator:
    """Handed to a settings class's ``validate``: raise errors, collect warnings."""

    def __init__(self, table: Table) -> None:
        self.table = table

    def error(self, key: str, message: str) -> ConfigError:
        return self.table.error(key, message)

    def warn(self, key: str, message: str) -> None:
        self.table.ctx.warnings.append(f"{self.table.key(key)}: {message}")


def iter_fields(cls: type[Any]) -> Iterator[tuple[str, dataclasses.Field[Any], Meta, Any]]:
    """(toml key, field, meta, resolved type) for each declared setting of ``cls``."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        meta = f.metadata.get("bridge")
        if not isinstance(meta, Meta):
            continue
        yield meta.key or f.name, f, meta, hints[f.name]


def default_of(f: dataclasses.Field[Any]) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return MISSING


def load_settings(cls: type[T], table: Table) -> T:
    """Read ``table`` into ``cls``; unknown keys, wrong types and bounds are ConfigErrors."""
    values: dict[str, Any] = {}
    for key, f, meta, hint in iter_fields(cls):
        for alias in meta.aliases:
            if alias in table.data:
                if key in table.data:
                    raise table.error(alias, f"is the old name of {key!r}; give only {key!r}")
                table.data[key] = table.data.pop(alias)
                table.ctx.warnings.append(
                    f"{table.key(alias)}: is deprecated, call it {key!r} (the old name still works)"
                )
        default = default_of(f)
        if key not in table.data:
            if default is MISSING:
                raise table.error(key, "is required but missing")
            values[f.name] = default
            table._used.add(key)
            continue
        values[f.name] = _read(table, key, hint, meta)
    table.check_unknown()
    obj = cls(**values)
    validate = getattr(obj, "validate", None)
    if validate is not None:
        validate(Validator(table))
    return obj


def _optional(hint: Any) -> Any:
    """``X`` for ``X | None``, else None."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return None


def _read(table: Table, key: str, hint: Any, meta: Meta) -> Any:
    inner = _optional(hint)
    if inner is not None:
        hint = inner
    lo, hi = meta.min, meta.max
    if hint == (str | int):  # a string the user may also write as a number (Encore's Unit/Port)
        raw = table.data.get(key)
        if isinstance(raw, int) and not isinstance(raw, bool):
            return str(table.int(key, min=None if lo is None else int(lo)))
        return table.str(key, choices=meta.choices)
    if hint is str:
        if key == "name":
            return table.name(key)
        return table.str(key, secret=meta.secret, choices=meta.choices)
    if hint is bool:
        return table.bool(key)
    if hint is int:
        return table.int(key, min=None if lo is None else int(lo), max=None if hi is None else int(hi))
    if hint is float:
        return table.float(key, min=lo, max=hi)
    if hint is Path:
        return table.path_value(key)
    if hint is ZoneInfo:
        return table.timezone(key)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        item = args[0]
        if dataclasses.is_dataclass(item):
            return tuple(load_settings(typing.cast(type[Any], item), t) for t in table.tables(key))
        if item is str:
            values = table.str_list(key)
            if meta.choices is not None:
                for i, value in enumerate(values):
                    if value not in meta.choices:
                        raise table.error(
                            f"{key}[{i}]", f"must be one of {', '.join(meta.choices)}; got {value!r}"
                        )
            return tuple(values)
        if item is int:
            raw = table.list(key)
            for i, value in enumerate(raw):
                if isinstance(value, bool) or not isinstance(value, int):
                    raise table.error(f"{key}[{i}]", f"must be an integer, got {value!r}")
            return tuple(raw)
        if item is float:
            raw = table.list(key)
            for i, value in enumerate(raw):
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise table.error(f"{key}[{i}]", f"must be a number, got {value!r}")
                if lo is not None and value < lo:
                    raise table.error(f"{key}[{i}]", f"must be at least {lo}, got {value}")
            return tuple(float(v) for v in raw)
    if origin is dict and args == (str, str):
        return table.str_map(key, secret=meta.secret)
    if dataclasses.is_dataclass(hint):
        return load_settings(typing.cast(type[Any], hint), table.table(key))
    raise TypeError(f"settings field {key!r}: unsupported type {hint!r}")  # a programming error
