"""Per-endpoint rate limit, counted by the receiver's own clock, beside an unlimited endpoint."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from bridge.asgi import serve_asgi
from tests.integration.endpoint_support import (
    emit,
    events,
    free_port,
    numbers,
    running,
    sink_table,
    start_source,
    write_config,
)
from tests.support.helpers import wait_for
from tests.support.receivers import Receiver

RATE = 20.0
COUNT = 260


@pytest.mark.slow
async def test_rate_limit_holds_within_ten_percent_while_another_endpoint_runs_at_full_speed(
    tmp_path: Path, nursery
) -> None:
    limited, free = Receiver(), Receiver()
    limited_port = await nursery.start(serve_asgi, limited.app)
    unlimited_port = await nursery.start(serve_asgi, free.app)
    sinks = sink_table(
        "limited",
        f"http://127.0.0.1:{limited_port}/hook",
        f"rate_limit = {RATE}\nburst = 1\nmax_in_flight = 8",
    ) + sink_table("free", f"http://127.0.0.1:{unlimited_port}/hook", "max_in_flight = 8")
    admin_port = free_port()
    async with running(write_config(tmp_path, sinks, await start_source(nursery), admin_port)) as bridge:
        await emit(bridge, events(COUNT, subjects=8))
        await wait_for(lambda: len(numbers(free.requests)) == COUNT, timeout=60)
        during = len(numbers(limited.requests))
        await wait_for(lambda: len(numbers(limited.requests)) == COUNT, timeout=60)
        throttled = bridge.sinks["limited"].stats()["throttled_seconds"]
        assert bridge.sinks["free"].stats()["throttled_seconds"] == 0
        async with httpx.AsyncClient() as client:
            metrics = (await client.get(f"http://127.0.0.1:{admin_port}/metrics")).text
    assert during < COUNT  # the limited endpoint was still being paced when the other had all
    # Counted at the receiver, by its own timestamps: every 10 s window from the first request.
    arrivals = sorted(r.at for r in limited.requests)
    first = arrivals[0]
    in_window = sum(1 for t in arrivals if first <= t < first + 10.0)
    assert RATE * 10 * 0.9 <= in_window <= RATE * 10 * 1.1, in_window
    for start in arrivals[: len(arrivals) // 4]:  # any window starting at a request
        window = sum(1 for t in arrivals if start <= t < start + 10.0)
        assert window <= RATE * 10 * 1.1, window
    assert throttled > 5.0
    exposed = {
        line.split("{")[1].split("}")[0]: float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("event_bridge_sink_throttled_seconds_total{")
    }
    assert exposed['sink="limited"'] > 5.0 and exposed['sink="free"'] == 0.0
    assert sorted(numbers(limited.requests)) == list(range(COUNT))
    assert len(set(numbers(limited.requests))) == COUNT
    per_subject: dict[str, list[int]] = {}
    for request in limited.requests:
        for event in request.events():
            per_subject.setdefault(event["subject"], []).append(event["data"]["n"])
    assert len(per_subject) == 8 and all(seq == sorted(seq) for seq in per_subject.values())  # order kept
