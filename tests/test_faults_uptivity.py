"""Uptivity source faults on real loopback sockets, through a fault-injecting proxy.

"lost" counts events the bridge had read but did not deliver (must be 0). Events that
were still in transit when a connection was reset are gone for every subscriber (the
Event Proxy has no replay); the rows count them separately as "unread".
"""

from __future__ import annotations

from pathlib import Path

from bridge.simulators.uptivity import UptivitySimulator
from tests.faults import FaultProxy
from tests.helpers import read_jsonl, running_bridge, wait_for, write_config
from tests.reliability import record


def config(tmp_path: Path, sources: dict[str, tuple[str, int]], idle_timeout: float = 300.0) -> Path:
    body = f"""
[bridge]
state_dir = "{tmp_path / "state"}"

[[sinks.log]]
name = "log"
path = "{tmp_path / "events.jsonl"}"
"""
    for name, (host, port) in sources.items():
        body += f"""
[[sources.uptivity]]
name = "{name}"
host = "{host}"
port = {port}
reconnect_min = 0.02
reconnect_max = 0.2
idle_timeout = {idle_timeout}
connect_timeout = 2.0
"""
    return write_config(tmp_path, body)


def delivered(tmp_path: Path, source: str) -> list[int]:
    return [
        int(e["data"]["raw"]["EVENTXREF"])
        for e in read_jsonl(tmp_path / "events.jsonl")
        if e["source"].endswith("/" + source)
    ]


async def test_connection_resets_mid_stream(tmp_path: Path, nursery) -> None:
    sim = UptivitySimulator(rate=300, count=900, numbered=True, devices=3)
    proxy = FaultProxy(await nursery.start(sim.serve))
    await nursery.start(proxy.serve)
    resets = 5
    async with running_bridge(config(tmp_path, {"up": ("127.0.0.1", proxy.port)})) as bridge:
        source = bridge.sources["up"]
        for i in range(resets):
            await wait_for(lambda i=i: sim.produced >= 150 * (i + 1))
            await proxy.reset_all()
        await wait_for(lambda: (sim.produced >= 900 and not sim.subscribers) or sim.produced >= 900)
        await wait_for(
            lambda: len(delivered(tmp_path, "up")) >= source.events_read and source.events_read, timeout=20
        )
        read = source.events_read
        reconnects = source.health.reconnects
    got = delivered(tmp_path, "up")
    assert reconnects >= resets
    assert len(got) == read and got == sorted(got)
    unread = len(sim.all_written()) - len(set(got))
    record(
        "source: uptivity",
        "connection reset (RST) mid-stream",
        injected=resets,
        sent=len(sim.all_written()),
        delivered=len(set(got)),
        duplicated=len(got) - len(set(got)),
        lost=read - len(set(got)),
        unread=unread,
        observed=f"reconnected {reconnects}x; unread = in transit at the resets (the Event Proxy has no replay)",
    )


async def test_silent_peer_is_detected_and_other_sources_keep_flowing(tmp_path: Path, nursery) -> None:
    stalled_sim = UptivitySimulator(rate=100, numbered=True)
    healthy_sim = UptivitySimulator(rate=100, numbered=True)
    proxy = FaultProxy(await nursery.start(stalled_sim.serve))
    await nursery.start(proxy.serve)
    healthy_port = await nursery.start(healthy_sim.serve)
    sources = {"stalled": ("127.0.0.1", proxy.port), "healthy": ("127.0.0.1", healthy_port)}
    async with running_bridge(config(tmp_path, sources, idle_timeout=0.5)) as bridge:
        await wait_for(lambda: len(delivered(tmp_path, "stalled")) >= 20)
        proxy.mode = "stall"  # bytes stop; no FIN, no RST: a half-open peer
        await wait_for(lambda: bridge.sources["stalled"].health.state == "disconnected", timeout=10)
        assert "idle" in bridge.sources["stalled"].health.detail
        healthy_before = len(delivered(tmp_path, "healthy"))
        await wait_for(lambda: len(delivered(tmp_path, "healthy")) >= healthy_before + 30)  # not stalled
        proxy.mode = "pass"
        await wait_for(lambda: bridge.sources["stalled"].health.state == "connected", timeout=10)
        stalled_source = bridge.sources["stalled"]
        read = stalled_source.events_read
        await wait_for(lambda: len(delivered(tmp_path, "stalled")) >= read)
    got = delivered(tmp_path, "stalled")
    record(
        "source: uptivity",
        "silent peer (no FIN), idle timeout 0.5 s",
        injected=1,
        sent=len(stalled_sim.all_written()),
        delivered=len(set(got)),
        lost=stalled_source.events_read - len(set(got)),
        unread=len(stalled_sim.all_written()) - len(set(got)),
        observed="health 'disconnected' with the reason while silent; other source kept flowing; reconnected; "
        "unread = held by the silent path, gone with it (no replay)",
    )


async def test_drip_fed_bytes(tmp_path: Path, nursery) -> None:
    sim = UptivitySimulator(rate=0, count=14, numbered=True)
    proxy = FaultProxy(await nursery.start(sim.serve))
    proxy.mode = "drip"
    proxy.drip_delay = 0.0001
    await nursery.start(proxy.serve)
    async with running_bridge(config(tmp_path, {"up": ("127.0.0.1", proxy.port)})) as bridge:
        await wait_for(lambda: len(delivered(tmp_path, "up")) >= 14, timeout=30)
        reconnects = bridge.sources["up"].health.reconnects
    got = delivered(tmp_path, "up")
    assert got == list(range(1, 15)) and reconnects == 0
    record(
        "source: uptivity",
        "bytes drip-fed one at a time",
        injected=1,
        sent=14,
        delivered=14,
        observed="every document reassembled; no reconnect",
    )


async def test_dns_failure_and_refused_connections_are_retried(tmp_path: Path, nursery) -> None:
    sim = UptivitySimulator(rate=100, numbered=True)
    proxy = FaultProxy(await nursery.start(sim.serve))
    proxy.mode = "refuse"
    await nursery.start(proxy.serve)
    sources = {"nodns": ("bridge-test-host.invalid", 5620), "refused": ("127.0.0.1", proxy.port)}
    async with running_bridge(config(tmp_path, sources)) as bridge:
        await wait_for(lambda: "connect failed" in bridge.sources["nodns"].health.detail, timeout=15)
        await wait_for(lambda: proxy.connections >= 3)
        assert bridge.sources["refused"].health.state == "disconnected"
        proxy.mode = "pass"
        await wait_for(lambda: len(delivered(tmp_path, "refused")) >= 10, timeout=15)
        sim.count = sim.produced
        await wait_for(lambda: set(delivered(tmp_path, "refused")) >= set(sim.all_written()))
        assert bridge.sources["nodns"].health.state == "disconnected"
    record(
        "source: uptivity",
        "DNS failure (host does not resolve)",
        injected=1,
        sent=0,
        delivered=0,
        observed="health 'disconnected: connect failed …'; retried with backoff forever",
    )
    record(
        "source: uptivity",
        "connection refused, then accepted",
        injected=proxy.connections - 1,
        sent=len(sim.all_written()),
        delivered=len(set(delivered(tmp_path, "refused"))),
        observed="retried with backoff; delivered once accepted",
    )
