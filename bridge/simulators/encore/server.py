"""The simulated Encore Web API on the wire: SOAP 1.1 over HTTP(S), on loopback."""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import trio

from bridge.asgi import BodyTooLarge, Disconnected, lifespan, read_body, serve_asgi
from bridge.simulators.encore import protocol
from bridge.simulators.encore.state import HISTORY, ActionFault, Recorder

MAX_REQUEST_BYTES = 256 * 1024


class EncoreSimulator(Recorder):
    """In-process Encore Web API; ``port = await nursery.start(sim.serve)``.

    ``latency`` is added to every answer; ``max_concurrency`` is the most requests it
    ever had in flight at once (the docs allow one).
    """

    def __init__(self, *, latency: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.latency = latency
        self.in_flight = 0
        self.max_concurrency = 0
        self.arrivals: deque[float] = deque(maxlen=HISTORY)  # monotonic arrival times
        # HTTP connections seen (journaled as "connect"), so an answer written after the
        # client that asked was killed belongs to that client's lifetime, not the next one.
        self._connections: dict[str, None] = {}

    def dispatch(self, raw: bytes, soap_action: str | None) -> tuple[int, bytes]:
        """(HTTP status, body) for one POSTed request."""
        try:
            op, params = protocol.parse_request(raw)
        except protocol.BadRequest as exc:
            return 400, protocol.escape(f"Bad Request: {exc}").encode()
        expected = self.action(op)
        if soap_action is not None and soap_action.strip('"') != expected:
            text = (
                f"The message with Action '{soap_action.strip(chr(34))}' cannot be processed "
                "at the receiver, due to a ContractFilter mismatch at the EndpointDispatcher."
            )
            return 500, protocol.fault("a:ActionNotSupported", text)
        try:
            code, extra = self.handle(op, params)
        except ActionFault as exc:
            return 500, protocol.fault("a:ActionNotSupported", str(exc))
        return 200, protocol.answer(op, code, extra, self.namespace)

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """The ASGI callable: POST a SOAP 1.1 envelope to any path ending in ``.svc``."""
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        self.in_flight += 1
        self.max_concurrency = max(self.max_concurrency, self.in_flight)
        self.arrivals.append(time.monotonic())
        try:
            try:
                status, body, ctype = await self._answer(scope, receive)
            except Disconnected:
                return  # the client went away mid-request
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [(b"content-type", ctype), (b"content-length", str(len(body)).encode())],
                }
            )
            await send({"type": "http.response.body", "body": body})
        finally:
            self.in_flight -= 1

    async def _answer(self, scope: dict[str, Any], receive: Any) -> tuple[int, bytes, bytes]:
        try:
            raw: bytes | None = await read_body(receive, MAX_REQUEST_BYTES)
        except BodyTooLarge:
            raw = None
        if self.latency:
            await trio.sleep(self.latency)
        if not scope["path"].lower().endswith(".svc"):
            return 404, b"<html><body>404 Not Found</body></html>", b"text/html"
        if scope["method"] != "POST":
            return 200, b"Encore Web API simulator: POST SOAP 1.1 here\n", b"text/plain"
        if raw is None:
            return 413, b"request too large", b"text/plain"
        headers = {k.decode().lower(): v.decode("latin-1") for k, v in scope["headers"]}
        self.current_client = self._connection(scope)
        try:
            status, body = self.dispatch(raw, headers.get("soapaction"))
        finally:
            self.current_client = None
        ctype = b"text/xml; charset=utf-8" if status != 400 else b"text/plain"
        return status, body, ctype

    def _connection(self, scope: dict[str, Any]) -> str | None:
        client = scope.get("client")
        if not client:
            return None
        key = f"http:{client[0]}:{client[1]}"
        if key not in self._connections:
            if len(self._connections) >= HISTORY:
                self._connections.pop(next(iter(self._connections)))
            self._connections[key] = None
            self.journal.add("connect", client=key)
        return key

    async def serve(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        certfile: str | None = None,
        keyfile: str | None = None,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve over HTTP (HTTPS with ``certfile``) until cancelled; reports the bound port."""
        await serve_asgi(self.app, host, port, certfile=certfile, keyfile=keyfile, task_status=task_status)
