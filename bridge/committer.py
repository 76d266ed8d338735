"""Group commit from sources into the outbox, and the wake-up signal for sinks.

Sources call :meth:`Committer.emit`; one task drains everything queued so far and
commits it in a single transaction, then immediately starts on whatever arrived
meanwhile. When the disk refuses a commit the batch stays in memory and is retried
with backoff while the bounded queue fills and pushes back on the sources: nothing is
dropped and nothing is acknowledged that is not on disk.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import structlog
import trio

from bridge.backoff import Backoff
from bridge.errors import OutboxUnavailable
from bridge.model import Event
from bridge.outbox import AsyncOutbox, Pending, Row

log = structlog.get_logger("bridge.committer")

MAINTAIN_EVERY = 1.0  # seconds between maintenance steps of the outbox (retention, limits)


class NewData:
    """What was just committed, pushed to every sink's feed; and a broadcast signal.

    Feeds subscribe weakly: a sink removed by a reload simply stops being fed.
    """

    def __init__(self) -> None:
        self._event = trio.Event()
        self._feeds: weakref.WeakSet[Any] = weakref.WeakSet()

    def subscribe(self, feed: Any) -> None:
        self._feeds.add(feed)

    def publish(self, rows: Sequence[Row], sinks: Sequence[str]) -> None:
        """Hand ``rows`` (committed with a delivery row for each of ``sinks``) to the feeds."""
        wanted = set(sinks)
        for feed in list(self._feeds):
            if feed.sink in wanted:
                feed.push(rows)
        self.notify()

    def notify(self) -> None:
        self._event.set()
        self._event = trio.Event()

    async def wait(self, timeout: float | None = None) -> None:
        event = self._event
        if timeout is None:
            await event.wait()
        else:
            with trio.move_on_after(timeout):
                await event.wait()


class Committer:
    def __init__(self, outbox: AsyncOutbox, *, batch_max: int = 1000, max_queued_events: int = 5_000) -> None:
        self.outbox = outbox
        self.batch_max = batch_max
        # Bounded by events, not by emit() calls: one call may carry a whole TCP read.
        self.max_queued_events = max_queued_events
        self.queued_events = 0
        self._space = trio.Event()
        self._send, self._receive = trio.open_memory_channel[Pending](float("inf"))
        self.new_data = NewData()
        self.committed = 0
        self.unavailable: str | None = None  # why commits currently fail, for /readyz
        self.on_commit: list[Any] = []  # callbacks(batch) for metrics and live tail

    async def emit(
        self,
        source: str,
        events: Sequence[Event],
        *,
        state: Mapping[str, str | None] | None = None,
        durable: bool = False,
    ) -> None:
        if not events and not state:
            return
        done = trio.Event() if durable else None
        # Shielded: once a source has read an event, a shutdown must not lose it between
        # the socket and the queue. The committer drains the queue before it exits.
        with trio.CancelScope(shield=True):
            while self.queued_events and self.queued_events + len(events) > self.max_queued_events:
                await self._space.wait()  # backpressure: the source stops reading
            self.queued_events += len(events)
            self._send.send_nowait(Pending(source, events, state, time.time(), done))
        if done is not None:
            await done.wait()

    def close(self) -> None:
        """No more emits: run() commits what is queued, then returns."""
        self._send.close()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._maintain)
            task_status.started()
            await self._drain_queue()
            nursery.cancel_scope.cancel()

    async def _maintain(self) -> None:
        """The outbox's disk rules (:mod:`bridge.outbox.limits`), one small step at a time
        between commits: no transaction holds the writer for long."""
        sync = self.outbox.sync
        failing = False
        while True:
            await trio.sleep(MAINTAIN_EVERY)
            try:
                result = await self.outbox.call(sync.maintain)
            except OutboxUnavailable as exc:
                if not failing:
                    log.warning("outbox_maintenance_failed", error=str(exc))
                failing = True
                continue
            failing = False
            for sink, count in (result.expired or {}).items():
                log.warning(
                    "outbox_deliveries_expired",
                    sink=sink,
                    events=count,
                    hint="still pending after [outbox] max_pending_age: dead-lettered; see "
                    "'event-bridge dlq list', re-deliver with 'event-bridge dlq retry'",
                )
            if result.deleted or result.dead_pruned:
                log.debug("outbox_pruned", events=result.deleted, dead_letters=result.dead_pruned)
            while result.more:
                await trio.sleep(0.02)  # let commits in between steps
                result = await self.outbox.call(sync.maintain)

    async def _drain_queue(self) -> None:
        backoff = Backoff(base=0.1, cap=5.0)
        async with self._receive:
            while True:
                try:
                    first = await self._receive.receive()
                except trio.EndOfChannel:
                    return
                batch = [first]
                size = len(first.events)
                while size < self.batch_max:
                    try:
                        item = self._receive.receive_nowait()
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                    batch.append(item)
                    size += len(item.events)
                await self._commit_until_it_works(batch, backoff)

    async def _commit_until_it_works(self, batch: list[Pending], backoff: Backoff) -> None:
        while True:
            try:
                rows, sinks = await self.outbox.call(self.outbox.sync.commit_rows, batch)
            except OutboxUnavailable as exc:
                if self.unavailable is None:
                    log.error(
                        "outbox_commit_failed",
                        error=str(exc),
                        held_events=sum(len(p.events) for p in batch),
                        hint="free disk space or fix permissions on the state dir; events are held, "
                        "not dropped",
                    )
                self.unavailable = str(exc)
                await trio.sleep(backoff.next())
                continue
            if self.unavailable is not None:
                log.info("outbox_commit_recovered")
                self.unavailable = None
            backoff.reset()
            break
        count = sum(len(p.events) for p in batch)
        self.committed += count
        self.queued_events -= count
        self._space.set()
        self._space = trio.Event()
        for item in batch:
            if item.done is not None:
                item.done.set()
        for callback in self.on_commit:
            callback(batch)
        self.new_data.publish(rows, sinks)


class SourceEmitter:
    """The :class:`bridge.sources.base.Emitter` one source sees: scoped to its name."""

    def __init__(self, committer: Committer, source: str) -> None:
        self.committer = committer
        self.source = source

    async def emit(
        self,
        events: Sequence[Event],
        *,
        state: Mapping[str, str | None] | None = None,
        durable: bool = False,
    ) -> None:
        await self.committer.emit(self.source, events, state=state, durable=durable)
