"""A scriptable HTTP receiver for webhook tests (served by hypercorn on loopback)."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from bridge.asgi import Disconnected, lifespan, read_body, respond


@dataclass
class Request:
    headers: dict[str, str]
    body: bytes
    at: float
    status: int

    def events(self) -> list[dict[str, Any]]:
        payload = json.loads(self.body)
        if isinstance(payload, list):
            return payload
        if "ce-id" in self.headers:
            ce = {k[3:]: v for k, v in self.headers.items() if k.startswith("ce-")}
            return [{**ce, "data": payload}]
        return [payload]


Behaviour = Callable[["Receiver", dict[str, str], bytes], Awaitable[int | tuple[int, dict[str, str], bytes]]]


async def accept(receiver: Receiver, headers: dict[str, str], body: bytes) -> int:
    return 204


class Receiver:
    """Records every request; ``behaviour`` decides the answer (status or (status, headers, body)).

    ``journal`` is the receiver's own record of every event it accepted (a 2xx answer), in
    order, with a monotonic timestamp: what loss accounting counts (tests/support/accounting.py).
    """

    def __init__(self, behaviour: Behaviour = accept) -> None:
        self.behaviour = behaviour
        self.requests: list[Request] = []
        self.journal: list[dict[str, Any]] = []
        self.concurrent = 0
        self.max_concurrent = 0

    def delivered_ids(self) -> list[str]:
        return [e["id"] for r in self.requests if 200 <= r.status < 300 for e in r.events()]

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        try:
            body = await read_body(receive)
        except Disconnected:
            return  # the sender went away mid-request: nothing was received
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        self.concurrent += 1
        self.max_concurrent = max(self.max_concurrent, self.concurrent)
        try:
            answer = await self.behaviour(self, headers, body)
        finally:
            self.concurrent -= 1
        status, extra, payload = (answer, {}, b"") if isinstance(answer, int) else answer
        request = Request(headers, body, time.time(), status)
        self.requests.append(request)
        if 200 <= status < 300:
            now = time.monotonic()
            for event in request.events():
                self.journal.append({"t": now, **event})
        await respond(send, status, payload, extra.pop("content-type", "text/plain"), extra)
