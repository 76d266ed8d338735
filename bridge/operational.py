"""The bridge's own CloudEvents (type ``bridge.*``), committed to the outbox like a source's.

They go out through the committer under the pseudo-source ``bridge`` (CloudEvents
``source`` ``/event-bridge/bridge/bridge``), so they are durable, ordered and retried like
every other event. A sink gets them only when it asks: a webhook's ``types`` glob must name
them (``types = ["bridge.*"]``, or ``["*", "bridge.*"]`` for everything); ``"*"`` alone
does not match them, so vendor-event endpoints never see them by default. Nothing is
committed at all unless some sink asks.

No storms: one event per state change (failing, recovered, failing… of one sink), and the
same type for the same sink or source at most once per ``min_interval`` (60 s); a change
held back by that interval goes out when it ends, if it still holds. Dead letters of one
sink within the interval are folded into one event with ``suppressed`` = how many more.

``data`` of each type (the JSON Schemas in bridge/schemas/bridge.*/v1.json match these):

* ``bridge.sink.failing``: ``sink``, ``kind``, ``failures`` (consecutive), ``error``,
  ``status`` (int or null), ``since`` (RFC 3339, first failure of the streak).
* ``bridge.sink.recovered``: ``sink``, ``kind``, ``since`` (RFC 3339), ``down_seconds``.
* ``bridge.sink.disabled``: ``sink``, ``kind``, ``reason`` (``disable_after``,
  ``disable_after_failures``, ``gone``, ``operator``), ``error``.
* ``bridge.delivery.dead_lettered``: ``sink``, ``event_id``, ``event_type``, ``status``
  (int or null), ``error``, ``attempts``, ``suppressed`` (further dead letters folded in).
* ``bridge.source.disconnected``: ``source``, ``vendor``, ``reason``, ``reconnects``,
  ``connected_seconds`` (how long the connection had been up, null if never).
* ``bridge.source.connected``: ``source``, ``vendor``, ``down_seconds`` (null at start),
  ``reconnects``.
* ``bridge.outbox.full``: ``bytes`` (outbox file size), ``limit_bytes`` (null: the disk
  itself refused), ``policy`` (what the bridge does meanwhile), ``error``.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
import trio

from bridge.model import Event

log = structlog.get_logger("bridge.operational")

SOURCE = "bridge"
PREFIX = "bridge."
TYPES = (
    "bridge.sink.failing",
    "bridge.sink.recovered",
    "bridge.sink.disabled",
    "bridge.delivery.dead_lettered",
    "bridge.source.disconnected",
    "bridge.source.connected",
    "bridge.outbox.full",
)
MIN_INTERVAL = 60.0
QUEUE = 1000


def is_operational(event_type: str) -> bool:
    return event_type.startswith(PREFIX)


def type_wanted(patterns: Iterable[str], event_type: str) -> bool:
    """A sink's ``types`` globs; ``bridge.*`` events match only patterns that name them."""
    if is_operational(event_type):
        return any(p.startswith("bridge") and fnmatch.fnmatchcase(event_type, p) for p in patterns)
    return any(fnmatch.fnmatchcase(event_type, p) for p in patterns)


def asks_for_operational(patterns: Iterable[str]) -> bool:
    return any(type_wanted(patterns, t) for t in TYPES)


def rfc3339(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


@dataclass
class _Key:
    state: str | None = None
    last: dict[str, float] = field(default_factory=dict)  # type -> monotonic time emitted
    held: tuple[str, str, dict[str, Any]] | None = None  # (state, type, data) waiting for the interval
    folded: int = 0


class Operational:
    """Collects reports from sinks, sources and the outbox; commits the events they mean.

    Reports are synchronous and never block (sinks call them from their bookkeeping);
    :meth:`run` commits them. ``emit`` is ``SourceEmitter(committer, "bridge").emit``.
    """

    def __init__(
        self,
        emit: Callable[[Sequence[Event]], Awaitable[None]] | None = None,
        *,
        enabled: bool = False,
        min_interval: float = MIN_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.emit = emit
        self.enabled = enabled
        self.min_interval = min_interval
        self.clock = clock
        self._keys: dict[str, _Key] = {}
        self._send, self._receive = trio.open_memory_channel[Event](QUEUE)
        self.emitted: dict[str, int] = {}
        self.dropped = 0

    # -- the pure part: which report becomes an event ---------------------------------
    def report(self, key: str, state: str, event_type: str | None, data: dict[str, Any]) -> None:
        """``key`` (one sink, source…) is now in ``state``; ``event_type`` announces it."""
        if not self.enabled:
            return
        k = self._keys.setdefault(key, _Key())
        if state == k.state:
            k.held = None
            return
        if event_type is None or (k.state is None and state == "ok"):
            k.state, k.held = state, None  # a change nobody is told about (healthy from the start)
            return
        if self.clock() - k.last.get(event_type, -1e18) < self.min_interval:
            k.held = (state, event_type, data)
            return
        self._commit(k, state, event_type, data)

    def fold(self, key: str, event_type: str, data: dict[str, Any]) -> None:
        """A repeatable event (a dead letter): at most one per interval, the rest counted."""
        if not self.enabled:
            return
        k = self._keys.setdefault(key, _Key())
        if self.clock() - k.last.get(event_type, -1e18) < self.min_interval:
            if k.held is None:
                k.held = ("", event_type, data)
            else:
                k.folded += 1
            return
        self._commit(k, "", event_type, {**data, "suppressed": 0})

    def tick(self) -> None:
        """Send what the interval held back, if it still holds."""
        now = self.clock()
        for k in self._keys.values():
            if k.held is None:
                continue
            state, event_type, data = k.held
            if now - k.last.get(event_type, -1e18) < self.min_interval:
                continue
            k.held = None
            if state == "":
                self._commit(k, "", event_type, {**data, "suppressed": k.folded})
                k.folded = 0
            elif state != k.state:
                self._commit(k, state, event_type, data)

    def _commit(self, k: _Key, state: str, event_type: str, data: dict[str, Any]) -> None:
        if state:
            k.state = state
        k.last[event_type] = self.clock()
        subject = str(data.get("sink") or data.get("source") or "outbox")
        moment = datetime.now(UTC)
        event = Event(
            source_name=SOURCE,
            vendor=SOURCE,
            type=event_type,
            subject=subject,
            time=moment,
            data=data,
            identity={"type": event_type, "subject": subject, "data": data, "at": moment.isoformat()},
        )
        try:
            self._send.send_nowait(event)
        except trio.WouldBlock:
            self.dropped += 1
            log.error("operational_event_dropped", type=event_type, subject=subject, queued=QUEUE)
            return
        self.emitted[event_type] = self.emitted.get(event_type, 0) + 1

    # -- reports ------------------------------------------------------------------------
    def sink_failing(
        self, sink: str, kind: str, *, failures: int, error: str, status: int | None, since: float | None
    ) -> None:
        data = {"sink": sink, "kind": kind, "failures": failures, "error": error, "status": status}
        self.report(f"sink:{sink}", "failing", "bridge.sink.failing", {**data, "since": rfc3339(since)})

    def sink_recovered(self, sink: str, kind: str, *, since: float | None, now: float) -> None:
        down = None if since is None else round(max(0.0, now - since), 3)
        data = {"sink": sink, "kind": kind, "since": rfc3339(since), "down_seconds": down}
        self.report(f"sink:{sink}", "ok", "bridge.sink.recovered", data)

    def sink_disabled(self, sink: str, kind: str, *, reason: str, error: str) -> None:
        data = {"sink": sink, "kind": kind, "reason": reason, "error": error}
        self.report(f"sink:{sink}", "disabled", "bridge.sink.disabled", data)

    def sink_enabled(self, sink: str) -> None:
        self.report(f"sink:{sink}", "ok", None, {})

    def dead_lettered(
        self, sink: str, *, event_id: str, event_type: str, status: int | None, error: str, attempts: int
    ) -> None:
        if is_operational(event_type):
            return  # never announce the announcements (no loops)
        data = {
            "sink": sink, "event_id": event_id, "event_type": event_type,
            "status": status, "error": error, "attempts": attempts,
        }  # fmt: skip
        self.fold(f"dead:{sink}", "bridge.delivery.dead_lettered", data)

    # -- sources and the outbox are watched (their health is polled) --------------------
    async def run(
        self,
        sources: Callable[[], Mapping[str, Any]] = dict,
        outbox_problem: Callable[[], str | None] = lambda: None,
        outbox_path: Path | None = None,
        sinks: Callable[[], Mapping[str, Any]] = dict,
        *,
        interval: float = 0.5,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        task_status.started()
        watcher = _Watcher(self)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._drain)
            while True:
                watcher.look(sources(), outbox_problem(), outbox_path)
                watcher.look_at_sinks(sinks())
                self.tick()
                await trio.sleep(interval)

    async def _drain(self) -> None:
        async for event in self._receive:
            if self.emit is not None:
                await guarded(self.emit, [event])


class _Watcher:
    """Turns polled health into reports (a source's connection, the outbox's writes)."""

    def __init__(self, operational: Operational) -> None:
        self.op = operational
        self.up_since: dict[str, float | None] = {}
        self.down_since: dict[str, float | None] = {}
        self.seen: dict[str, str] = {}
        self.reconnects: dict[str, int] = {}
        self.sink_failing_since: dict[str, float] = {}

    def look(self, sources: Mapping[str, Any], problem: str | None, path: Path | None) -> None:
        now = time.monotonic()
        for name, source in list(sources.items()):
            health = getattr(source, "health", None)
            state = getattr(health, "state", "starting")
            up = state in ("connected", "polling")
            vendor = str(getattr(source, "vendor", ""))
            reconnects = int(getattr(health, "reconnects", 0))
            flapped = up and self.seen.get(name) == "up" and reconnects > self.reconnects.get(name, 0)
            self.reconnects[name] = reconnects
            if flapped:  # down and up again between two looks: both are told
                self.op.report(
                    f"source:{name}", "disconnected", "bridge.source.disconnected",
                    {"source": name, "vendor": vendor, "reconnects": reconnects - 1,
                     "reason": "lost and reconnected between two checks (0.5 s)",
                     "connected_seconds": None},
                )  # fmt: skip
                self.seen[name], self.down_since[name] = "down", now
            if state == "starting" or self.seen.get(name) == ("up" if up else "down"):
                continue
            if up:
                down = self.down_since.get(name)
                self.op.report(
                    f"source:{name}", "connected", "bridge.source.connected",
                    {"source": name, "vendor": vendor, "reconnects": reconnects,
                     "down_seconds": None if down is None else round(now - down, 3)},
                )  # fmt: skip
                self.up_since[name], self.down_since[name] = now, None
            else:
                since = self.up_since.get(name)
                self.op.report(
                    f"source:{name}", "disconnected", "bridge.source.disconnected",
                    {"source": name, "vendor": vendor, "reconnects": reconnects,
                     "reason": str(getattr(health, "detail", ""))[:300],
                     "connected_seconds": None if since is None else round(now - since, 3)},
                )  # fmt: skip
                self.down_since[name], self.up_since[name] = now, None
            self.seen[name] = "up" if up else "down"
        self._outbox(problem, path)

    def look_at_sinks(self, sinks: Mapping[str, Any]) -> None:
        """Sinks that report no outcomes themselves (log, NATS: no ``controls``), by health."""
        for name, sink in list(sinks.items()):
            if getattr(sink, "controls", None) is not None:
                continue  # a webhook tells its own failing/recovered/disabled
            health = getattr(sink, "health", None)
            state = str(getattr(health, "state", "starting"))
            module = type(sink).__module__.split(".")  # bridge.sinks.<kind>.sink
            kind = str(getattr(sink, "kind", "") or (module[2] if len(module) > 2 else ""))
            if state in ("retrying", "open", "error"):
                since = self.sink_failing_since.setdefault(name, time.time())
                self.op.sink_failing(
                    name, kind, failures=int(getattr(health, "failed", 0)),
                    error=str(getattr(health, "detail", ""))[:300], status=None, since=since,
                )  # fmt: skip
            elif state == "ok" and name in self.sink_failing_since:
                self.op.sink_recovered(name, kind, since=self.sink_failing_since.pop(name), now=time.time())

    def _outbox(self, problem: str | None, path: Path | None) -> None:
        if problem:
            size = path.stat().st_size if path is not None and path.exists() else 0
            data = {
                "bytes": size, "limit_bytes": None, "error": problem[:300],
                "policy": "hold: sources are pushed back, nothing is dropped; retried until it is writable",
            }  # fmt: skip
            self.op.report("outbox", "full", "bridge.outbox.full", data)
        else:
            self.op.report("outbox", "ok", None, {})


def wanted_by(sinks: Iterable[Any]) -> bool:
    """Whether any configured sink (``Configured`` with settings) asks for operational events."""
    return any(asks_for_operational(getattr(c.settings, "types", ())) for c in sinks)


async def guarded(emit: Callable[[Sequence[Event]], Awaitable[None]], events: Sequence[Event]) -> None:
    """``emit``, except after the committer closed at shutdown (then the report is dropped)."""
    try:
        await emit(events)
    except trio.ClosedResourceError:
        log.info("operational_event_after_shutdown", types=[e.type for e in events])
