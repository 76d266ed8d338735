"""Uptivity source faults on real loopback sockets, through a fault-injecting proxy.

Accounting comes from the simulator's own journal (which event numbers it handed to
the kernel on which connection), never from the bridge's counters. Per connection, the
delivered events must be a gap-free prefix of what was written to it: the remainder,
written after the last event the bridge received on that connection, was in transit
when the connection died ("unread": the Event Proxy has no replay). A missing event
followed by a delivered one on the same connection is "lost" and fails the test.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.simulators.uptivity import UptivitySimulator
from tests.support.faults import FaultProxy
from tests.support.helpers import read_jsonl, running_bridge, wait_for, write_config
from tests.support.reliability import record


def config(tmp_path: Path, sources: dict[str, tuple[str, int]], **options: float) -> Path:
    options.setdefault("timeout", 2.0)
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
"""
        body += "".join(f"{key} = {value}\n" for key, value in options.items())
    return write_config(tmp_path, body)


def delivered(tmp_path: Path, source: str) -> list[int]:
    """EVENTXREF of the live events delivered for ``source`` (reconciled ones carry a
    status answer, not a simulator event)."""
    return [
        int(e["data"]["raw"]["EVENTXREF"])
        for e in read_jsonl(tmp_path / "events.jsonl")
        if e["source"].endswith("/" + source) and not e["data"].get("reconciled")
    ]


def account(sim: UptivitySimulator, got: list[int]) -> tuple[int, int]:
    """(lost, unread) from the simulator's per-connection journal and what was delivered."""
    have = set(got)
    lost = unread = 0
    for numbers in sim.written().values():
        last = max((i for i, n in enumerate(numbers) if n in have), default=-1)
        lost += sum(1 for n in numbers[: last + 1] if n not in have)  # a gap before a delivered one
        unread += len(numbers) - last - 1  # the tail after the last delivered one: in transit
    return lost, unread


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
        await wait_for(lambda: sim.produced >= 900)
        # The connection that is still up must bring everything written to it.
        final = max(sim.written())
        await wait_for(lambda: set(sim.written()[final]) <= set(delivered(tmp_path, "up")), timeout=20)
        reconnects = source.health.reconnects
    got = delivered(tmp_path, "up")
    lost, unread = account(sim, got)
    sent = len(sim.all_written())
    record(
        "source: uptivity",
        "connection reset (RST) mid-stream",
        injected=resets,
        sent=sent,
        delivered=len(set(got)),
        duplicated=len(got) - len(set(got)),
        lost=lost,
        unread=unread,
        observed=f"reconnected {reconnects}x; unread = written after the last event received on a "
        "connection that was then reset (simulator journal; the Event Proxy has no replay); "
        "device states recovered by reconciliation",
    )
    assert reconnects >= resets
    assert lost == 0 and got == sorted(set(got))
    assert len(set(got)) + unread == sent


async def test_dead_peer_is_detected_by_the_test_probe_and_other_sources_keep_flowing(
    tmp_path: Path, nursery
) -> None:
    """A stalled path (no FIN, no RST, the TCP peer still acknowledging: keepalive cannot
    see it) is found by the documented TEST echo, which goes unanswered on that path."""
    stalled_sim = UptivitySimulator(rate=100, numbered=True)
    healthy_sim = UptivitySimulator(rate=100, numbered=True)
    proxy = FaultProxy(await nursery.start(stalled_sim.serve))
    await nursery.start(proxy.serve)
    healthy_port = await nursery.start(healthy_sim.serve)
    sources = {"stalled": ("127.0.0.1", proxy.port), "healthy": ("127.0.0.1", healthy_port)}
    async with running_bridge(config(tmp_path, sources, probe_interval=0.3, timeout=0.5)) as bridge:
        await wait_for(lambda: len(delivered(tmp_path, "stalled")) >= 20)
        proxy.mode = "stall"  # bytes stop; no FIN, no RST: a half-open peer
        await wait_for(lambda: bridge.sources["stalled"].health.state == "disconnected", timeout=15)
        assert "presumed dead" in bridge.sources["stalled"].health.detail
        assert "TEST" in bridge.sources["stalled"].health.detail
        healthy_before = len(delivered(tmp_path, "healthy"))
        await wait_for(lambda: len(delivered(tmp_path, "healthy")) >= healthy_before + 30)  # not stalled
        proxy.mode = "pass"
        await wait_for(lambda: bridge.sources["stalled"].health.state == "connected", timeout=15)
        final = max(stalled_sim.written())
        await wait_for(lambda: len(stalled_sim.written()[final]) >= 10)
        await wait_for(
            lambda: set(stalled_sim.written()[final]) <= set(delivered(tmp_path, "stalled")), timeout=15
        )
        assert healthy_sim.connections == 1  # the healthy source was never rebuilt
    got = delivered(tmp_path, "stalled")
    lost, unread = account(stalled_sim, got)
    record(
        "source: uptivity",
        "silent peer (no FIN), TEST probe after 0.3 s quiet",
        injected=1,
        sent=len(stalled_sim.all_written()),
        delivered=len(set(got)),
        lost=lost,
        unread=unread,
        observed="health 'disconnected: peer presumed dead' after unanswered TESTs; other source kept "
        "flowing; reconnected; unread = written to the stalled connection after its last delivered event",
    )
    assert lost == 0


@pytest.mark.slow
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
        assert account(sim, delivered(tmp_path, "refused")) == (0, 0)
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
