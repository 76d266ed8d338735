"""The AnywhereNow simulator: a SignalR hub plus the REST Recording API on loopback.

Built from the vendor doc and the SignalR specs, never from ``bridge.sources``. Tests
drive :class:`AnywhereNowSimulator` in-process; ``event-bridge simulate anywherenow``
runs it from the command line (:mod:`.cli`).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

import trio

from bridge.asgi import lifespan, serve_asgi
from bridge.simulators.anywherenow.hub import HubSide
from bridge.simulators.anywherenow.rest import RestSide
from bridge.simulators.anywherenow.state import ACTIONS, RS, CallRecord, RequestRecord, _Client, _push
from bridge.simulators.journal import Journal


class AnywhereNowSimulator(HubSide, RestSide):
    """Scriptable AnywhereNow hub + REST API. ``port = await nursery.start(sim.serve)``."""

    def __init__(
        self,
        *,
        hub_path: str = "/attendantservice/recordinghub",
        rest_prefix: str = "/attendantservice",
        target: str = "RecordingStateChangedEvent",
        require_token: str | None = None,
        casing: str = "camel",
        action_as_name: bool = False,
        ping_interval: float = 15.0,
        v2_enabled: bool = True,
        agent_can_edit: bool = True,
        max_negotiate_version: int = 1,
        not_found: str = "404",
        report_uninitialized: bool = False,
        rest_casing: str = "pascal",
        journal: Journal | None = None,
    ) -> None:
        if not_found not in ("404", "200"):
            raise ValueError("not_found must be '404' or '200'")
        self.not_found = not_found  # how an unknown session is answered
        self.report_uninitialized = report_uninitialized  # RecordingState 0 for live calls
        self.rest_casing = rest_casing  # "pascal" (as in the doc) or "camel"
        self.rest_gate: trio.Event | None = None  # set: GET state waits for it (race tests)
        self.rest_waiting = 0  # GET state requests waiting at the gate
        self.redirect: tuple[str, str | None] | None = None  # negotiate answers (url, accessToken)
        self.hub_path = "/" + hub_path.strip("/")
        self.rest_prefix = "/" + rest_prefix.strip("/") if rest_prefix.strip("/") else ""
        self.target = target
        self.require_token = require_token
        self.casing = casing
        self.action_as_name = action_as_name
        self.ping_interval = ping_interval
        self.v2_enabled = v2_enabled
        self.agent_can_edit = agent_can_edit
        self.max_negotiate_version = max_negotiate_version
        self.available = True  # False: negotiate and WebSocket are refused (hub "down")
        self.hang_upgrades = False  # True: WebSocket upgrades are never answered (a stuck proxy)
        self.handshake_error: str | None = None  # refuse every SignalR handshake with this error
        self.calls: dict[tuple[str, str], CallRecord] = {}
        # Ground truth for loss accounting (bridge/simulators/journal.py): every state
        # change ("change"), and every time a state was shown to a client ("observe":
        # a hub message written to its WebSocket, a REST answer).
        self.journal = journal if journal is not None else Journal()
        self._shows: dict[str, list[tuple[str, str]]] = {}  # hub message text -> what it shows
        self.requests: list[RequestRecord] = []
        self.client_messages: list[dict[str, Any]] = []  # non-ping messages clients sent
        self.connections_total = 0
        self.sent_events = 0
        self._clients: dict[str, _Client] = {}
        self._tokens: set[str] = set()
        self.port: int | None = None

    # ---- serving -----------------------------------------------------------------------

    async def serve(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        certfile: str | None = None,
        keyfile: str | None = None,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve until cancelled; reports the bound port."""

        async def run(task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
            await serve_asgi(
                self.app, host, port, certfile=certfile, keyfile=keyfile, task_status=task_status
            )

        async with trio.open_nursery() as nursery:
            self.port = await nursery.start(run)
            task_status.started(self.port)

    def hub_url(self, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{self.hub_path}"

    def rest_url(self, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{self.rest_prefix}"

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "websocket":
            await self._websocket(scope, receive, send)

    def _record(self, kind: str, scope: dict[str, Any]) -> RequestRecord:
        headers: dict[str, str] = {}
        for name, value in scope.get("headers", []):
            key = name.decode("latin-1").lower()
            text = value.decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        record = RequestRecord(
            kind=kind,
            method=scope.get("method", "GET"),
            path=scope["path"],
            query=parse_qs(scope.get("query_string", b"").decode("latin-1")),
            headers=headers,
        )
        self.requests.append(record)
        return record

    def _authorized(self, record: RequestRecord) -> bool:
        if self.require_token is None:
            return True
        if record.headers.get("authorization") == f"Bearer {self.require_token}":
            return True
        return record.query.get("access_token", [None])[0] == self.require_token

    # ---- HTTP: negotiate and REST ------------------------------------------------------

    async def _http(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        record = self._record("http", scope)
        status, payload = await self._route(record, body)
        if isinstance(payload, str | bytes):
            data = payload.encode() if isinstance(payload, str) else payload
            content_type = b"text/plain"
        else:
            data = json.dumps(payload).encode()
            content_type = b"application/json"
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", content_type), (b"content-length", str(len(data)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": data})

    async def _route(self, record: RequestRecord, body: bytes) -> tuple[int, Any]:
        path = record.path.rstrip("/")
        if path == self.hub_path + "/negotiate":
            if record.method != "POST":
                return 405, "negotiate takes POST"
            return self._negotiate(record)
        if not self._authorized(record):
            return 401, "Unauthorized"
        answer = await self._rest(record, body)
        if answer is not None:
            return answer
        return 404, "Not Found"

    # ---- scripting -----------------------------------------------------------------------

    @property
    def connected_clients(self) -> int:
        return sum(1 for c in self._clients.values() if c.ready)

    @property
    def handshakes(self) -> list[dict[str, Any]]:
        return [c.handshake for c in self._clients.values() if c.ready]

    async def wait_for_clients(self, count: int = 1, *, poll: float = 0.01) -> None:
        """Wait until at least ``count`` clients have completed the handshake."""
        while self.connected_clients < count:
            await trio.sleep(poll)

    def event_payload(self, ucc: str, correlation_id: str, action: int | str) -> dict[str, Any]:
        value: int | str = action
        if self.action_as_name and isinstance(action, int) and action in ACTIONS:
            value = ACTIONS[action]
        if self.casing == "pascal":
            return {"UccName": ucc, "CorrelationId": correlation_id, "StateAction": value}
        return {"uccName": ucc, "correlationId": correlation_id, "stateAction": value}

    def _apply(self, ucc: str, correlation_id: str, action: int | str) -> CallRecord:
        call = self.calls.setdefault((ucc, correlation_id), CallRecord(ucc, correlation_id))
        number = self.action_number(action)
        if number is not None:
            before = call.dimensions()
            call.apply(number)
            for dim, state in call.dimensions().items():
                if before[dim] != state:
                    self.journal.add("change", subject=f"{correlation_id}#{dim}", state=state, ucc=ucc)
        return call

    def _broadcast(self, text: str) -> int:
        reached = 0
        for client in list(self._clients.values()):
            if client.ready and not client.silent and _push(client, ("text", text)):
                reached += 1
        return reached

    def _broadcast_event(self, ucc: str, correlation_id: str, action: int | str) -> int:
        self.sent_events += 1
        payload = self.event_payload(ucc, correlation_id, action)
        message = {"type": 1, "target": self.target, "arguments": [payload]}
        text = json.dumps(message) + RS
        call = self.calls.get((ucc, correlation_id))
        if call is not None:
            self._shows.pop(text, None)
            self._shows[text] = [(f"{correlation_id}#{d}", s) for d, s in call.dimensions().items()]
            if len(self._shows) > 10_000:  # bounded: the oldest messages were written long ago
                del self._shows[next(iter(self._shows))]
        return self._broadcast(text)

    def shown(self, client_id: str, text: str) -> None:
        """A frame was written to a client's WebSocket: journal what it showed."""
        for subject, state in self._shows.get(text, ()):
            self.journal.add("observe", subject=subject, state=state, via="hub", client=client_id)

    async def send_state(self, ucc: str, correlation_id: str, action: int | str) -> int:
        """Change a call's recorder state and tell every connected client; returns how many."""
        self._apply(ucc, correlation_id, action)
        return self._broadcast_event(ucc, correlation_id, action)

    def set_state(self, ucc: str, correlation_id: str, action: int | str) -> CallRecord:
        """Change a call's recorder state silently (as if it happened while nobody listened)."""
        return self._apply(ucc, correlation_id, action)

    def forget_call(self, ucc: str, correlation_id: str) -> None:
        """The session disappears (REST answers 404 with an ErrorMessage)."""
        self.calls.pop((ucc, correlation_id), None)

    def send_invocation_nowait(self, target: str, arguments: list[Any]) -> int:
        message = {"type": 1, "target": target, "arguments": arguments}
        return self._broadcast(json.dumps(message) + RS)

    async def send_invocation(self, target: str, arguments: list[Any]) -> int:
        return self.send_invocation_nowait(target, arguments)

    async def send_records(self, records: list[str]) -> int:
        """Send JSON hub records (without separators) in frames, waiting while a client's
        queue is full instead of skipping it (floods that must arrive whole)."""
        frame = "".join(r + RS for r in records)
        reached = 0
        for client in list(self._clients.values()):
            if client.ready and not client.silent:
                try:
                    await client.send.send(("text", frame))
                    reached += 1
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
        return reached

    async def send_raw(self, text: str) -> int:
        """Send text exactly as given (add the 0x1E separator yourself) to every client."""
        return self._broadcast(text)

    async def drop_connections(self, mode: str = "abort", error: str | None = "Simulated drop") -> int:
        """Drop every client: ``abort`` (WebSocket close, no SignalR Close), ``close``
        (SignalR Close message type 7 first) or ``silent`` (keep the socket, send nothing)."""
        dropped = 0
        for client in list(self._clients.values()):
            dropped += 1
            if mode == "silent":
                client.silent = True
                continue
            if mode == "close":
                message: dict[str, Any] = {"type": 7, "allowReconnect": True}
                if error:
                    message["error"] = error
                _push(client, ("text", json.dumps(message) + RS))
            _push(client, ("close", 1000 if mode == "close" else 1011))
        return dropped

    async def restart(self) -> int:
        """Simulate a hub restart: every connection drops and old negotiate tokens die."""
        self._tokens.clear()
        return await self.drop_connections("abort")

    def headers_seen(self, kind: str | None = None) -> list[dict[str, str]]:
        return [r.headers for r in self.requests if kind is None or r.kind == kind]
