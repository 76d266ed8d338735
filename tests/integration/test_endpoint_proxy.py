"""A per-endpoint forward proxy: the endpoint's host resolves nowhere, so only a request
that went through the proxy can arrive."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import trio

from bridge.asgi import serve_asgi
from tests.integration.endpoint_support import (
    emit,
    events,
    numbers,
    running,
    sink_table,
    start_source,
    write_config,
)
from tests.support.helpers import wait_for
from tests.support.receivers import Receiver


class ForwardProxy:
    """An HTTP/1.1 forward proxy (absolute-form request targets, RFC 9112 3.2.2) that knows
    one private host name; it records each connection's first request target."""

    def __init__(self, hosts: dict[str, tuple[str, int]]) -> None:
        self.hosts = hosts
        self.targets: list[str] = []

    async def serve(self, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        task_status.started(listeners[0].socket.getsockname()[1])
        await trio.serve_listeners(self.handle, listeners)

    async def handle(self, client: trio.SocketStream) -> None:
        buf = b""
        while b"\r\n\r\n" not in buf:
            data = await client.receive_some(65536)
            if not data:
                return
            buf += data
        head, rest = buf.split(b"\r\n\r\n", 1)
        line, *fields = head.split(b"\r\n")
        method, target, version = line.split(b" ")
        self.targets.append(target.decode())
        url = urlsplit(target.decode())
        if url.hostname not in self.hosts:
            await client.send_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")
            return
        upstream = await trio.open_tcp_stream(*self.hosts[url.hostname])
        request_line = b" ".join([method, (url.path or "/").encode(), version])
        await upstream.send_all(b"\r\n".join([request_line, *fields]) + b"\r\n\r\n" + rest)
        async with trio.open_nursery() as nursery:

            async def pipe(a: trio.SocketStream, b: trio.SocketStream) -> None:
                try:
                    while data := await a.receive_some(65536):
                        await b.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
                nursery.cancel_scope.cancel()

            nursery.start_soon(pipe, client, upstream)
            nursery.start_soon(pipe, upstream, client)
        await upstream.aclose()


async def test_events_go_through_the_endpoints_proxy(tmp_path: Path, nursery) -> None:
    hook = Receiver()
    hook_port = await nursery.start(serve_asgi, hook.app)
    proxy = ForwardProxy({"hook.example.invalid": ("127.0.0.1", hook_port)})
    proxy_port = await nursery.start(proxy.serve)
    sinks = sink_table(
        "via-proxy", "http://hook.example.invalid/hook", f'proxy = "http://127.0.0.1:{proxy_port}"'
    ) + sink_table("direct", "http://hook.example.invalid/hook")
    async with running(write_config(tmp_path, sinks, await start_source(nursery))) as bridge:
        await emit(bridge, events(4))
        await wait_for(lambda: len(numbers(hook.requests)) == 4)
        await wait_for(lambda: bridge.sinks["direct"].health.failed >= 1)
    assert numbers(hook.requests) == [0, 1, 2, 3]
    assert proxy.targets and all(t == "http://hook.example.invalid/hook" for t in proxy.targets)
    assert all(r.headers["host"] == "hook.example.invalid" for r in hook.requests)
