"""Loading the shipped schemas: every file checked against draft 2020-12, or a startup error.

Versioning: a published ``v<N>.json`` only ever gains optional fields and documentation.
Anything a receiver could trip over (a field removed, renamed, made required, a type or
an enum narrowed, a meaning changed) is a new ``v<N+1>.json`` beside the old one, and
``dataschema`` names the version an event was written for.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from bridge.errors import StartupError
from bridge.model import SCHEMA_URI, dataschema

__all__ = ["Catalog", "SchemaEntry", "catalog"]

_VERSION = re.compile(r"^v([1-9][0-9]*)\.json$")


@dataclass(frozen=True)
class SchemaEntry:
    family: str  # the event type, or "vendor" for vendor.* types
    version: int
    uri: str
    schema: dict[str, Any]

    @property
    def title(self) -> str:
        return str(self.schema.get("title", self.family))

    @property
    def description(self) -> str:
        return str(self.schema.get("description", ""))

    @property
    def vendors(self) -> list[str]:
        return list(self.schema.get("x-vendors", []))

    @property
    def properties(self) -> dict[str, Any]:
        props: dict[str, Any] = self.schema.get("properties", {})
        return props

    def required(self) -> set[str]:
        """Fields every unshaped event of this type carries (for its vendor)."""
        found = set(self.schema.get("required", []))
        alternative = self.schema.get("else", {})
        for variant in alternative.get("anyOf", [alternative]):
            found.update(variant.get("required", []))
        return found

    def required_by_vendor(self) -> dict[str, set[str]]:
        """Vendor -> the fields its unshaped events of this type always carry."""
        alternative = self.schema.get("else", {})
        variants = alternative.get("anyOf", [alternative])
        top = set(self.schema.get("required", []))
        found = {str(v.get("title")): top | set(v.get("required", [])) for v in variants if "title" in v}
        return found or {v: top for v in self.vendors}

    def field_paths(self) -> Iterator[str]:
        """Dotted paths into ``data`` this schema names (``user_fields.*`` for open maps)."""
        yield from _paths(self.properties, "")


def _paths(properties: dict[str, Any], prefix: str) -> Iterator[str]:
    for name, spec in properties.items():
        path = f"{prefix}{name}"
        yield path
        if not isinstance(spec, dict):
            continue
        if "properties" in spec:
            yield from _paths(spec["properties"], f"{path}.")
        if "patternProperties" in spec or spec.get("additionalProperties") not in (False, None):
            yield f"{path}.*"
        if name == "raw":
            yield f"{path}.*"  # vendor-specific: any path below it


class Catalog:
    """Every shipped schema, checked; ``for_type`` finds the one an event type uses."""

    def __init__(self, entries: list[SchemaEntry]) -> None:
        self.entries = sorted(entries, key=lambda e: (e.family, e.version))
        self._by_uri = {e.uri: e for e in self.entries}

    def families(self) -> list[str]:
        return sorted({e.family for e in self.entries})

    def latest(self, family: str) -> SchemaEntry:
        found = [e for e in self.entries if e.family == family]
        if not found:
            raise KeyError(family)
        return found[-1]

    def for_type(self, event_type: str) -> SchemaEntry:
        """The schema named by an event of ``event_type``'s ``dataschema``."""
        uri = dataschema(event_type)
        if uri not in self._by_uri:
            raise KeyError(event_type)
        return self._by_uri[uri]

    def field_paths(self) -> set[str]:
        return {p for e in self.entries for p in e.field_paths()}

    def raw_paths(self) -> dict[str, tuple[str, ...]]:
        """Field -> where the vendor's payload (``raw``) repeats it (the ``x-raw`` annotations)."""
        found: dict[str, set[str]] = {}
        for entry in self.entries:
            for name, spec in entry.properties.items():
                if isinstance(spec, dict):
                    found.setdefault(name, set()).update(spec.get("x-raw", []))
        return {name: tuple(sorted(paths)) for name, paths in found.items() if paths}

    def object_fields(self) -> set[str]:
        """Top-level fields of ``data`` that are objects in some schema (``raw``, ``user_fields``)."""
        found = set()
        for entry in self.entries:
            for name, spec in entry.properties.items():
                kind = spec.get("type") if isinstance(spec, dict) else None
                if kind == "object" or (isinstance(kind, list) and "object" in kind):
                    found.add(name)
        return found

    def matches(self, pattern: str) -> bool:
        """Whether a shaping rule's path (glob allowed) names a field some schema has."""
        for path in self.field_paths():
            if fnmatch.fnmatchcase(path, pattern) or fnmatch.fnmatchcase(pattern, path):
                return True
        return False

    def closest(self, pattern: str, n: int = 3) -> list[str]:
        import difflib

        names = sorted(p for p in self.field_paths() if not p.endswith(".*"))
        return difflib.get_close_matches(pattern, names, n=n, cutoff=0.5)


def _entry(family: str, file: Traversable) -> SchemaEntry:
    match = _VERSION.match(file.name)
    where = f"bridge/schemas/{family}/{file.name}"
    if match is None:
        raise StartupError(f"{where}: schema files are named v<N>.json")
    try:
        schema = json.loads(file.read_text(encoding="utf-8"))
        Draft202012Validator.check_schema(schema)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise StartupError(f"{where}: the schema cannot be read: {exc}") from None
    except SchemaError as exc:
        raise StartupError(f"{where}: not a valid JSON Schema 2020-12: {exc.message}") from None
    version = int(match.group(1))
    uri = SCHEMA_URI.format(family=family).rsplit(":", 1)[0] + f":v{version}"
    if schema.get("$id") != uri:
        raise StartupError(f"{where}: $id must be {uri!r}, got {schema.get('$id')!r}")
    return SchemaEntry(family, version, uri, schema)


def load(root: Traversable | None = None) -> Catalog:
    """Read and check every schema under ``root`` (default: the package's own)."""
    base = root if root is not None else resources.files("bridge") / "schemas"
    if not base.is_dir():
        raise StartupError(f"{base}: the event schemas are missing (a broken installation)")
    entries = [
        _entry(family.name, file)
        for family in base.iterdir()
        if family.is_dir() and not family.name.startswith(("_", "."))
        for file in family.iterdir()
        if file.name.endswith(".json")
    ]
    if not entries:
        raise StartupError(f"{base}: no event schema found (a broken installation)")
    return Catalog(entries)


@cache
def catalog() -> Catalog:
    """The package's catalog, loaded once; a schema that fails to load is a StartupError."""
    return load()
