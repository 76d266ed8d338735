"""NATS JetStream sink against a real nats-server (JetStream on, loopback, free port)."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from bridge.simulators.uptivity import UptivitySimulator
from tests.support.helpers import running_bridge, wait_for, write_config
from tests.support.nats_server import NatsServer, read_stream, running_server, stream_count

pytestmark = [pytest.mark.needs_nats]

STREAM = "EVENTS"


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    yield from running_server(tmp_path)


def nats_config(
    tmp_path: Path,
    sim_port: int,
    url: str,
    *,
    state: str = "state",
    sink_extra: str = "",
    name: str = "bridge.toml",
) -> Path:
    return write_config(
        tmp_path,
        f"""
[bridge]
state_dir = "{tmp_path / state}"

[outbox]
synchronous = "normal"

[admin]
enabled = false

[[sources.uptivity]]
name = "up"
host = "127.0.0.1"
port = {sim_port}
reconnect_min = 0.02
reconnect_max = 0.2

[[sinks.nats]]
name = "js"
servers = ["{url}"]
stream = "{STREAM}"
create_stream = true
duplicate_window = 600
reconnect_min = 0.05
reconnect_max = 0.5
timeout = 2.0
{sink_extra}
""",
        name=name,
    )


def number(body: bytes) -> int:
    return int(json.loads(body)["data"]["raw"]["EVENTXREF"])


def outbox_ids(state_dir: Path) -> set[str]:
    with sqlite3.connect(state_dir / "outbox.sqlite3") as conn:
        return {eid for (eid,) in conn.execute("SELECT id FROM events")}


def undelivered(state_dir: Path, sink: str = "js") -> int:
    with sqlite3.connect(state_dir / "outbox.sqlite3") as conn:
        return conn.execute("SELECT count(*) FROM deliveries WHERE sink=? AND state!=1", (sink,)).fetchone()[
            0
        ]


async def test_publishes_every_event_with_msg_id_and_reads_back(tmp_path, nursery, nats_server) -> None:
    sim = UptivitySimulator(rate=0, count=21, numbered=True)
    sim_port = await nursery.start(sim.serve)
    config = nats_config(tmp_path, sim_port, nats_server.url)
    async with running_bridge(config) as bridge:
        await wait_for(lambda: bridge.sinks["js"].health.delivered == 21)
        assert bridge.sinks["js"].health.state == "ok"
    messages = await read_stream(nats_server.url, STREAM)
    assert sorted(number(m.body) for m in messages) == list(range(1, 22))
    assert [number(m.body) for m in messages] == list(range(1, 22)), "commit order kept"
    for m in messages:
        event = json.loads(m.body)
        assert m.headers["Nats-Msg-Id"] == event["id"] == m.headers["ce-id"]
        assert m.headers["content-type"] == "application/cloudevents+json"
        assert m.headers["ce-type"] == event["type"]
        assert m.subject == f"events.uptivity.{event['type']}"
    assert {m.headers["Nats-Msg-Id"] for m in messages} == outbox_ids(tmp_path / "state")
    assert undelivered(tmp_path / "state") == 0


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
async def test_server_restart_mid_burst_loses_nothing(tmp_path, nursery, nats_server, stop_signal) -> None:
    count = 1500
    sim = UptivitySimulator(rate=500, count=count, numbered=True)
    sim_port = await nursery.start(sim.serve)
    config = nats_config(tmp_path, sim_port, nats_server.url, sink_extra="reconnect_wait = 0.1")
    async with running_bridge(config) as bridge:
        sink = bridge.sinks["js"]
        await wait_for(lambda: sink.health.delivered >= 200, timeout=30)
        await trio.to_thread.run_sync(nats_server.stop, stop_signal)
        await wait_for(lambda: sink.health.state == "retrying", timeout=30)
        stalled_at = sink.health.delivered
        await sim.wait_produced(stalled_at + 300)  # events keep arriving while NATS is down
        await trio.to_thread.run_sync(nats_server.start)
        await wait_for(lambda: sim.produced == count, timeout=60)
        await wait_for(lambda: undelivered(tmp_path / "state") == 0, timeout=60)
        assert sink.health.extra["reconnects"] >= 1
    messages = await read_stream(nats_server.url, STREAM)
    ids = [m.headers["Nats-Msg-Id"] for m in messages]
    assert len(ids) == len(set(ids)), "the stream holds each event once"
    assert sorted(number(m.body) for m in messages) == list(range(1, count + 1))
    assert set(ids) == outbox_ids(tmp_path / "state")


async def test_two_bridges_on_one_stream_store_each_event_once(tmp_path, nursery, nats_server) -> None:
    count = 700
    sim = UptivitySimulator(rate=1000, count=count, numbered=True, min_subscribers=2)
    sim_port = await nursery.start(sim.serve)
    config_a = nats_config(tmp_path, sim_port, nats_server.url, state="a", name="a.toml")
    config_b = nats_config(tmp_path, sim_port, nats_server.url, state="b", name="b.toml")
    async with running_bridge(config_a) as a, running_bridge(config_b) as b:
        await wait_for(lambda: a.sinks["js"].health.delivered == count, timeout=60)
        await wait_for(lambda: b.sinks["js"].health.delivered == count, timeout=60)
        duplicates = a.sinks["js"].health.extra["duplicates"] + b.sinks["js"].health.extra["duplicates"]
    assert outbox_ids(tmp_path / "a") == outbox_ids(tmp_path / "b"), "same source name, same ids"
    assert await stream_count(nats_server.url, STREAM) == count
    messages = await read_stream(nats_server.url, STREAM)
    assert sorted(number(m.body) for m in messages) == list(range(1, count + 1))
    assert {m.headers["Nats-Msg-Id"] for m in messages} == outbox_ids(tmp_path / "a")
    assert duplicates == count, "every event was published twice and JetStream dropped one copy"


def start_bridge(config: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "bridge", "run", "--config", str(config), "--shutdown-grace", "5"],
        stdout=subprocess.DEVNULL,
        stderr=log.open("ab"),
    )


async def test_kill_9_of_one_bridge_the_other_keeps_the_stream_complete(
    tmp_path, nursery, nats_server
) -> None:
    count = 2000
    sim = UptivitySimulator(rate=400, count=count, numbered=True, min_subscribers=2)
    sim_port = await nursery.start(sim.serve)
    config_a = nats_config(tmp_path, sim_port, nats_server.url, state="a", name="a.toml")
    config_b = nats_config(tmp_path, sim_port, nats_server.url, state="b", name="b.toml")
    a = start_bridge(config_a, tmp_path / "a.log")
    b = start_bridge(config_b, tmp_path / "b.log")
    try:
        await wait_for(lambda: sim.produced >= 400, timeout=60)
        # Kill only once the stream has events (on a loaded machine publishing may lag the
        # simulator): the kill must happen mid-stream, not before anything was published.
        with trio.fail_after(60):
            while (before_kill := await stream_count(nats_server.url, STREAM)) <= 0:
                await trio.sleep(0.05)
        a.send_signal(signal.SIGKILL)
        await trio.to_thread.run_sync(a.wait)
        await wait_for(lambda: len(sim.subscribers) == 1)
        sim.min_subscribers = 1  # the survivor alone keeps the proxy producing
        sim.pause(False)
        await wait_for(lambda: sim.produced == count, timeout=60)
        survivor = next(iter(sim.subscribers.values()))
        await wait_for(lambda: len(survivor.written) == count, timeout=30)
        await wait_for(lambda: undelivered(tmp_path / "b") == 0, timeout=60)
    finally:
        for proc in (a, b):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        assert await trio.to_thread.run_sync(b.wait) == 0
        await trio.to_thread.run_sync(a.wait)
    assert before_kill > 0, "both bridges were publishing before the kill"
    messages = await read_stream(nats_server.url, STREAM)
    numbers = [number(m.body) for m in messages]
    assert len(numbers) == len(set(numbers)), "no event stored twice"
    assert sorted(numbers) == list(range(1, count + 1)), "the survivor kept the stream complete"
    assert {m.headers["Nats-Msg-Id"] for m in messages} == outbox_ids(tmp_path / "b")
    assert len(outbox_ids(tmp_path / "a")) < count, "the killed bridge did not see everything"
