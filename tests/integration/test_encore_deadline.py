"""Every Encore request has a total deadline: a server that drips its answer one byte at
a time cannot hold a request (and with it all polling) past ``timeout``.

httpx's timeouts apply to each read, so a byte every 50 ms never trips a 0.5 s read
timeout; the test proves the *total* deadline fired (its own error, not ReadTimeout)
against a real server over loopback that was still dripping when the client gave up.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from bridge.components import SourceContext
from bridge.quarantine import Quarantine
from bridge.sources.encore import EncoreSource
from bridge.sources.encore.soap import SoapClient, SoapTransportError
from tests.integration.test_encore_source import RecordingLog, settings_for, wait_for

DRIP_EVERY = 0.05


class DrippingServer:
    """Answers any request with headers for a 1 MB body, then one byte per DRIP_EVERY."""

    def __init__(self) -> None:
        self.requests = 0
        self.dripped = 0
        self.hung_up = 0  # connections the client closed while we were still dripping

    async def handle(self, stream: trio.SocketStream) -> None:
        self.requests += 1
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = await stream.receive_some(65536)
            if not chunk:
                return
            data += chunk
        try:
            await stream.send_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/xml; charset=utf-8\r\n"
                b"Content-Length: 1000000\r\n\r\n<"
            )
            while True:
                await trio.sleep(DRIP_EVERY)
                await stream.send_all(b" ")
                self.dripped += 1
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.hung_up += 1

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        task_status.started(listeners[0].socket.getsockname()[1])
        await trio.serve_listeners(self.handle, listeners)


async def test_a_dripping_server_cannot_hold_a_request_past_the_timeout(nursery: trio.Nursery) -> None:
    server = DrippingServer()
    port = await nursery.start(server.serve)
    client = SoapClient(f"http://127.0.0.1:{port}/WebAPI/ECAPI.svc", timeout=0.5)
    try:
        with trio.fail_after(20), pytest.raises(SoapTransportError) as info:  # a guard, not a measurement
            await client.call("PortStatusEX", [("Unit", "1"), ("Port", "1")])
    finally:
        await client.aclose()
    assert "TotalTimeout" in str(info.value) and "timeout = 0.5 s" in str(info.value)
    assert "ReadTimeout" not in str(info.value)
    assert server.dripped >= 2  # the server kept sending: no per-read timeout could fire
    await wait_for(lambda: server.hung_up == 1)


async def test_a_dripping_server_is_reported_and_retried_by_the_source(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    server = DrippingServer()
    port = await nursery.start(server.serve)
    source = EncoreSource(settings_for(port, ports=[("1", "1")], timeout=0.3, api_version="7.1"))
    log = RecordingLog()
    await nursery.start(source.run, SourceContext(_Nothing(), Quarantine(tmp_path / "q"), {}, log))
    await wait_for(lambda: source.health.state == "error" and "TotalTimeout" in source.health.detail)
    await wait_for(lambda: server.requests >= 2)  # backed off, then asked again
    assert any("TotalTimeout" in b["error"] for b in log.named("encore_backoff"))
    assert source.describe() == f"http://127.0.0.1:{port}/WebAPI/ECAPI.svc"


class _Nothing:
    async def emit(self, events: object, *, state: object = None, durable: bool = False) -> None:
        raise AssertionError("nothing can be emitted: the server never answers")
