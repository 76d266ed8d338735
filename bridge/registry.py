"""The registry: one line per source or sink kind, one per simulator.

The TOML table name (``[[sources.<kind>]]``) is a key here, never a module name found by
import, so helper modules cannot be named as kinds by mistake. Entries are module paths,
imported on first use, so a config that uses only Uptivity never imports signalrcore.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from bridge.components import SinkKind, SourceKind

__all__ = ["SIMULATORS", "SINKS", "SOURCES", "Entry", "sink_kind", "source_kind"]


@dataclass(frozen=True)
class Entry:
    module: str  # exposes KIND
    simulator: str | None = None  # exposes add_arguments(parser) and async main(args)


SOURCES: dict[str, Entry] = {
    "uptivity": Entry("bridge.sources.uptivity", simulator="bridge.simulators.uptivity"),
    "anywherenow": Entry("bridge.sources.anywherenow", simulator="bridge.simulators.anywherenow"),
    "encore": Entry("bridge.sources.encore", simulator="bridge.simulators.encore"),
}

SINKS: dict[str, Entry] = {
    "log": Entry("bridge.sinks.log"),
    "webhook": Entry("bridge.sinks.webhook"),
    "nats": Entry("bridge.sinks.nats"),
}

# `event-bridge simulate <name>`: each vendor's simulator, found through the same table.
SIMULATORS: dict[str, str] = {k: e.simulator for k, e in SOURCES.items() if e.simulator}


class UnknownKind(LookupError):
    def __init__(self, group: str, kind: str, known: list[str]) -> None:
        self.known = known
        super().__init__(f"there is no {group} kind called {kind!r}; known kinds: {', '.join(known)}")


def _kind(table: dict[str, Entry], group: str, kind: str) -> Any:
    entry = table.get(kind)
    if entry is None:
        raise UnknownKind(group, kind, sorted(table))
    return importlib.import_module(entry.module).KIND


def source_kind(kind: str) -> SourceKind[Any]:
    """The registration of source ``kind``; :class:`UnknownKind` lists the known ones."""
    found: SourceKind[Any] = _kind(SOURCES, "source", kind)
    return found


def sink_kind(kind: str) -> SinkKind[Any]:
    found: SinkKind[Any] = _kind(SINKS, "sink", kind)
    return found
