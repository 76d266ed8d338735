"""The component contract: what a source or a sink is, and how the registry finds one.

A vendor or a sink is one package (``bridge/sources/<kind>/``, ``bridge/sinks/<kind>/``)
whose ``__init__`` exposes ``KIND``: a :class:`SourceKind` or :class:`SinkKind` naming its
settings class (see :mod:`bridge.settings`) and the factory that builds the component
from those settings. :mod:`bridge.registry` maps the TOML table name to that package, one
line per kind. Everything else (config, service, admin, metrics, systemd) talks to
components only through the protocols below.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

import trio

from bridge.model import Event
from bridge.quarantine import Quarantine

S = TypeVar("S")

SOURCE_STATES = ("starting", "connected", "polling", "disconnected", "error")
SINK_STATES = ("starting", "ok", "retrying", "open", "disabled", "error")


def _now() -> float:
    try:
        return trio.current_time()
    except RuntimeError:
        return 0.0


@dataclass
class Health:
    """A source's connection state as /readyz, systemd STATUS= and metrics show it.

    ``state`` is one of :data:`SOURCE_STATES`.
    """

    state: str = "starting"
    detail: str = ""
    reconnects: int = 0
    since: float = field(default_factory=_now)

    @property
    def ready(self) -> bool:
        return self.state in ("connected", "polling")

    def set(self, state: str, detail: str = "") -> bool:
        """Record a state; returns True when it changed (so callers log transitions once)."""
        changed = (state, detail) != (self.state, self.detail)
        if state != self.state and state == "connected" and self.state != "starting":
            self.reconnects += 1
        if state != self.state:
            self.since = _now()
        self.state, self.detail = state, detail
        return changed


@dataclass
class SinkHealth:
    """A sink's delivery state; ``state`` is one of :data:`SINK_STATES`."""

    state: str = "starting"
    detail: str = ""
    delivered: int = 0
    retried: int = 0
    failed: int = 0
    dead: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return self.state in ("ok", "starting", "retrying")


class Emitter(Protocol):
    async def emit(
        self,
        events: Sequence[Event],
        *,
        state: Mapping[str, str | None] | None = None,
        durable: bool = False,
    ) -> None:
        """Queue events for commit to the outbox.

        ``state``: source-scoped key/values (None deletes) committed in the same
        transaction as ``events``, so persisted source state never runs ahead of what
        was recorded. ``durable=True`` waits until that transaction is on disk.
        """


@dataclass
class SourceContext:
    """Handed to ``Source.run``: where events go and what the source may keep."""

    emitter: Emitter
    quarantine: Quarantine
    state: dict[str, str]  # this source's persisted state as of start-up
    log: Any  # a structlog BoundLogger bound with source=<name>

    async def emit(
        self,
        events: Sequence[Event],
        *,
        state: Mapping[str, str | None] | None = None,
        durable: bool = False,
    ) -> None:
        await self.emitter.emit(events, state=state, durable=durable)


@runtime_checkable
class Component(Protocol):
    """What every source and sink offers the service, admin, metrics and systemd."""

    name: str

    def describe(self) -> str:
        """One secret-free line naming the target (redacted URL, path) for logs, /readyz, status."""
        ...

    def stats(self) -> Mapping[str, float]:
        """Numbers /metrics reads at scrape time (see :data:`STAT_METRICS`)."""
        ...

    def reopen(self) -> None:
        """SIGHUP: reopen files (log rotation); a no-op for most components."""
        ...


@runtime_checkable
class Source(Component, Protocol):
    vendor: str
    health: Health

    async def run(self, ctx: SourceContext, *, task_status: trio.TaskStatus[None] = ...) -> None:
        """Run forever (reconnecting on its own); call ``task_status.started()`` once trying."""
        ...


@runtime_checkable
class Sink(Component, Protocol):
    health: SinkHealth

    async def run(self, feed: Any, *, task_status: trio.TaskStatus[None] = ...) -> None:
        """Deliver rows read through ``feed`` (a :class:`bridge.sinks.feed.SinkFeed`)."""
        ...


# Keys a component's stats() may return, and the Prometheus family each feeds.
STAT_METRICS: dict[str, tuple[str, str]] = {
    "events_read": ("source_events_read", "Vendor inputs read and accepted per source"),
    "parse_errors": ("parse_errors", "Inputs rejected and quarantined per source"),
    "sweep_seconds": ("encore_sweep_seconds", "Duration of the last full poll sweep"),
    "reconciled": ("source_reconciled_events", "Events recovered by reconciliation per source"),
    "throttled_seconds": ("sink_throttled_seconds", "Time a sink waited for its rate limit"),
}


class ComponentBase:
    """Defaults for the optional parts of the contract; components may inherit it."""

    name: str

    def describe(self) -> str:
        return self.name

    def stats(self) -> Mapping[str, float]:
        return {}

    def reopen(self) -> None:
        return None


@dataclass(frozen=True)
class SourceKind(Generic[S]):
    """A source package's registration: its settings class and how to build it."""

    kind: str
    settings: type[S]
    build: Callable[[S], Source]
    doc: str = ""


@dataclass(frozen=True)
class SinkKind(Generic[S]):
    """A sink package's registration; ``demo_receiver`` serves ``scripts/demo``."""

    kind: str
    settings: type[S]
    build: Callable[[S], Sink]
    doc: str = ""
    demo_receiver: Callable[..., Any] | None = None


@dataclass(frozen=True)
class Configured:
    """One ``[[sources.<kind>]]`` / ``[[sinks.<kind>]]`` table, built.

    ``fingerprint`` is what a reload compares to decide whether the component changed.
    """

    kind: str
    name: str
    fingerprint: str
    settings: Any
    component: Any  # Source or Sink
