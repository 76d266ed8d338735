"""What every sink implements and the feed it reads from.

A sink has a ``name``, a :class:`SinkHealth` and ``async run(feed, task_status)``. It
reads its own pending rows from the outbox through :class:`SinkFeed` (in commit order)
and reports each one delivered, to retry later, or dead. Nothing reaches a sink except
through the outbox, so adding a sink never touches a source. The contract itself
(``Sink``, ``SinkHealth``) is in :mod:`bridge.components`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bridge.committer import NewData
from bridge.components import Sink, SinkHealth
from bridge.outbox import AsyncOutbox, Row, Settlements


class SinkFeed:
    """One sink's view of the outbox."""

    def __init__(
        self, outbox: AsyncOutbox, new_data: NewData, sink: str, observers: Sequence[Any] = ()
    ) -> None:
        self.outbox = outbox
        self.new_data = new_data
        self.sink = sink
        self.observers = list(observers)  # callbacks(sink, rows, outcome) for metrics
        self._buffer = Settlements()

    async def pending(self, limit: int = 500, after_seq: int = 0) -> list[Row]:
        return await self.outbox.read(self.outbox.sync.pending, self.sink, limit, after_seq)

    async def wait_for_new(self, timeout: float | None = None) -> None:
        await self.new_data.wait(timeout)

    async def delivered(self, rows: Sequence[Row]) -> None:
        self._buffer.delivered.extend(r.seq for r in rows)
        self._observe(rows, "delivered")
        await self.flush()

    async def skipped(self, rows: Sequence[Row]) -> None:
        self._buffer.skipped.extend(r.seq for r in rows)
        await self.flush()

    async def retry(self, row: Row, *, next_at: float, status: int | None, error: str) -> None:
        self._buffer.retries.append((row.seq, next_at, status, error))
        self._observe([row], "retried")
        await self.flush()

    async def dead(self, row: Row, *, status: int | None, error: str) -> None:
        self._buffer.dead.append((row.seq, status, error))
        self._observe([row], "dead")
        await self.flush()

    async def flush(self) -> None:
        """Write every outcome recorded so far; returns once the caller's are on disk.

        Concurrent deliveries that finish while a write is under way are written together
        by the next one (group commit): one transaction for many outcomes, not one each.
        """
        if not self._buffer:
            return
        outcomes, self._buffer = self._buffer, Settlements()
        await self.outbox.call(self.outbox.sync.settle, self.sink, outcomes)

    def _observe(self, rows: Sequence[Row], outcome: str) -> None:
        for observer in self.observers:
            observer(self.sink, rows, outcome)


__all__ = ["Sink", "SinkFeed", "SinkHealth"]
