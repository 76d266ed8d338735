"""The outbox from trio code: operations in one worker thread, one at a time."""

from __future__ import annotations

from typing import Any

import trio

from bridge.outbox.store import Outbox


class AsyncOutbox:
    """Runs :class:`Outbox` operations in a worker thread, one at a time."""

    def __init__(self, outbox: Outbox) -> None:
        self.sync = outbox
        self._limiter = trio.CapacityLimiter(1)

    async def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return await trio.to_thread.run_sync(
            lambda: fn(*args, **kwargs), limiter=self._limiter, abandon_on_cancel=False
        )

    async def read(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """A short read on the event loop's own thread, in turn with the worker's operations.

        Handing every small query to a worker thread costs two thread switches and, under
        load, GIL handoffs that dominate the query itself. Reads in WAL mode never wait
        for writers, so they are safe to run inline; writes (which may fsync or wait for
        a lock) always go through :meth:`call`.
        """
        async with self._limiter:
            return fn(*args, **kwargs)

    async def open(self) -> None:
        await self.call(self.sync.open)

    async def close(self) -> None:
        await self.call(self.sync.close)
