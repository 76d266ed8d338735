"""What the admin listener shows, kept cheap: nothing costly runs per request.

Outbox counts (a GROUP BY over the deliveries table) and the write probe used to run on
the committer's own queue for every ``/readyz`` and ``/metrics`` request; sixteen
parallel scrapers made readiness 70 times slower. Now one background task refreshes
them every ``[admin] refresh_interval`` seconds: the counts through a separate
*read-only* SQLite connection in its own thread (WAL readers never wait for the
writer), and the write probe only when no commit proved the disk writable since the
last refresh. Requests read the cached values and in-memory counters only.

Delivery rate and latency percentiles come from the sink feeds' observer hook (a
bounded window per sink); the last event per source from the committer's hook.
"""

from __future__ import annotations

import sqlite3
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
import trio

from bridge.outbox import Outbox, OutboxUnavailable, Pending, Row

if TYPE_CHECKING:
    from bridge.service import Bridge

log = structlog.get_logger("bridge.admin")

RATE_WINDOW = 60.0  # seconds of deliveries the rate is computed over
LATENCY_SAMPLES = 2000  # recent delivery latencies kept per sink for percentiles


def read_only_uri(path: Path) -> str:
    """A SQLite URI opening ``path`` read-only (percent-encoded: any file name works)."""
    return path.resolve().as_uri() + "?mode=ro"


class ReadOnlyOutbox:
    """The outbox file opened read-only, in a thread of its own (not the writer's)."""

    def __init__(self, path: Path) -> None:
        self.view = Outbox(path)
        self._limiter = trio.CapacityLimiter(1)

    def _connect(self) -> None:
        if self.view.conn is None:
            conn = sqlite3.connect(
                read_only_uri(self.view.path), uri=True, check_same_thread=False, timeout=5
            )
            conn.execute("PRAGMA query_only=ON")
            self.view.conn = conn

    async def run(self, fn: Any, *args: Any) -> Any:
        def call() -> Any:
            self._connect()
            return fn(self.view, *args)

        return await trio.to_thread.run_sync(call, limiter=self._limiter)

    async def close(self) -> None:
        await trio.to_thread.run_sync(self.view.close, limiter=self._limiter)


class SinkWindow:
    """Recent deliveries of one sink: rate over a minute, latency percentiles."""

    def __init__(self) -> None:
        self.delivered: deque[tuple[float, int]] = deque()
        self.latencies: deque[float] = deque(maxlen=LATENCY_SAMPLES)

    def add(self, now: float, rows: Sequence[Row]) -> None:
        self.delivered.append((now, len(rows)))
        self.latencies.extend(max(0.0, now - r.received_at) for r in rows)
        self._trim(now)

    def _trim(self, now: float) -> None:
        while self.delivered and self.delivered[0][0] < now - RATE_WINDOW:
            self.delivered.popleft()

    def rate(self, now: float) -> float:
        self._trim(now)
        return sum(n for _, n in self.delivered) / RATE_WINDOW

    def percentiles(self) -> dict[str, float | None]:
        values = sorted(self.latencies)
        if not values:
            return {"p50": None, "p90": None, "p99": None}

        def pick(q: float) -> float:
            return values[min(len(values) - 1, int(q * len(values)))]

        return {"p50": pick(0.5), "p90": pick(0.9), "p99": pick(0.99)}


class AdminCache:
    def __init__(self, bridge: Bridge, refresh_interval: float = 5.0) -> None:
        self.bridge = bridge
        self.refresh_interval = refresh_interval
        self.outbox = ReadOnlyOutbox(bridge.outbox.sync.path)
        self.stats: dict[str, Any] = {}
        self.unwritable: str | None = None  # what the last write probe said
        self.refreshes = 0
        self.probes = 0
        self.last_event: dict[str, float] = {}
        self.windows: dict[str, SinkWindow] = {}
        self._committed_at_probe: int | None = None
        bridge.committer.on_commit.append(self.on_commit)
        bridge.delivery_observers.append(self.on_delivery)

    # -- hooks (in-memory, O(batch)) ------------------------------------------------
    def on_commit(self, batch: Sequence[Pending]) -> None:
        now = time.time()
        for pending in batch:
            if pending.events:
                self.last_event[pending.source] = now

    def on_delivery(self, sink: str, rows: Sequence[Row], outcome: str) -> None:
        if outcome == "delivered":
            self.windows.setdefault(sink, SinkWindow()).add(time.time(), rows)

    # -- background refresh -------------------------------------------------------------
    async def refresh(self) -> None:
        """Recount the outbox (read-only) and probe writability if nothing proved it."""
        try:
            stats = await self.outbox.run(Outbox.stats)
        except sqlite3.Error as exc:
            log.warning("admin_stats_failed", error=str(exc))
        else:
            stats["refreshed_at"] = time.time()
            self.stats = stats
            self.refreshes += 1
        committed = self.bridge.committer.committed
        if self._committed_at_probe is None or committed == self._committed_at_probe:
            await self._probe()  # nothing was committed since the last look: ask the disk
        else:
            self.unwritable = None  # commits went through since the last look
        self._committed_at_probe = committed
        self.stats["unwritable"] = self.unwritable

    async def _probe(self) -> None:
        self.probes += 1
        try:
            await self.bridge.outbox.call(self.bridge.outbox.sync.probe_writable)
        except OutboxUnavailable as exc:
            self.unwritable = str(exc)
        else:
            self.unwritable = None

    async def run(self) -> None:
        try:
            while True:
                await trio.sleep(self.refresh_interval)
                await self.refresh()
        finally:
            with trio.CancelScope(shield=True):
                await self.outbox.close()

    # -- what requests read --------------------------------------------------------------
    def outbox_problem(self) -> str | None:
        return self.bridge.committer.unavailable or self.unwritable
