"""The sweep: every due port once per ``interval``, request starts spread evenly.

A slow server stretches the sweep instead of queueing requests: a poll starts only when
one of ``max_in_flight`` slots is free (and the server's shared budget in
:mod:`bridge.sources.encore.soap` is the final word). ``last_sweep_seconds`` is the
wall time of the last full sweep (metric ``event_bridge_encore_sweep_seconds``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio

from bridge.sources.encore.resolver import Target


class Poller:
    def __init__(
        self,
        interval: float,
        max_in_flight: int,
        due: Callable[[], list[Target]],
        poll: Callable[[Target], Awaitable[None]],
        resume_at: Callable[[], float],
        idle: Callable[[], None],
    ) -> None:
        self.interval = interval
        self.max_in_flight = max_in_flight
        self._due = due
        self._poll = poll
        self._resume_at = resume_at  # the endpoint's backoff: no new poll before this
        self._idle = idle  # called when no port can be polled
        self.last_sweep_seconds: float | None = None
        self.sweeps = 0

    async def run(self) -> None:
        slots = trio.Semaphore(self.max_in_flight)
        next_start = trio.current_time()
        while True:
            due = self._due()
            if not due:
                self._idle()
                await trio.sleep(self.interval)
                continue
            step = self.interval / len(due)
            started = trio.current_time()
            async with trio.open_nursery() as nursery:
                for target in due:
                    next_start = max(next_start + step, trio.current_time())
                    await trio.sleep_until(next_start)
                    await slots.acquire()
                    await trio.sleep_until(self._resume_at())
                    nursery.start_soon(self._one, target, slots)
            # Wait for the pacing slot after the last start too, so a sweep is comparable
            # with ``interval`` (it takes at least that long) and with N x latency.
            await trio.sleep_until(next_start + step)
            next_start = trio.current_time() - step
            self.last_sweep_seconds = trio.current_time() - started
            self.sweeps += 1

    async def _one(self, target: Target, slots: trio.Semaphore) -> None:
        try:
            await self._poll(target)
        finally:
            slots.release()
