"""The feed a sink reads from: its in-memory delivery window over the outbox.

A sink has a ``name``, a :class:`SinkHealth` and ``async run(feed, task_status)``. It
reads its pending rows, in commit order, through :class:`SinkFeed` and reports each one
delivered, to retry later, or dead. Nothing reaches a sink except through the outbox,
so adding a sink never touches a source. The contract itself (``Sink``, ``SinkHealth``)
is in :mod:`bridge.components`.

The outbox stays the truth; the window is a cache of it that is kept without reading:

* the committer pushes each sink the rows it has just committed for it (the bodies
  encoded once at commit, shared by every sink and every retry);
* after a start, a restart of the sink, a full window or a change made by another
  process (``dlq retry``, ``replay``: SQLite's ``data_version``) or by an operator
  command in this one (the outbox's ``generation``), it reads the outbox again;
* outcomes change the window at once and are written in groups: a write to the outbox
  starts as soon as the previous one finished, carrying every outcome recorded
  meanwhile (one thread hop and one transaction for many deliveries).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import structlog
import trio

from bridge.components import Sink, SinkHealth
from bridge.errors import OutboxUnavailable
from bridge.outbox import AsyncOutbox, Row, Settlements

log = structlog.get_logger("bridge.sinks")

if TYPE_CHECKING:
    from bridge.committer import NewData

WINDOW_MAX = 2048  # rows a sink keeps in memory (8192 cost 15 MB of RSS in the bench); beyond: pages
WINDOW_LOW = WINDOW_MAX // 2  # refill below this
PAGE = 1024
CHECK_EVERY = 0.25  # seconds between checks for changes made by other processes
# A sink running :meth:`SinkFeed.run_flusher` writes its outcomes at most this long after
# they happened, many per transaction (the delivery itself never waits for the write).
FLUSH_DELAY = 0.01


class SinkFeed:
    """One sink's view of the outbox (see the module docstring)."""

    def __init__(
        self, outbox: AsyncOutbox, new_data: NewData, sink: str, observers: Sequence[Any] = ()
    ) -> None:
        self.outbox = outbox
        self.new_data = new_data
        self.sink = sink
        self.observers = list(observers)  # callbacks(sink, rows, outcome) for metrics
        self._rows: dict[int, Row] = {}  # pending rows in seq order
        self._loaded_upto = 0  # every pending row with seq <= this is in _rows (or in flight)
        self._complete = False  # and there is none beyond it: pushed rows may be appended
        self._buffer = Settlements()
        self._writing = False
        self._flusher = False
        self._dirty = trio.Event()
        self._written = trio.Event()
        self._event = trio.Event()
        self._seen: tuple[int, int] | None = None
        self._checked = 0.0
        self.reads = 0  # outbox reads (pages), for the benchmark and tests
        self.shape: Callable[[bytes], bytes] | None = None  # the sink's shaping (bridge.shaping)
        new_data.subscribe(self)

    # -- fed by the committer --------------------------------------------------------
    def push(self, rows: Sequence[Row]) -> None:
        """Rows just committed for this sink (the committer's own objects: copied)."""
        if self._complete:
            window = self._rows
            for r in rows:
                if r.seq <= self._loaded_upto:
                    continue  # already read from the outbox
                if len(window) >= WINDOW_MAX:
                    self._complete = False  # read the rest from the outbox as room frees
                    break
                window[r.seq] = self._admit(r)
                self._loaded_upto = r.seq
        self._event.set()

    def _admit(self, r: Row) -> Row:
        """A row entering this sink's window (the place for per-sink shaping of a body)."""
        body = r.body if self.shape is None else self.shape(r.body)
        return Row(r.seq, r.id, r.source, r.type, r.subject, r.received_at, body)

    def _shaped(self, rows: list[Row]) -> list[Row]:
        """Rows read from the outbox (fresh objects) with their bodies shaped for this sink."""
        if self.shape is not None:
            for r in rows:
                r.body = self.shape(r.body)
        return rows

    def poke(self) -> None:
        """Wake :meth:`wait_for_new` (a sink's own delivery finished)."""
        self._event.set()

    async def wait_for_new(self, timeout: float | None = None) -> None:
        """Until rows were pushed or :meth:`poke` was called since the last wait, or ``timeout``."""
        event = self._event
        if not event.is_set():
            if timeout is None:
                await event.wait()
            else:
                with trio.move_on_after(timeout):
                    await event.wait()
        if self._event is event:
            self._event = trio.Event()

    # -- reading ---------------------------------------------------------------------
    @property
    def saturated(self) -> bool:
        """The window is full and the outbox holds more pending rows past it."""
        return not self._complete and len(self._rows) >= WINDOW_LOW

    async def window(self) -> Iterable[Row]:
        """The pending rows in memory, in commit order (a live view: do not await while
        iterating it). Includes rows a sink has in flight."""
        await self._check_changes()
        if not self._complete and len(self._rows) < WINDOW_LOW:
            await self._fill()
        return self._rows.values()

    async def beyond(self, limit: int) -> list[Row]:
        """Pending rows past the window (not kept): for a sink whose window is all blocked."""
        if self._complete:
            return []
        await self.flush()
        self.reads += 1
        rows: list[Row] = self._shaped(
            await self.outbox.read(self.outbox.sync.pending, self.sink, limit, self._loaded_upto)
        )
        return rows

    async def pending(self, limit: int = 500, after_seq: int = 0) -> list[Row]:
        """Up to ``limit`` pending rows with seq > ``after_seq``, in commit order."""
        out: list[Row] = []
        await self.window()
        for seq, row in self._rows.items():
            if seq > after_seq:
                out.append(row)
                if len(out) >= limit:
                    return out
        if not self._complete:
            await self.flush()
            self.reads += 1
            more: list[Row] = self._shaped(
                await self.outbox.read(
                    self.outbox.sync.pending, self.sink, limit - len(out), max(after_seq, self._loaded_upto)
                )
            )
            out.extend(more)
        return out

    async def _fill(self) -> None:
        await self.flush()  # what was decided is on disk before the disk is read again
        while not self._complete and len(self._rows) < WINDOW_MAX:
            self.reads += 1
            rows: list[Row] = self._shaped(
                await self.outbox.read(self.outbox.sync.pending, self.sink, PAGE, self._loaded_upto)
            )
            for r in rows:
                self._rows[r.seq] = r
            if rows:
                self._loaded_upto = rows[-1].seq
            if len(rows) < PAGE:
                self._complete = True

    async def _check_changes(self) -> None:
        now = time.monotonic()
        if now - self._checked < CHECK_EVERY:
            return
        self._checked = now
        seen: tuple[int, int] = await self.outbox.read(self.outbox.sync.changes)
        if self._seen is not None and seen != self._seen:
            await self.flush()
            self._rows = {}
            self._loaded_upto = 0
            self._complete = False
        self._seen = seen

    def reset(self) -> None:
        """Forget the window: the next read starts from the outbox (a sink's restart)."""
        self._rows = {}
        self._loaded_upto = 0
        self._complete = False

    # -- outcomes --------------------------------------------------------------------
    def mark_delivered(self, rows: Sequence[Row]) -> None:
        for r in rows:
            self._rows.pop(r.seq, None)
            self._buffer.delivered.append(r.seq)
        self._observe(rows, "delivered")

    def skip(self, rows: Sequence[Row]) -> None:
        for r in rows:
            self._rows.pop(r.seq, None)
            self._buffer.skipped.append(r.seq)

    def mark_retry(self, row: Row, *, next_at: float, status: int | None, error: str) -> None:
        kept = self._rows.get(row.seq)
        for r in (row, kept) if kept is not None and kept is not row else (row,):
            r.attempts += 1
            r.next_at = next_at
            if r.first_failed_at is None:
                r.first_failed_at = time.time()
        self._buffer.retries.append((row.seq, next_at, status, error))
        self._observe([row], "retried")

    def mark_dead(self, row: Row, *, status: int | None, error: str) -> None:
        self._rows.pop(row.seq, None)
        self._buffer.dead.append((row.seq, status, error))
        self._observe([row], "dead")

    async def delivered(self, rows: Sequence[Row]) -> None:
        self.mark_delivered(rows)
        await self.flush()

    async def skipped(self, rows: Sequence[Row]) -> None:
        self.skip(rows)
        await self.flush()

    async def retry(self, row: Row, *, next_at: float, status: int | None, error: str) -> None:
        self.mark_retry(row, next_at=next_at, status=status, error=error)
        await self.flush()

    async def dead(self, row: Row, *, status: int | None, error: str) -> None:
        self.mark_dead(row, status=status, error=error)
        await self.flush()

    async def flush(self) -> None:
        """Returns once every outcome recorded so far is written (group commit).

        Outcomes recorded while a write is under way go together in the next one. A
        failed write keeps its outcomes for the next attempt and raises
        :class:`bridge.errors.OutboxUnavailable`.
        """
        while self._buffer or self._writing:
            if self._writing:
                await self._written.wait()
                continue
            outcomes, self._buffer = self._buffer, Settlements()
            self._writing, self._written = True, trio.Event()
            try:
                await self.outbox.call(self.outbox.sync.settle, self.sink, outcomes)
            except BaseException:
                self._buffer = outcomes.merged(self._buffer)
                raise
            finally:
                self._writing = False
                self._written.set()

    def settle_soon(self) -> bool:
        """Leave the write of what was recorded to the flusher; False when none runs
        (the caller then awaits :meth:`flush` itself)."""
        if self._flusher:
            self._dirty.set()
        return self._flusher

    async def run_flusher(self, delay: float = FLUSH_DELAY) -> None:
        """Write recorded outcomes in groups, ``delay`` after the first of each group.

        Runs in the sink's nursery. A lost group (crash) means re-deliveries with the same
        ids, never a loss; on cancellation what is buffered is still written (shielded,
        bounded).
        """
        self._flusher = True
        failing = False
        try:
            while True:
                await self._dirty.wait()
                self._dirty = trio.Event()
                await trio.sleep(delay)
                try:
                    await self.flush()
                except OutboxUnavailable as exc:
                    if not failing:
                        log.warning("sink_outcomes_not_written", sink=self.sink, error=str(exc))
                    failing = True
                    self._dirty.set()  # kept in the buffer: try again
                    await trio.sleep(1.0)
                    continue
                failing = False
        finally:
            self._flusher = False
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                try:
                    await self.flush()
                except OutboxUnavailable:
                    pass

    def _observe(self, rows: Sequence[Row], outcome: str) -> None:
        for observer in self.observers:
            observer(self.sink, rows, outcome)


__all__ = ["Sink", "SinkFeed", "SinkHealth"]
