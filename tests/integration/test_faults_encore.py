"""Encore source faults on real loopback sockets: the real bridge (outbox, log sink) polling
the Encore simulator's SOAP service through a fault-injecting proxy.

Encore has no push channel, so nothing is in transit to lose: the recorder keeps each
port's state and the bridge re-polls after every fault. Each test changes port states
*during* the fault and expects them to arrive afterwards (a pause and resume that both
happened unseen arrive as one inferred ``recording.interrupted``: pause or hold cannot be
told apart, GetURL says it is the same recording); "lost" counts
changes that never arrived (must be 0). An Uptivity source runs beside it to show that
one source's trouble stalls nothing else.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from bridge.asgi import serve_asgi
from bridge.service import Bridge
from bridge.simulators.encore import EncoreSimulator
from bridge.simulators.uptivity import UptivitySimulator
from tests.integration.test_faults_anywherenow import Gate, HealthLog, Restartable
from tests.support.faults import FaultProxy
from tests.support.helpers import read_jsonl, running_bridge, wait_for, write_config
from tests.support.reliability import record
from tests.support.tls import self_signed

AREA = "source: encore"
PORTS = (7, 8, 9)


def source_block(name: str, url: str, ports: tuple[int, ...] = PORTS, **extra: Any) -> str:
    options = {"interval": 0.05, "timeout": 0.5, "duration_tolerance": 1.0, **extra}
    lines = "\n".join(f'{k} = "{v}"' if isinstance(v, str) else f"{k} = {v}" for k, v in options.items())
    block = f"""
[[sources.encore]]
name = "{name}"
url = "{url}"
{lines}
"""
    for port in ports:
        block += f"""
[[sources.encore.ports]]
unit = 1
port = {port}
"""
    return block


def config(tmp_path: Path, *blocks: str, other_port: int) -> Path:
    body = f"""
[bridge]
state_dir = "{tmp_path / "state"}"

[[sources.uptivity]]
name = "other"
host = "127.0.0.1"
port = {other_port}
reconnect_min = 0.02
reconnect_max = 0.2

[[sinks.log]]
name = "log"
path = "{tmp_path / "events.jsonl"}"
"""
    return write_config(tmp_path, body + "".join(blocks))


def url(port: int, scheme: str = "http") -> str:
    return f"{scheme}://127.0.0.1:{port}/WebAPI/ECAPI.svc"


def events(tmp_path: Path, source: str = "enc") -> list[dict[str, Any]]:
    return [e for e in read_jsonl(tmp_path / "events.jsonl") if e["source"].endswith("/" + source)]


async def start_other(nursery: trio.Nursery) -> int:
    return await nursery.start(UptivitySimulator(rate=100, numbered=True).serve)


EXPECTED = [
    ("1/7", "recording.started", False),
    ("1/8", "recording.started", False),
    ("1/9", "recording.started", False),
    ("1/7", "recording.stopped", False),
    ("1/8", "recording.paused", False),
    ("1/9", "recording.interrupted", True),
    ("1/7", "recording.started", False),
]


async def fault_cycle(
    tmp_path: Path,
    bridge: Bridge,
    sim: EncoreSimulator,
    inject: Callable[[], Awaitable[None]],
    heal: Callable[[], Awaitable[None]],
) -> None:
    """Three recordings seen; fault; changes while faulted (the other source must keep
    flowing); heal; the changes arrive from the next polls; a live change after."""
    source = bridge.sources["enc"]
    await wait_for(lambda: source.health.ready)
    sim.start(1, 7)
    sim.start(1, 8)
    sim.start(1, 9)
    await wait_for(lambda: len(events(tmp_path)) >= 3)
    # Recording for longer than duration_tolerance, so a pause+resume later is visibly newer.
    await trio.sleep(1.5)
    await inject()
    await wait_for(lambda: not source.health.ready, timeout=10)
    other_before = len(events(tmp_path, "other"))
    assert sim.stop(1, 7) == 100
    assert sim.pause(1, 8) == 100
    assert sim.pause(1, 9) == sim.resume(1, 9) == 100  # both unseen: only stateDuration tells
    await wait_for(lambda: len(events(tmp_path, "other")) >= other_before + 20)  # not stalled
    assert not source.health.ready and len(events(tmp_path)) == 3
    await heal()
    await wait_for(lambda: len(events(tmp_path)) >= 6, timeout=15)
    assert source.health.ready
    sim.start(1, 7)
    await wait_for(lambda: len(events(tmp_path)) >= 7)


def check_and_record(tmp_path: Path, fault: str, observed: str, injected: int = 1) -> None:
    got = events(tmp_path)
    seen = [(e["subject"], e["type"], e["data"]["inferred"]) for e in got]
    assert Counter(seen) == Counter(EXPECTED), seen
    for subject in {s for s, _, _ in EXPECTED}:  # per-port order
        assert [x for x in seen if x[0] == subject] == [x for x in EXPECTED if x[0] == subject]
    assert len({e["id"] for e in got}) == len(got)
    # Port 7 recorded twice: two recordings, two GetURL links (a CRM stores each).
    urls = [
        e["data"]["recording_url"] for e in got if e["subject"] == "1/7" and e["type"] == "recording.started"
    ]
    assert len(urls) == 2 and all(urls) and urls[0] != urls[1], urls
    record(
        AREA,
        fault,
        injected=injected,
        sent=len(EXPECTED),
        delivered=sum((Counter(seen) & Counter(EXPECTED)).values()),
        duplicated=len(got) - len({e["id"] for e in got}),
        lost=sum((Counter(EXPECTED) - Counter(seen)).values()),
        observed=observed,
    )


async def test_connection_reset_then_refused_is_re_polled(tmp_path: Path, nursery) -> None:
    sim = EncoreSimulator()
    proxy = FaultProxy(await nursery.start(sim.serve))
    await nursery.start(proxy.serve)
    health = HealthLog()

    async def inject() -> None:
        proxy.mode = "refuse"
        await proxy.reset_all()  # RST on the keep-alive connection

    async def heal() -> None:
        proxy.mode = "pass"

    cfg = config(tmp_path, source_block("enc", url(proxy.port)), other_port=await start_other(nursery))
    async with running_bridge(cfg) as bridge:
        nursery.start_soon(health.watch, bridge, "enc")
        await fault_cycle(tmp_path, bridge, sim, inject, heal)
    errors = health.details("error")
    assert errors and all("PortStatusEX" in d for d in errors), errors
    check_and_record(
        tmp_path,
        "connection reset (RST), then refused for a while",
        f"health 'error: {errors[0][:70]}…' while refused; backed off, re-polled; the 4 changes made "
        "meanwhile arrived (a pause+resume as 1 inferred recording.interrupted); other source kept flowing",
    )


async def test_silent_server_times_out_and_is_re_polled(tmp_path: Path, nursery) -> None:
    sim = EncoreSimulator()
    proxy = FaultProxy(await nursery.start(sim.serve))
    await nursery.start(proxy.serve)
    health = HealthLog()

    async def inject() -> None:
        proxy.mode = "stall"  # the request goes in, no answer comes back, no FIN

    async def heal() -> None:
        proxy.mode = "pass"

    cfg = config(tmp_path, source_block("enc", url(proxy.port)), other_port=await start_other(nursery))
    async with running_bridge(cfg) as bridge:
        nursery.start_soon(health.watch, bridge, "enc")
        await fault_cycle(tmp_path, bridge, sim, inject, heal)
    errors = health.details("error")
    assert any("Timeout" in d for d in errors), errors
    check_and_record(
        tmp_path,
        "silent server (no answer, no FIN), timeout 0.5 s",
        f"health 'error: {next(d for d in errors if 'Timeout' in d)[:60]}…'; re-polled after backoff; "
        "changes made meanwhile arrived; other source kept flowing",
    )


@pytest.mark.slow
async def test_drip_fed_answers_are_parsed(tmp_path: Path, nursery) -> None:
    sim = EncoreSimulator()
    proxy = FaultProxy(await nursery.start(sim.serve))
    proxy.mode = "drip"  # about 1 KB/s each way: a SOAP exchange takes about a second
    proxy.drip_delay = 0.0001
    await nursery.start(proxy.serve)
    block = source_block("enc", url(proxy.port), ports=(7,), timeout=10.0)
    async with running_bridge(config(tmp_path, block, other_port=await start_other(nursery))) as bridge:
        source = bridge.sources["enc"]
        await wait_for(lambda: source.health.ready, timeout=15)
        sim.start(1, 7)
        await wait_for(lambda: len(events(tmp_path)) >= 1, timeout=15)
        sim.stop(1, 7)
        await wait_for(lambda: len(events(tmp_path)) >= 2, timeout=15)
        assert source.health.state == "polling", source.health.detail
    got = [(e["subject"], e["type"]) for e in events(tmp_path)]
    assert got == [("1/7", "recording.started"), ("1/7", "recording.stopped")]
    record(
        AREA,
        "bytes drip-fed one at a time",
        injected=1,
        sent=2,
        delivered=len(got),
        observed="every SOAP answer reassembled and parsed; no error",
    )


async def test_server_restart_is_re_polled(tmp_path: Path, nursery) -> None:
    sim = EncoreSimulator()
    server = Restartable(sim.app)
    port = await server.start(nursery)
    health = HealthLog()

    async def inject() -> None:
        await server.stop()

    async def heal() -> None:
        for _ in range(50):
            try:
                await server.start(nursery)
                return
            except OSError:
                await trio.sleep(0.05)
        raise AssertionError("could not restart the Encore service on its port")

    cfg = config(tmp_path, source_block("enc", url(port)), other_port=await start_other(nursery))
    async with running_bridge(cfg) as bridge:
        nursery.start_soon(health.watch, bridge, "enc")
        await fault_cycle(tmp_path, bridge, sim, inject, heal)
    errors = health.details("error")  # the dropped keep-alive, then refused connections
    assert errors and all("PortStatusEX" in d for d in errors), errors
    check_and_record(
        tmp_path,
        "server restart (service down, then up on the same port)",
        f"health 'error: {errors[-1][:60]}…' while down; re-polled after "
        "the restart; changes made meanwhile arrived; other source kept flowing",
    )


async def test_refused_auth_401_then_403_is_reported_and_retried(tmp_path: Path, nursery) -> None:
    sim = EncoreSimulator()
    gate = Gate(sim.app)
    port = await nursery.start(serve_asgi, gate)
    health = HealthLog()

    async def inject() -> None:
        gate.status = 401  # the password was changed at the gateway

    async def heal() -> None:
        await wait_for(lambda: any("HTTP 401" in d for d in health.details("error")))
        gate.status = 403
        await wait_for(lambda: any("HTTP 403" in d for d in health.details("error")), timeout=15)
        gate.status = None

    block = source_block("enc", url(port), username="bridge", password="pw-1")
    async with running_bridge(config(tmp_path, block, other_port=await start_other(nursery))) as bridge:
        nursery.start_soon(health.watch, bridge, "enc")
        await fault_cycle(tmp_path, bridge, sim, inject, heal)
    check_and_record(
        tmp_path,
        "refused auth (401, then 403)",
        "health 'error: PortStatusEX: HTTP error (HTTP 401); response starts: 'Unauthorized'', then 403; "
        "retried with backoff; once accepted, changes made meanwhile arrived; other source kept flowing",
        injected=2,
    )


async def test_dns_failure_and_tls_failure_are_reported_while_others_flow(tmp_path: Path, nursery) -> None:
    cert, key = self_signed(tmp_path / "tls")
    sim = EncoreSimulator()
    port = await nursery.start(
        lambda task_status: sim.serve(certfile=str(cert), keyfile=str(key), task_status=task_status)
    )
    blocks = [
        source_block("nodns", "http://encore-fault-test.invalid/WebAPI/ECAPI.svc", timeout=2.0),
        source_block("badtls", url(port, "https")),
        source_block("trusted", url(port, "https"), ca_file=str(cert)),
    ]
    async with running_bridge(config(tmp_path, *blocks, other_port=await start_other(nursery))) as bridge:
        nodns, badtls, trusted = (bridge.sources[n] for n in ("nodns", "badtls", "trusted"))
        await wait_for(
            lambda: nodns.health.state == "error" and "ConnectError" in nodns.health.detail, timeout=15
        )
        await wait_for(
            lambda: badtls.health.state == "error" and "CERTIFICATE_VERIFY_FAILED" in badtls.health.detail
        )
        await wait_for(lambda: trusted.health.ready)
        sim.start(1, 7)
        await wait_for(lambda: events(tmp_path, "trusted"))
        before = len(events(tmp_path, "other"))
        await wait_for(lambda: len(events(tmp_path, "other")) >= before + 20)
        dns_detail, tls_detail = nodns.health.detail, badtls.health.detail
        assert nodns.health.state == badtls.health.state == "error"  # still failing, still retrying
    assert events(tmp_path, "nodns") == [] and events(tmp_path, "badtls") == []
    assert [e["type"] for e in events(tmp_path, "trusted")] == ["recording.started"]
    record(
        AREA,
        "DNS failure (host does not resolve)",
        injected=1,
        sent=0,
        delivered=0,
        observed=f"health 'error: {dns_detail[:80]}…'; retried with backoff; other sources kept flowing",
    )
    record(
        AREA,
        "TLS handshake failure (self-signed certificate)",
        injected=1,
        sent=1,
        delivered=len(events(tmp_path, "trusted")),
        observed=f"health 'error: …CERTIFICATE_VERIFY_FAILED…' ({tls_detail[:50]}…); retried; the same "
        "service trusted via ca_file delivered",
    )


async def test_a_recording_that_starts_and_stops_within_an_outage_is_not_seen(
    tmp_path: Path, nursery
) -> None:
    """The limit of polling, measured: a port that goes RECORD and back to NOT RECORDING
    while the service cannot be asked looks unchanged afterwards (stateDuration of an idle
    port says nothing). Changes that leave a trace are recovered (see the tests above)."""
    sim = EncoreSimulator()
    proxy = FaultProxy(await nursery.start(sim.serve))
    await nursery.start(proxy.serve)
    cfg = config(tmp_path, source_block("enc", url(proxy.port)), other_port=await start_other(nursery))
    async with running_bridge(cfg) as bridge:
        source = bridge.sources["enc"]
        await wait_for(lambda: source.health.ready)
        proxy.mode = "refuse"
        await proxy.reset_all()
        await wait_for(lambda: not source.health.ready)
        assert sim.start(1, 7) == sim.stop(1, 7) == 100  # a whole short recording, unseen
        assert sim.start(1, 8) == 100  # this one is still recording when the bridge looks again
        proxy.mode = "pass"
        await wait_for(lambda: len(events(tmp_path)) >= 1)
        calls = sim.calls["PortStatusEX"]
        await wait_for(lambda: sim.calls["PortStatusEX"] >= calls + 10)  # several sweeps later
    got = [(e["subject"], e["type"]) for e in events(tmp_path)]
    assert got == [("1/8", "recording.started")]
    record(
        AREA,
        "recording started and stopped entirely within an outage",
        injected=1,
        sent=3,
        delivered=len(got),
        unread=3 - len(got),
        observed="unread: a port back in NOT RECORDING looks unchanged to a poller; the recording "
        "still going when polling resumed was announced",
    )
