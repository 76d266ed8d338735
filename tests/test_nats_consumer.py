"""The durable pull consumer from the README, run against a stream the bridge filled:
a consumer that stops resumes after the last event it acknowledged."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from bridge.simulators.uptivity import UptivitySimulator
from tests.helpers import running_bridge, wait_for
from tests.nats_server import NatsServer, running_server
from tests.test_nats_sink import nats_config


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    yield from running_server(tmp_path)


# -- the README example (kept in sync by hand) ----------------------------------------------
async def consume(url: str, handle, *, limit: int) -> None:
    import nats
    from nats.js.api import AckPolicy, ConsumerConfig

    nc = await nats.connect(url)
    js = nc.jetstream()
    sub = await js.pull_subscribe(
        "events.>",
        durable="billing",  # the consumer's name: its position survives restarts
        stream="EVENTS",
        config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, ack_wait=30, max_deliver=-1),
    )
    handled = 0
    try:
        while handled < limit:
            try:
                msgs = await sub.fetch(min(100, limit - handled), timeout=2)
            except nats.errors.TimeoutError:
                continue
            for msg in msgs:
                event = json.loads(msg.data)  # structured CloudEvent
                handle(event)  # idempotent on event["id"]
                await msg.ack()
                handled += 1
    finally:
        await nc.drain()


async def test_durable_pull_consumer_resumes_after_its_last_ack(tmp_path, nursery, nats_server) -> None:
    sim = UptivitySimulator(rate=0, count=30, numbered=True)
    sim_port = await nursery.start(sim.serve)
    async with running_bridge(nats_config(tmp_path, sim_port, nats_server.url)) as bridge:
        await wait_for(lambda: bridge.sinks["js"].health.delivered == 30)
    got: list[dict] = []
    await trio.to_thread.run_sync(lambda: asyncio.run(consume(nats_server.url, got.append, limit=12)))
    assert len(got) == 12
    await trio.to_thread.run_sync(lambda: asyncio.run(consume(nats_server.url, got.append, limit=18)))
    numbers = [int(e["data"]["raw"]["EVENTXREF"]) for e in got]
    assert numbers == list(range(1, 31)), "the second run starts where the first one stopped"
    assert len({e["id"] for e in got}) == 30
