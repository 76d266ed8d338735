"""Serve a plain ASGI app on loopback with hypercorn's trio worker.

Simulators and test receivers are ASGI callables; this is the one place that knows
how to bind them, report the real port (port 0 picks a free one) and shut them down.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

AsgiApp = Callable[
    [dict[str, Any], Callable[..., Awaitable[Any]], Callable[..., Awaitable[Any]]],
    Awaitable[None],
]


class _PortStatus:
    """Adapts hypercorn's ``started(binds)`` to ``started(port)``."""

    def __init__(self, inner: trio.TaskStatus[int], fallback: int) -> None:
        self._inner = inner
        self._fallback = fallback

    def started(self, binds: list[str] | None = None) -> None:
        port = int(binds[0].rsplit(":", 1)[1].rstrip("/")) if binds else self._fallback
        self._inner.started(port)


async def serve_asgi(
    app: AsgiApp,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    certfile: str | None = None,
    keyfile: str | None = None,
    shutdown: trio.Event | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run ``app`` until cancelled or ``shutdown`` is set; reports the bound port."""
    config = HypercornConfig()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("bridge.simulators.http")
    config.graceful_timeout = 1.0
    if certfile:
        config.certfile = certfile
        config.keyfile = keyfile
    trigger = shutdown.wait if shutdown is not None else None
    await serve(app, config, shutdown_trigger=trigger, task_status=_PortStatus(task_status, port))  # type: ignore[arg-type]


class Disconnected(Exception):
    """The client went away before the request body was complete."""


class BodyTooLarge(Exception):
    """The request body is larger than the caller's limit."""


async def read_body(receive: Any, limit: int | None = None) -> bytes:
    """The whole request body; raises Disconnected or BodyTooLarge instead of guessing."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if limit is not None and size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def lifespan(receive: Any, send: Any) -> None:
    """Answer the ASGI lifespan protocol (nothing to set up or tear down)."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def respond(
    send: Any,
    status: int,
    body: bytes = b"",
    content_type: str = "text/plain",
    headers: dict[str, str] | None = None,
) -> None:
    """Send a complete HTTP response."""
    raw_headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
    raw_headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})
