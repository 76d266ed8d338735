"""Issue 15 for AnywhereNow, each over real loopback sockets against hostile peers.

1. a negotiate redirect gets only the token it hands out, never the configured
   credentials on another origin; no https -> http downgrade; hops capped; token secret;
2. negotiate and REST bodies are capped, compressed and decoded (a gzip bomb);
3. SignalR frames and messages are capped; a malformed message is logged as a short,
   masked excerpt;
6. a hub URL with user:password or ?access_token= never appears raw in health or logs;
8. every REST/negotiate request has a total deadline (a dripping peer cannot hold it).

Each of these failed on the code before the fix (the old source sent the configured
headers to any redirect target, read bodies whole, had signalrcore read any frame,
logged hub URLs and raw messages, and used httpx's per-read timeouts).
"""

from __future__ import annotations

import gzip
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import trio

from bridge.asgi import serve_asgi
from bridge.simulators.anywherenow import AnywhereNowSimulator
from tests.integration.test_anywherenow_source import UCC, connected, running_source
from tests.support.helpers import LogCapture, wait_for
from tests.support.tls import self_signed

MIB = 1024 * 1024


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@contextmanager
def peak_rss() -> Iterator[dict[str, int]]:
    """Samples RSS from a thread (it runs even while the trio thread is busy decoding)."""
    result = {"base": rss_bytes(), "peak": 0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            result["peak"] = max(result["peak"], rss_bytes())
            stop.wait(0.002)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield result
    finally:
        stop.set()
        thread.join()
        result["growth"] = result["peak"] - result["base"]


class Hostile:
    """ASGI middleware in front of a simulator: answers chosen paths itself."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.rules: list[tuple[str, Any]] = []  # (path substring, async handler(send))
        self.hits: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            for needle, handler in self.rules:
                if needle in scope["path"]:
                    self.hits.append(scope["path"])
                    await handler(send)
                    return
        await self.app(scope, receive, send)


def bomb(decoded: int) -> bytes:
    return gzip.compress(b" " * decoded, compresslevel=9)


async def send_gzip(body: bytes, send: Any) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-encoding", b"gzip")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def drip(body: bytes, every: float, send: Any) -> None:
    """A valid answer, one byte at a time: each read is quick, the whole is slow."""
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
    )
    for i in range(len(body)):
        await send({"type": "http.response.body", "body": body[i : i + 1], "more_body": True})
        await trio.sleep(every)
    await send({"type": "http.response.body", "body": b""})


def all_log_text(log: LogCapture) -> str:
    return log.getvalue()


# ---- 1. negotiate redirects ------------------------------------------------------------


async def test_a_redirect_to_another_origin_gets_only_its_own_token(
    tmp_path: Path, nursery: trio.Nursery, log_capture: LogCapture
) -> None:
    azure_token = "azure-issued-token-7f3a9c"
    target = AnywhereNowSimulator(require_token=azure_token)
    await nursery.start(target.serve)
    front = AnywhereNowSimulator(require_token="configured-token-123")
    await nursery.start(front.serve)
    front.redirect = (target.hub_url(), azure_token)
    overrides = {
        "hub_url": front.hub_url(),
        "rest_url": target.rest_url(),
        "access_token": "configured-token-123",
        "headers": {"X-Api-Key": "configured-api-key"},
    }
    async with running_source(front, tmp_path, **overrides) as (source, emitter):
        await wait_for(lambda: target.connected_clients >= 1 and source.health.ready)
        await target.send_state(UCC, "redirected-call", 1)
        await wait_for(lambda: len(emitter.events) == 1)
    # The front (configured origin) got the configured credentials ...
    (negotiate_front,) = {json.dumps(h, sort_keys=True) for h in front.headers_seen("http")}
    assert '"authorization": "Bearer configured-token-123"' in negotiate_front
    # ... the redirect target only the token it issued, on negotiate and on the WebSocket.
    hub_requests = [r for r in target.requests if "/api/" not in r.path]
    assert hub_requests and {r.kind for r in hub_requests} == {"http", "websocket"}
    for request in hub_requests:
        assert request.headers.get("authorization") == f"Bearer {azure_token}"
        assert "x-api-key" not in request.headers
        assert "configured-token-123" not in json.dumps(request.headers)
    # The issued token is a secret: in no log line.
    assert azure_token not in all_log_text(log_capture)
    assert log_capture.events("anywherenow_negotiate_redirected")


async def test_a_redirect_from_https_to_http_is_refused(
    tmp_path: Path, nursery: trio.Nursery, log_capture: LogCapture
) -> None:
    cert, key = self_signed(tmp_path / "tls")
    plain = AnywhereNowSimulator()
    await nursery.start(plain.serve)
    front = AnywhereNowSimulator()
    await nursery.start(partial(front.serve, certfile=str(cert), keyfile=str(key)))
    front.redirect = (plain.hub_url("http"), "downgrade-token-abc")
    overrides = {"hub_url": front.hub_url("https"), "ca_file": str(cert), "access_token": "secret-xyz-123"}
    async with running_source(front, tmp_path, **overrides) as (source, _):
        await wait_for(lambda: "downgrade" in source.health.detail)
        assert source.connections == 0
    assert plain.requests == []  # nothing, not even the redirect's token, went over plain http
    assert "downgrade-token-abc" not in all_log_text(log_capture)


async def test_redirect_hops_are_capped(tmp_path: Path, nursery: trio.Nursery) -> None:
    loop = AnywhereNowSimulator()
    await nursery.start(loop.serve)
    loop.redirect = (loop.hub_url(), None)
    async with running_source(loop, tmp_path, reconnect_min=5.0, reconnect_max=10.0) as (source, _):
        await wait_for(lambda: "redirected more than 5 times" in source.health.detail)
    negotiations = [r for r in loop.requests if r.path.endswith("/negotiate")]
    assert len(negotiations) == 6  # the first ask and five hops, then it gave up


# ---- 2. capped bodies ------------------------------------------------------------------


async def test_a_gzip_bomb_negotiate_answer_is_refused_without_growing_memory(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    sim = AnywhereNowSimulator()
    hostile = Hostile(sim.app)
    payload = bomb(300 * MIB)  # about 300 KB on the wire
    hostile.rules.append(("/negotiate", partial(send_gzip, payload)))
    port = await nursery.start(serve_asgi, hostile)
    hub = f"http://127.0.0.1:{port}{sim.hub_path}"
    with peak_rss() as rss:
        async with running_source(sim, tmp_path, hub_url=hub, reconnect_min=5.0, reconnect_max=10.0) as (
            source,
            _,
        ):
            await wait_for(lambda: "max_body_bytes" in source.health.detail, timeout=30)
    assert rss["growth"] < 64 * MIB, rss
    assert "larger than 1048576 bytes" in source.health.detail


async def test_a_gzip_bomb_rest_answer_is_refused_and_live_events_flow(
    tmp_path: Path, nursery: trio.Nursery, log_capture: LogCapture
) -> None:
    sim = AnywhereNowSimulator()
    await nursery.start(sim.serve)
    hostile = Hostile(sim.app)
    payload = bomb(300 * MIB)
    hostile.rules.append((f"/recording/{UCC}/bombed", partial(send_gzip, payload)))
    port = await nursery.start(serve_asgi, hostile)
    rest = f"http://127.0.0.1:{port}{sim.rest_prefix}"
    state = {f'call:["{UCC}","bombed"]': json.dumps({"r": 1, "m": 0, "s": 0, "since": 4e9})}
    with peak_rss() as rss:
        async with running_source(sim, tmp_path, rest_url=rest, state=state) as (source, emitter):
            await connected(source, sim)
            await wait_for(lambda: log_capture.events("anywherenow_reconcile_failed"), timeout=30)
            await sim.send_state(UCC, "live", 1)
            await wait_for(lambda: len(emitter.events) == 1)
    assert rss["growth"] < 64 * MIB, rss
    (failed, *_) = log_capture.events("anywherenow_reconcile_failed")
    assert "larger than 1048576 bytes" in failed["error"]
    assert ("", "bombed") not in source.calls and (UCC, "bombed") in source.calls  # asked again later


# ---- 3. SignalR frames and messages ----------------------------------------------------


async def test_a_huge_hub_frame_is_refused_before_it_is_read(
    tmp_path: Path, nursery: trio.Nursery, log_capture: LogCapture
) -> None:
    sim = AnywhereNowSimulator()
    await nursery.start(sim.serve)
    huge = json.dumps({"type": 1, "target": "RecordingStateChangedEvent", "arguments": ["x" * (20 * MIB)]})
    with peak_rss() as rss:
        async with running_source(sim, tmp_path) as (source, emitter):
            await connected(source, sim)
            base = rss_bytes()
            await sim.send_raw(huge + "\x1e")
            await wait_for(lambda: source.connections >= 2 and source.health.ready, timeout=30)
            rss["after_frame"] = rss_bytes() - base
            await sim.send_state(UCC, "after-huge-frame", 1)
            await wait_for(lambda: len(emitter.events) == 1)
    # The simulator itself holds the 20 MiB text (and hypercorn a frame of it); the
    # bridge never read it: nowhere near two more copies.
    assert rss["growth"] < 100 * MIB, rss
    (dropped, *_) = log_capture.events("anywherenow_disconnected")
    assert "over max_message_bytes" in dropped["reason"]
    longest = max(len(line) for line in log_capture.getvalue().splitlines())
    assert longest < 4096


async def test_a_malformed_hub_message_is_logged_as_a_short_masked_excerpt(
    tmp_path: Path, nursery: trio.Nursery, log_capture: LogCapture
) -> None:
    sim = AnywhereNowSimulator()
    await nursery.start(sim.serve)
    caller = "+15551234567"
    bad = '{"type":1,"target":"RecordingStateChangedEvent","arguments":[{"caller":"' + caller + '","pad":"'
    bad += "y" * 500_000 + '"'  # unterminated: not JSON, under max_message_bytes
    async with running_source(sim, tmp_path) as (source, emitter):
        await connected(source, sim)
        await sim.send_raw(bad + "\x1e")
        await sim.send_state(UCC, "after", 1)
        await wait_for(lambda: len(emitter.events) == 1)
        assert source.connections == 1
    (line,) = log_capture.events("anywherenow_malformed_message")
    assert len(line["excerpt"]) <= 130
    text = log_capture.getvalue()
    assert caller not in text and "5551234567" not in text
    assert max(len(x) for x in text.splitlines()) < 4096
    kept = Path(line["quarantined"]).read_bytes()
    assert kept.startswith(b'{"type":1') and caller.encode() in kept  # the operator has the bytes


# ---- 6. secrets in configured URLs -----------------------------------------------------


async def test_hub_url_credentials_never_appear_in_health_or_logs(
    tmp_path: Path, nursery: trio.Nursery, log_capture: LogCapture
) -> None:
    token = "query-token-5c9e1d"
    sim = AnywhereNowSimulator(require_token=token)
    await nursery.start(sim.serve)
    hub = f"http://operator:hunter2-pass@127.0.0.1:{sim.port}{sim.hub_path}?access_token={token}"
    seen: set[str] = set()
    async with running_source(sim, tmp_path, hub_url=hub) as (source, emitter):
        seen.add(source.health.detail)
        await connected(source, sim)
        seen.add(source.health.detail)
        await sim.send_state(UCC, "c", 1)
        await wait_for(lambda: len(emitter.events) == 1)
        await sim.drop_connections("abort")
        await wait_for(lambda: not source.health.ready)
        seen.add(source.health.detail)
        await connected(source, sim, 2)
        seen.add(source.describe())
    text = all_log_text(log_capture) + "\n".join(seen)
    assert "hunter2-pass" not in text and token not in text
    assert "operator:***@127.0.0.1" in source.describe() and "access_token=***" in source.describe()
    assert log_capture.events("anywherenow_connecting")[0]["hub_url"] == source.describe()


# ---- 8. total deadlines ----------------------------------------------------------------


async def test_a_dripping_rest_answer_is_cut_at_the_total_deadline(
    tmp_path: Path, nursery: trio.Nursery, log_capture: LogCapture
) -> None:
    sim = AnywhereNowSimulator()
    await nursery.start(sim.serve)
    sim.set_state(UCC, "slow", 1)
    sim.set_state(UCC, "slow", 2)
    answer = json.dumps(sim.calls[(UCC, "slow")].as_json()).encode()
    hostile = Hostile(sim.app)
    hostile.rules.append((f"/recording/{UCC}/slow", partial(drip, answer, 0.05)))  # ~6 s in all
    port = await nursery.start(serve_asgi, hostile)
    state = {f'call:["{UCC}","slow"]': json.dumps({"r": 1, "m": 0, "s": 0, "since": 4e9})}
    overrides = {
        "rest_url": f"http://127.0.0.1:{port}{sim.rest_prefix}",
        "timeout": 1.0,
        "reconnect_min": 30.0,
        "reconnect_max": 60.0,
    }
    async with running_source(sim, tmp_path, state=state, **overrides) as (_, emitter):
        await wait_for(lambda: log_capture.events("anywherenow_reconcile_failed"), timeout=30)
        # Had the deadline been per read, the answer would have arrived whole after ~6 s
        # and been reconciled; it is cut instead, and asked again later.
        await wait_for(lambda: len(hostile.hits) >= 1)
        assert emitter.events == []
    (failed, *_) = log_capture.events("anywherenow_reconcile_failed")
    assert "no complete answer within 1s" in failed["error"]


async def test_a_dripping_negotiate_answer_is_cut_at_the_total_deadline(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    sim = AnywhereNowSimulator()
    body = json.dumps(
        {
            "negotiateVersion": 1,
            "connectionId": "c" * 20,
            "connectionToken": "t" * 20,
            "availableTransports": [{"transport": "WebSockets", "transferFormats": ["Text"]}],
        }
    ).encode()
    hostile = Hostile(sim.app)
    hostile.rules.append(("/negotiate", partial(drip, body, 0.05)))
    port = await nursery.start(serve_asgi, hostile)
    hub = f"http://127.0.0.1:{port}{sim.hub_path}"
    async with running_source(
        sim, tmp_path, hub_url=hub, timeout=1.0, reconnect_min=30.0, reconnect_max=60.0
    ) as (
        source,
        _,
    ):
        await wait_for(lambda: "no complete answer within 1s" in source.health.detail, timeout=30)
        assert source.connections == 0


async def test_hub_url_credentials_never_appear_in_readyz_metrics_or_check_config(
    tmp_path: Path, nursery: trio.Nursery, log_capture: LogCapture
) -> None:
    """The same through the real service: /readyz, /metrics and check-config."""
    import socket
    import subprocess
    import sys

    import httpx

    from bridge import admin as admin_module
    from bridge import logs
    from bridge.config import load
    from bridge.service import Bridge
    from tests.support.helpers import write_config

    token = "query-token-8d2f4a"
    sim = AnywhereNowSimulator(require_token=token)
    await nursery.start(sim.serve)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        admin = s.getsockname()[1]
    hub = f"http://operator:hunter2-pass@127.0.0.1:{sim.port}{sim.hub_path}?access_token={token}"
    config = write_config(
        tmp_path,
        f"""
[bridge]
state_dir = "{tmp_path / "state"}"

[admin]
listen = "127.0.0.1:{admin}"

[[sources.anywherenow]]
name = "anw"
hub_url = "{hub}"
rest_url = "http://operator:hunter2-pass@127.0.0.1:{sim.port}{sim.rest_prefix}?access_token={token}"
reconnect_min = 0.02
reconnect_max = 0.2

[[sinks.log]]
name = "log"
path = "{tmp_path / "events.jsonl"}"
""",
    )
    pages: list[str] = []
    loaded = load(config)
    logs.redactor.update(loaded.secrets.values)
    bridge = Bridge(loaded, shutdown_grace=2.0)
    admin_module.attach(bridge)  # as `event-bridge run` does
    async with trio.open_nursery() as inner, httpx.AsyncClient() as client:
        await inner.start(bridge.run)
        source = bridge.sources["anw"]
        await wait_for(lambda: source.health.ready)

        def admin_up() -> bool:
            with socket.socket() as probe:
                return probe.connect_ex(("127.0.0.1", admin)) == 0

        await wait_for(admin_up)
        for path in ("/readyz", "/metrics", "/healthz"):
            pages.append((await client.get(f"http://127.0.0.1:{admin}{path}")).text)
        sim.available = False
        await sim.drop_connections("abort")
        await wait_for(lambda: not source.health.ready)
        pages.append((await client.get(f"http://127.0.0.1:{admin}/readyz")).text)
        bridge.request_stop()
    checked = subprocess.run(
        [sys.executable, "-m", "bridge", "check-config", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    text = "\n".join(pages) + log_capture.getvalue() + checked.stdout + checked.stderr
    assert "operator:***@127.0.0.1" in pages[-1]  # the hub is named, redacted
    assert "hunter2-pass" not in text and token not in text
