"""Retry policy against a real receiver: chosen statuses, max_age, Svix's abort-message."""

from __future__ import annotations

import time
from pathlib import Path

from bridge.asgi import serve_asgi
from bridge.outbox import DEAD, Outbox
from tests.integration.endpoint_support import (
    emit,
    events,
    numbers,
    running,
    sink_component,
    sink_table,
    start_source,
    write_config,
)
from tests.support.helpers import wait_for
from tests.support.receivers import Receiver


def dead_letters(tmp_path: Path, sink: str) -> list[dict]:
    box = Outbox(tmp_path / "state" / "outbox.sqlite3")
    box.open()
    try:
        return box.deliveries(sink=sink, state=DEAD)
    finally:
        box.close()


async def test_only_the_chosen_statuses_are_retried(tmp_path: Path, nursery) -> None:
    async def answer(receiver: Receiver, headers: dict, body: bytes) -> int:
        # the first attempt of each event: 404 (listed: retried) or 503 (not listed: dead)
        n = len(receiver.requests)
        return {0: 404, 1: 204, 2: 503}.get(n, 204)

    hook = Receiver(answer)
    port = await nursery.start(serve_asgi, hook.app)
    sinks = sink_table(
        "hook", f"http://127.0.0.1:{port}/hook", 'retry_statuses = ["404", "429"]\nmax_in_flight = 1'
    )
    async with running(write_config(tmp_path, sinks, await start_source(nursery))) as bridge:
        await emit(bridge, events(2))
        await wait_for(lambda: bridge.sinks["hook"].health.dead == 1)
    assert [r.status for r in hook.requests] == [404, 204, 503]
    assert numbers(hook.requests) == [0]
    (dead,) = dead_letters(tmp_path, "hook")
    assert dead["last_status"] == 503


async def test_abort_message_header_dead_letters_that_event_only(tmp_path: Path, nursery) -> None:
    async def abort_first(receiver: Receiver, headers: dict, body: bytes):
        if not receiver.requests:
            return 503, {"webhook-delivery": "abort-message"}, b"do not retry this one"
        return 204

    hook = Receiver(abort_first)
    port = await nursery.start(serve_asgi, hook.app)
    sinks = sink_table("hook", f"http://127.0.0.1:{port}/hook", "max_in_flight = 1")
    async with running(write_config(tmp_path, sinks, await start_source(nursery))) as bridge:
        await emit(bridge, events(3))
        await wait_for(lambda: len(numbers(hook.requests)) == 2)
        assert bridge.sinks["hook"].health.state == "ok"  # the endpoint itself stays enabled
    assert numbers(hook.requests) == [1, 2]
    assert len(hook.requests) == 3  # the aborted event was not retried
    (dead,) = dead_letters(tmp_path, "hook")
    assert dead["last_status"] == 503


class FakeClock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


async def test_an_event_failing_past_max_age_is_dead_lettered_not_retried(tmp_path: Path, nursery) -> None:
    hook = Receiver(lambda receiver, headers, body: _status(503))
    port = await nursery.start(serve_asgi, hook.app)
    sinks = sink_table("hook", f"http://127.0.0.1:{port}/hook", "max_age = 3600\nmax_in_flight = 1")
    clock = FakeClock()

    def fake_clock(config) -> None:
        sink_component(config, "hook").clock = clock

    async with running(
        write_config(tmp_path, sinks, await start_source(nursery)), prepare=fake_clock
    ) as bridge:
        sink = bridge.sinks["hook"]
        await emit(bridge, events(1))
        await wait_for(lambda: len(hook.requests) >= 2)
        assert sink.health.dead == 0  # young: retried
        clock.offset += 3601
        sink.wake()
        await wait_for(lambda: sink.health.dead == 1)
        seen = len(hook.requests)
    assert seen == len(hook.requests)
    (dead,) = dead_letters(tmp_path, "hook")
    assert dead["last_status"] == 503 and dead["last_error"].startswith("older than max_age (3600 s)")


async def _status(code: int) -> int:
    return code
