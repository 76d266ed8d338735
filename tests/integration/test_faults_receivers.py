"""Webhook receiver faults on real loopback sockets: TLS, slow readers, endless bodies, and a
receiver that is down for an hour (of simulated wall-clock time).

The faults tests/integration/test_webhook.py already covers (500s, timeouts, redirects, Retry-After, a
5 MB error body, an endpoint down then back) record their rows there; this file adds the
rest. "lost" counts events committed to the outbox but never delivered (must be 0).
"""

from __future__ import annotations

import base64
import itertools
import random
import re
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from bridge.asgi import serve_asgi
from bridge.outbox import DEAD, Outbox, Row
from bridge.simulators.uptivity import UptivitySimulator
from bridge.sinks.webhook import DEFAULT_SCHEDULE
from tests.support.faults import FaultProxy
from tests.support.helpers import read_jsonl, running_bridge, wait_for, write_config
from tests.support.receivers import Receiver
from tests.support.reliability import record
from tests.support.tls import self_signed

SECRET = "whsec_" + base64.b64encode(b"fault-secret-0123456789abcdef").decode()
FAST = {
    "retry_schedule": "[0.05, 0.1, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2]",
    "breaker_cooldown": "0.1",
    "breaker_max_cooldown": "0.3",
    "timeout": "2.0",
}


def config(tmp_path: Path, sim_port: int, hooks: dict[str, tuple[str, dict[str, str]]]) -> Path:
    """An Uptivity source, a log sink and one webhook sink per ``name: (url, options)``."""
    sinks = ""
    for name, (url, options) in hooks.items():
        lines = "\n".join(f"{k} = {v}" for k, v in {**FAST, **options}.items() if v is not None)
        sinks += f"""
[[sinks.webhook]]
name = "{name}"
url = "{url}"
secrets = ["{SECRET}"]
{lines}
"""
    return write_config(
        tmp_path,
        f"""
[bridge]
state_dir = "{tmp_path / "state"}"

[[sources.uptivity]]
name = "up"
host = "127.0.0.1"
port = {sim_port}
reconnect_min = 0.02
reconnect_max = 0.2

[[sinks.log]]
name = "log"
path = "{tmp_path / "events.jsonl"}"
{sinks}
""",
    )


def logged_ids(tmp_path: Path) -> list[str]:
    return [e["id"] for e in read_jsonl(tmp_path / "events.jsonl")]


def open_outbox(tmp_path: Path) -> Outbox:
    box = Outbox(tmp_path / "state" / "outbox.sqlite3")
    box.open()
    return box


async def test_tls_self_signed_receiver_is_refused_by_default_and_trusted_with_ca_file(
    tmp_path: Path, nursery
) -> None:
    cert, key = self_signed(tmp_path / "tls")
    receiver = Receiver()
    port = await nursery.start(
        lambda task_status: serve_asgi(
            receiver.app, certfile=str(cert), keyfile=str(key), task_status=task_status
        )
    )
    sim = UptivitySimulator(rate=0, count=7, numbered=True)
    sim_port = await nursery.start(sim.serve)
    url = f"https://127.0.0.1:{port}/hook"
    hooks = {"strict": (url, {}), "trusting": (url, {"ca_file": f'"{cert}"'})}
    async with running_bridge(config(tmp_path, sim_port, hooks)) as bridge:
        strict, trusting = bridge.sinks["strict"], bridge.sinks["trusting"]
        await wait_for(lambda: trusting.health.delivered >= 7)
        await wait_for(lambda: strict.health.failed >= 3)
        assert "CERTIFICATE_VERIFY_FAILED" in strict.health.detail
        assert strict.health.delivered == 0 and strict.health.dead == 0  # retried, not dropped
    ids = logged_ids(tmp_path)
    produced = {e["n"] for e in sim.journal.of("emit")}
    got = {int(e["data"]["raw"]["EVENTXREF"]) for e in receiver.journal}
    box = open_outbox(tmp_path)
    pending = box.pending("strict", 100)
    box.close()
    record(
        "receiver: webhook",
        "TLS: self-signed certificate",
        injected=1,
        sent=len(produced),
        delivered=len(got),
        lost=len(produced - got),
        observed="refused by default (CERTIFICATE_VERIFY_FAILED in health, events kept pending and retried); "
        "accepted by the sink given the cert as ca_file",
    )
    assert got == produced  # the trusting sink delivered everything the simulator produced
    assert sorted(receiver.delivered_ids()) == sorted(ids)  # only the trusting sink got through
    assert [r.id for r in pending] == ids  # all still queued for the strict endpoint


async def test_slow_reading_receiver_times_out_is_retried_and_others_are_not_slowed(
    tmp_path: Path, nursery
) -> None:
    slow, fast = Receiver(), Receiver()
    slow_port = await nursery.start(serve_asgi, slow.app)
    fast_port = await nursery.start(serve_asgi, fast.app)
    proxy = FaultProxy(slow_port)
    proxy.mode = "drip"  # the request body trickles in a byte at a time: a receiver reading slowly
    proxy.drip_delay = 0.002
    await nursery.start(proxy.serve)
    sim = UptivitySimulator(rate=0, count=14, numbered=True, devices=2)
    sim_port = await nursery.start(sim.serve)
    hooks = {
        "slow": (f"http://127.0.0.1:{proxy.port}/hook", {"timeout": "0.3"}),
        "fast": (f"http://127.0.0.1:{fast_port}/hook", {}),
    }
    async with running_bridge(config(tmp_path, sim_port, hooks)) as bridge:
        sink = bridge.sinks["slow"]
        await wait_for(lambda: len(fast.delivered_ids()) >= 14)  # not held back by the slow one
        await wait_for(lambda: sink.health.retried >= 4)
        assert "no complete response" in sink.health.detail or "Timeout" in sink.health.detail
        stuck = len(set(slow.delivered_ids()))
        assert stuck < 14
        proxy.mode = "pass"
        await wait_for(lambda: len(set(slow.delivered_ids())) >= 14, timeout=15)
        retried = sink.health.retried
    ids = logged_ids(tmp_path)
    got = slow.delivered_ids()
    assert set(got) == set(ids) and sorted(fast.delivered_ids()) == sorted(ids)
    record(
        "receiver: webhook",
        "slow-reading receiver (request body drip-fed through a proxy), timeout 0.3 s",
        injected=1,
        sent=len(ids),
        delivered=len(set(got)),
        duplicated=len(got) - len(set(got)),
        lost=len(set(ids) - set(got)),
        observed=f"attempts timed out and were retried ({retried} retries); other endpoint got all "
        f"{len(ids)} meanwhile; all delivered once the receiver read at full speed",
    )


async def endless_error_then_accept(
    scope: dict[str, Any], receive: Any, send: Any, state: dict[str, int]
) -> None:
    """First request: 503 with a body that never ends. Later ones: 204."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    while (await receive()).get("more_body"):
        pass
    state["requests"] += 1
    if state["requests"] > 1:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        state["accepted"] += 1
        return
    await send({"type": "http.response.start", "status": 503, "headers": [(b"content-type", b"text/plain")]})
    gone = trio.Event()

    async def watch_disconnect() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        gone.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch_disconnect)
        while not gone.is_set():  # chunked, forever: only the reader can end it
            await send({"type": "http.response.body", "body": b"E" * 65536, "more_body": True})
            state["chunks"] += 1
            await trio.sleep(0)
        state["disconnected"] += 1


async def test_endless_response_body_is_cut_off_at_the_limit(tmp_path: Path, nursery) -> None:
    state = {"requests": 0, "accepted": 0, "chunks": 0, "disconnected": 0}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await endless_error_then_accept(scope, receive, send, state)

    port = await nursery.start(serve_asgi, app)
    sim = UptivitySimulator(rate=0, count=1, numbered=True)
    sim_port = await nursery.start(sim.serve)
    hooks = {"hook": (f"http://127.0.0.1:{port}/hook", {"max_response_bytes": "1000", "timeout": "10.0"})}
    async with running_bridge(config(tmp_path, sim_port, hooks)) as bridge:
        await wait_for(lambda: bridge.sinks["hook"].health.delivered >= 1)
    box = open_outbox(tmp_path)
    (row,) = box.deliveries(sink="hook")
    box.close()
    # Two attempts: the endless answer was read up to the limit and classified (503 ->
    # retry), well before the 10 s request timeout could have ended it.
    assert row["attempts"] == 2 and row["last_status"] == 503
    assert state["requests"] == 2 and state["accepted"] == 1
    await wait_for(lambda: state["disconnected"] == 1)  # the sink hung up on the endless body
    record(
        "receiver: webhook",
        "endless response body (chunked, never ends)",
        injected=1,
        sent=1,
        delivered=1,
        observed="body read up to max_response_bytes, then the connection dropped; 503 retried; delivered",
    )


# -- an hour down, in simulated time ---------------------------------------------------------


@dataclass
class Attempt:
    at: float  # fake wall-clock seconds
    id: str
    status: int
    retry_after: int | None
    concurrent: int
    breaker_open: bool


def heads(rows: list[Row]) -> list[Row]:
    """The first pending row of each subject: only these can be attempted (per-subject order)."""
    seen: set[str] = set()
    out = []
    for row in rows:
        key = row.subject or row.id
        if key not in seen:
            seen.add(key)
            out.append(row)
    return out


async def test_receiver_down_for_an_hour_follows_the_schedule_and_recovers(tmp_path: Path, nursery) -> None:
    """The failing sink's wall clock is a fake one the test advances (``sink.clock``).

    Real time only carries the requests; between them the test jumps the fake clock
    straight to the next moment something is due (a retry's persisted ``next_at`` or the
    breaker's ``open_until``) and pokes the sink's wake-up event, so an hour of 503s with
    the default retry schedule passes in a few real seconds. The clock only moves while
    nothing is in flight, so every attempt's fake time is exact. trio's MockClock is not
    used: hypercorn, httpx and the source all time out on the trio clock and would jump too.
    """
    offset = {"now": 0.0}
    base = time.time()

    def clock() -> float:
        return base + offset["now"]

    attempts: list[Attempt] = []
    receiver_up = {"value": False}
    sink_ref: dict[str, Any] = {}

    async def down_for_an_hour(receiver: Receiver, headers: dict, body: bytes):
        breaker_open = sink_ref["sink"].breaker.is_open
        if receiver_up["value"]:
            attempts.append(
                Attempt(clock(), headers["webhook-id"], 204, None, receiver.concurrent, breaker_open)
            )
            return 204
        retry_after = 600 if len(attempts) % 3 == 2 else None  # every third answer says "come back in 10 min"
        attempts.append(
            Attempt(clock(), headers["webhook-id"], 503, retry_after, receiver.concurrent, breaker_open)
        )
        return (503, {"retry-after": str(retry_after)} if retry_after else {}, b"maintenance")

    failing, healthy = Receiver(down_for_an_hour), Receiver()
    failing_port = await nursery.start(serve_asgi, failing.app)
    healthy_port = await nursery.start(serve_asgi, healthy.app)
    sim = UptivitySimulator(rate=0, count=30, numbered=True, devices=3)
    proxy = FaultProxy(await nursery.start(sim.serve))
    proxy.mode = "refuse"  # no events until the fake clock is in place
    await nursery.start(proxy.serve)
    defaults = {k: None for k in FAST}  # the production schedule and breaker timings
    hooks = {
        "failing": (f"http://127.0.0.1:{failing_port}/hook", {**defaults, "timeout": "5.0"}),
        "healthy": (f"http://127.0.0.1:{healthy_port}/hook", {}),
    }
    async with running_bridge(config(tmp_path, proxy.port, hooks)) as bridge:
        sink = bridge.sinks["failing"]
        sink_ref["sink"] = sink
        assert sink.schedule == list(DEFAULT_SCHEDULE)
        sink.clock = clock
        sink.rng = random.Random(8)
        proxy.mode = "pass"
        await wait_for(lambda: len(healthy.delivered_ids()) >= 30)  # the healthy endpoint: at once
        assert failing.delivered_ids() == []
        box = open_outbox(tmp_path)
        scheduled: dict[tuple[str, int], float] = {}  # (id, attempts so far) -> next_at
        max_inflight = 0

        def idle() -> bool:
            if sink.inflight:
                return False
            due = [r for r in heads(box.pending("failing", 1000)) if r.next_at <= clock()]
            return not due or (sink.breaker.is_open and clock() < sink.breaker.open_until)

        async def settle() -> list[Row]:
            nonlocal max_inflight

            def quiet() -> bool:
                nonlocal max_inflight
                max_inflight = max(max_inflight, len(sink.inflight))
                sink.wake()  # no need to wait for its 1 s (real time) nap
                return idle()

            await wait_for(quiet, timeout=10)
            rows = box.pending("failing", 1000)
            for row in rows:
                if row.attempts:
                    scheduled.setdefault((row.id, row.attempts), row.next_at)
            return rows

        hour_end = base + 3600
        delivered_all = False
        for _ in range(400):
            rows = await settle()
            if not rows:
                delivered_all = True
                break
            moment = min(r.next_at for r in heads(rows))
            if sink.breaker.is_open:
                moment = max(moment, sink.breaker.open_until)
            if not receiver_up["value"] and moment >= hour_end:
                assert len(rows) == 30 and box.deliveries(sink="failing", state=DEAD) == []
                receiver_up["value"] = True  # back after an hour; the next due attempt succeeds
            offset["now"] = max(offset["now"], moment - base + 0.001)
        box.close()
        assert delivered_all, "everything arrived after the receiver came back"
        assert bridge.sinks["failing"].health.state == "ok"

    ids = [e["id"] for e in read_jsonl(tmp_path / "events.jsonl")]
    got = failing.delivered_ids()
    assert Counter(got) == Counter(ids)  # each event exactly once, none lost
    assert sorted(healthy.delivered_ids()) == sorted(ids)
    failures = [a for a in attempts if a.status == 503]
    assert failures and all(a.at < hour_end for a in failures)
    assert attempts[-1].at >= hour_end
    # Retries follow the schedule: each retry waited no less than it was told to (and no
    # less than Retry-After), and the delay drawn was within its cap (full jitter) or
    # exactly Retry-After when that was larger.
    per_id: dict[str, list[Attempt]] = {}
    for a in attempts:
        per_id.setdefault(a.id, []).append(a)
    checked = 0
    for event_id, tries in per_id.items():
        for n, (a, nxt) in enumerate(itertools.pairwise(tries), start=1):
            next_at = scheduled[(event_id, n)]
            delay = next_at - a.at
            cap = DEFAULT_SCHEDULE[n - 1]
            assert nxt.at >= next_at - 1e-6, "never retried early"
            if a.retry_after is not None:
                assert delay >= a.retry_after - 1e-6
                assert delay <= max(cap, a.retry_after) + 1e-6
            else:
                assert 0 <= delay <= cap + 1e-6
            checked += 1
    assert checked >= 6
    # The breaker: once open, probes went one at a time; memory held at most
    # max_concurrency requests while 30 events waited on disk.
    probes = [a for a in attempts if a.breaker_open]
    assert len(probes) >= 3 and all(a.concurrent == 1 for a in probes)
    assert max_inflight <= sink.max_concurrency and failing.max_concurrent <= sink.max_concurrency
    record(
        "receiver: webhook",
        "receiver down for an hour (503, some Retry-After: 600), simulated wall clock",
        injected=1,
        sent=len(ids),
        delivered=len(set(got)),
        duplicated=len(got) - len(set(got)),
        lost=len(set(ids) - set(got)),
        observed=f"{len(failures)} failed attempts in the hour, each delay within its schedule cap or "
        f"Retry-After; breaker probed one at a time ({len(probes)} probes); other endpoint got all "
        f"{len(ids)} at once; backlog on disk, at most {failing.max_concurrent} request(s) in flight; "
        "all delivered after recovery",
    )


# -- a receiver process killed with SIGKILL -------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_receiver_process(port: int, out: Path) -> subprocess.Popen[bytes]:
    """``event-bridge receive``: the verifying receiver the README offers, in its own process."""
    with out.open("ab") as fh:
        return subprocess.Popen(
            [sys.executable, "-m", "bridge", "receive", "--port", str(port), "--secret", SECRET],
            stdout=fh,
            stderr=subprocess.DEVNULL,
        )


def printed_ids(out: Path) -> list[str]:
    return re.findall(r"  id=(\S+)  webhook-id=", out.read_text()) if out.exists() else []


async def test_receiver_process_killed_with_sigkill_and_restarted(tmp_path: Path, nursery) -> None:
    port = free_port()
    out = tmp_path / "receiver.out"
    processes = [start_receiver_process(port, out)]
    try:
        sim = UptivitySimulator(rate=150, count=300, numbered=True, devices=4)
        sim_port = await nursery.start(sim.serve)
        hooks = {"hook": (f"http://127.0.0.1:{port}/hook", {})}
        async with running_bridge(config(tmp_path, sim_port, hooks)) as bridge:
            sink = bridge.sinks["hook"]
            await wait_for(lambda: len(printed_ids(out)) >= 50, timeout=15)
            processes[0].kill()  # SIGKILL mid-stream: requests in flight die with it
            processes[0].wait()
            await wait_for(lambda: sink.health.failed >= 3 and sink.health.state in ("retrying", "open"))
            assert "ConnectError" in sink.health.detail or "Error" in sink.health.detail
            processes.append(start_receiver_process(port, out))
            await wait_for(lambda: len(set(printed_ids(out))) >= 300, timeout=20)
            await wait_for(lambda: sink.health.state == "ok")
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    ids = logged_ids(tmp_path)
    got = printed_ids(out)
    assert len(ids) == 300 and set(got) == set(ids)
    record(
        "receiver: webhook",
        "receiver process killed (SIGKILL) mid-stream, restarted",
        injected=1,
        sent=len(ids),
        delivered=len(set(got)),
        duplicated=len(got) - len(set(got)),
        lost=len(set(ids) - set(got)),
        observed="connection errors retried (health said why); everything arrived once the new process "
        "listened; duplicates only for requests the old process handled but never answered",
    )
