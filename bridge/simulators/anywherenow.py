"""AnywhereNow simulator: a SignalR hub (JSON protocol over WebSockets) plus the REST
Recording API, on loopback, built from the vendor doc and the SignalR protocol specs.

Hub: ``POST <hub>/negotiate[?negotiateVersion=1]`` answers like ASP.NET Core (v0:
connectionId; v1: connectionId + connectionToken, and the WebSocket ``id`` must be the
token); the WebSocket speaks the JSON hub protocol: handshake request/response, records
ending in 0x1E, Ping (type 6) every ``ping_interval``, Invocation (type 1) of
``RecordingStateChangedEvent`` and Close (type 7).

REST (under ``<rest_prefix>``, v1 ``/api/recording`` and v2 ``/api/v2/recording``):
get state, set state, capabilities; ErrorMessage objects on errors.

Tests drive :class:`AnywhereNowSimulator` in-process; ``event-bridge simulate anywherenow``
runs it from the command line with a scripted event generator.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import uuid
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import trio

from bridge.asgi import lifespan, serve_asgi

RS = "\x1e"
ACTIONS = {1: "Start", 2: "Stop", 3: "Pause", 4: "Save", 5: "Delete", 6: "Mark", 7: "UnMark"}
ACTION_NUMBERS = {name.lower(): number for number, name in ACTIONS.items()}
ERROR_CONFIGURATION, ERROR_VALIDATION = 1, 2  # the doc's "Configuration" / "Validation" errors


def _push(client: _Client, item: tuple[str, Any]) -> bool:
    """Queue a frame for one client; a client that is gone or hopelessly behind is skipped."""
    try:
        client.send.send_nowait(item)
    except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
        return False
    return True


def _field(payload: dict[str, Any], name: str) -> Any:
    for key, value in payload.items():
        if isinstance(key, str) and key.lower() == name.lower():
            return value
    return None


@dataclass
class CallRecord:
    """The recorder state of one call, as "Get Recording state" reports it."""

    ucc: str
    correlation_id: str
    recording: int = 0  # Uninitialized 0, Started 1, Stopped 2, Paused 3
    marking: int = 0  # None 0, Mark 1, Unmark 2
    saving: int = 0  # None 0, Save 1, Delete 2

    def apply(self, action: int) -> None:
        if action == 1:
            self.recording = 1
        elif action == 2:
            self.recording = 2
        elif action == 3:
            self.recording = 3
        elif action == 4:
            self.saving = 1
        elif action == 5:
            self.saving = 2
        elif action == 6:
            self.marking = 1
        elif action == 7:
            self.marking = 2

    def as_json(self) -> dict[str, Any]:
        return {
            "CorrelationId": self.correlation_id,
            "RecordingState": self.recording,
            "MarkingState": self.marking,
            "SavingState": self.saving,
            "ErrorMessage": None,
            "UCCName": self.ucc,
        }


@dataclass
class RequestRecord:
    """One request the simulator received (for tests: did the auth header arrive?)."""

    kind: str  # "http" or "websocket"
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]


@dataclass
class _Client:
    id: str
    send: trio.MemorySendChannel[tuple[str, Any]]
    ready: bool = False  # handshake done
    silent: bool = False  # "hung" hub: sends nothing any more
    handshake: dict[str, Any] = field(default_factory=dict)


class AnywhereNowSimulator:
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
    ) -> None:
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

    # ---- HTTP: negotiate and REST --------------------------------------------------------

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
        status, payload = self._route(record, body)
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

    def _route(self, record: RequestRecord, body: bytes) -> tuple[int, Any]:
        path = record.path.rstrip("/")
        if path == self.hub_path + "/negotiate":
            if record.method != "POST":
                return 405, "negotiate takes POST"
            return self._negotiate(record)
        if not self._authorized(record):
            return 401, "Unauthorized"
        for version, prefix in (("v2", "/api/v2/recording"), ("v1", "/api/recording")):
            base = self.rest_prefix + prefix
            if not path.startswith(base + "/"):
                continue
            if version == "v2" and not self.v2_enabled:
                return 404, "Not Found"
            rest = [unquote(part) for part in path[len(base) + 1 :].split("/")]
            if rest == ["set"] and record.method == "POST":
                return self._set(body)
            if len(rest) == 2 and rest[0] == "capabilities" and record.method == "GET":
                return 200, {
                    "AgentCanEditRecordings": self.agent_can_edit,
                    "ErrorMessage": None,
                    "UCCName": rest[1],
                }
            if len(rest) == 2 and record.method == "GET":
                call = self.calls.get((rest[0], rest[1]))
                if call is None:
                    return 404, {
                        "CorrelationId": rest[1],
                        "UCCName": rest[0],
                        "ErrorMessage": {
                            "ErrorType": ERROR_VALIDATION,
                            "Message": "No recording session found for this CorrelationId",
                        },
                    }
                return 200, call.as_json()
        return 404, "Not Found"

    def _negotiate(self, record: RequestRecord) -> tuple[int, Any]:
        if not self.available:
            return 503, "Service Unavailable"
        if not self._authorized(record):
            return 401, "Unauthorized"
        try:
            requested = int(record.query.get("negotiateVersion", ["0"])[0])
        except ValueError:
            requested = 0
        version = max(0, min(requested, self.max_negotiate_version))
        connection_id = uuid.uuid4().hex
        answer: dict[str, Any] = {
            "negotiateVersion": version,
            "connectionId": connection_id,
            "availableTransports": [{"transport": "WebSockets", "transferFormats": ["Text", "Binary"]}],
        }
        if version >= 1:
            token = uuid.uuid4().hex
            answer["connectionToken"] = token
            self._tokens.add(token)
        else:
            self._tokens.add(connection_id)
        return 200, answer

    def _set(self, body: bytes) -> tuple[int, Any]:
        try:
            payload = json.loads(body)
            if not isinstance(payload, dict):
                raise ValueError
        except ValueError:
            return 400, {
                "ErrorMessage": {"ErrorType": ERROR_VALIDATION, "Message": "Body must be a JSON object"}
            }
        ucc = _field(payload, "UCCName")
        correlation_id = _field(payload, "CorrelationId")
        action = self.action_number(_field(payload, "Action"))
        if not isinstance(ucc, str) or not isinstance(correlation_id, str) or action is None:
            return 400, {
                "ErrorMessage": {
                    "ErrorType": ERROR_VALIDATION,
                    "Message": "UCCName, CorrelationId and a valid Action are required",
                }
            }
        if not isinstance(_field(payload, "RequesterSipUri"), str):
            return 400, {
                "ErrorMessage": {
                    "ErrorType": ERROR_VALIDATION,
                    "Message": "RequesterSipUri must be a valid Agent in the UCC",
                }
            }
        if not self.agent_can_edit:
            return 200, {
                "CorrelationId": correlation_id,
                "UCCName": ucc,
                "ErrorMessage": {
                    "ErrorType": ERROR_CONFIGURATION,
                    "Message": "AgentCanEditAudioRecording is disabled for this UCC",
                },
            }
        call = self._apply(ucc, correlation_id, action)
        self._broadcast_event(ucc, correlation_id, action)
        return 200, call.as_json()

    @staticmethod
    def action_number(value: Any) -> int | None:
        if isinstance(value, bool):
            return None
        if isinstance(value, int):
            return value if value in ACTIONS else None
        if isinstance(value, str):
            if value.strip().isdigit():
                return AnywhereNowSimulator.action_number(int(value))
            return ACTION_NUMBERS.get(value.strip().lower())
        return None

    # ---- WebSocket: the hub --------------------------------------------------------------

    async def _websocket(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        first = await receive()
        if first["type"] != "websocket.connect":
            return
        record = self._record("websocket", scope)
        if self.hang_upgrades:
            await trio.sleep_forever()
        if scope["path"].rstrip("/") != self.hub_path:
            await send({"type": "websocket.close", "code": 1008})
            return
        ident = record.query.get("id", [None])[0]
        if (
            not self.available
            or not self._authorized(record)
            or (ident is not None and ident not in self._tokens)
        ):
            await send({"type": "websocket.close", "code": 1008})  # before accept: HTTP 403
            return
        self._tokens.discard(ident or "")
        await send({"type": "websocket.accept"})
        self.connections_total += 1
        outgoing, incoming = trio.open_memory_channel[tuple[str, Any]](10_000)
        client = _Client(ident or uuid.uuid4().hex, outgoing)
        self._clients[client.id] = client
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._writer, client, incoming, send, nursery.cancel_scope)
                nursery.start_soon(self._pinger, client)
                await self._reader(client, receive)
                self._clients.pop(client.id, None)
                client.ready = False
                # Let the writer flush what is queued (e.g. a handshake error), then end.
                _push(client, ("end", None))
                await trio.sleep(2.0)
                nursery.cancel_scope.cancel()
        finally:
            self._clients.pop(client.id, None)

    async def _writer(self, client: _Client, incoming: Any, send: Any, scope: trio.CancelScope) -> None:
        async for kind, value in incoming:
            if kind == "end":
                scope.cancel()
                return
            if client.silent:
                continue
            try:
                if kind == "text":
                    await send({"type": "websocket.send", "text": value})
                elif kind == "close":
                    await send({"type": "websocket.close", "code": value})
                    scope.cancel()
                    return
            except Exception:  # the client is already gone
                scope.cancel()
                return

    async def _pinger(self, client: _Client) -> None:
        while True:
            await trio.sleep(self.ping_interval)
            if client.ready:
                _push(client, ("text", json.dumps({"type": 6}) + RS))

    async def _reader(self, client: _Client, receive: Any) -> None:
        buffer = ""
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                text = (message.get("bytes") or b"").decode("utf-8", errors="replace")
            buffer += text
            while RS in buffer:
                record, buffer = buffer.split(RS, 1)
                if not client.ready:
                    if not self._handshake(client, record):
                        return
                    continue
                try:
                    data = json.loads(record)
                except ValueError:
                    _push(client, ("text", json.dumps({"type": 7, "error": "Invalid message"}) + RS))
                    _push(client, ("close", 1003))
                    return
                kind = data.get("type") if isinstance(data, dict) else None
                if kind == 6:
                    continue
                self.client_messages.append(data)
                if kind == 7:
                    _push(client, ("close", 1000))
                    return
                if kind == 1 and data.get("invocationId"):
                    _push(
                        client,
                        (
                            "text",
                            json.dumps({"type": 3, "invocationId": data["invocationId"], "result": None})
                            + RS,
                        ),
                    )

    def _handshake(self, client: _Client, record: str) -> bool:
        try:
            request = json.loads(record)
        except ValueError:
            request = None
        if not isinstance(request, dict) or request.get("protocol") != "json" or self.handshake_error:
            protocol = request.get("protocol") if isinstance(request, dict) else None
            error = self.handshake_error or f"Requested protocol '{protocol}' is not available."
            _push(client, ("text", json.dumps({"error": error}) + RS))
            _push(client, ("close", 1002))
            return False
        client.handshake = request
        _push(client, ("text", "{}" + RS))
        client.ready = True
        return True

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
            call.apply(number)
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
        return self.send_invocation_nowait(self.target, [payload])

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


# ---- command line ----------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=5080, help="port to bind (default 5080; 0 picks one)")
    parser.add_argument("--hub-path", default="/attendantservice/recordinghub", help="SignalR hub path")
    parser.add_argument(
        "--rest-prefix", default="/attendantservice", help="prefix of the REST API (…/api/v2/recording)"
    )
    parser.add_argument(
        "--target", default="RecordingStateChangedEvent", help="hub method name clients listen to"
    )
    parser.add_argument(
        "--ucc", action="append", default=None, help="UCC name(s) for generated calls (repeatable)"
    )
    parser.add_argument(
        "--rate", type=float, default=1.0, help="generated state changes per second (default 1)"
    )
    parser.add_argument(
        "--count", type=int, default=0, help="stop generating after this many changes (0 = forever)"
    )
    parser.add_argument(
        "--casing", choices=("camel", "pascal"), default="camel", help="property casing of event payloads"
    )
    parser.add_argument(
        "--action-as-name",
        action="store_true",
        help='send StateAction as a name ("Start") instead of a number',
    )
    parser.add_argument(
        "--require-token", default=None, help="require 'Authorization: Bearer TOKEN' (or ?access_token=)"
    )
    parser.add_argument(
        "--ping-interval", type=float, default=15.0, help="seconds between hub pings (default 15)"
    )
    parser.add_argument(
        "--drop-every", type=float, default=0.0, help="drop all connections every N seconds (0 = never)"
    )
    parser.add_argument(
        "--drop-mode",
        choices=("abort", "close", "silent"),
        default="abort",
        help="how to drop (default abort)",
    )
    parser.add_argument(
        "--outage",
        type=float,
        default=0.0,
        help="after each drop, refuse connections for N seconds (events continue: tests reconciliation)",
    )
    parser.add_argument(
        "--restart-every", type=float, default=0.0, help="simulate a hub restart every N seconds (0 = never)"
    )
    parser.add_argument("--no-v2", action="store_true", help="serve only the v1 REST routes")
    parser.add_argument(
        "--agents-cannot-edit", action="store_true", help="capabilities answer AgentCanEditRecordings=false"
    )
    parser.add_argument(
        "--no-wait", action="store_true", help="generate events even before the first client connects"
    )
    parser.add_argument("--seed", type=int, default=None, help="random seed for generated calls")
    parser.add_argument("--certfile", default=None, help="serve HTTPS/WSS with this certificate (PEM)")
    parser.add_argument("--keyfile", default=None, help="private key for --certfile")


def _call_script(rng: random.Random) -> list[int]:
    """One plausible call: Start, maybe Pause/Start, maybe Mark, Stop, Save or Delete."""
    script = [1]
    if rng.random() < 0.4:
        script += [3, 1]
    if rng.random() < 0.2:
        script.append(6)
    script.append(2)
    script.append(4 if rng.random() < 0.8 else 5)
    return script


async def generate(
    sim: AnywhereNowSimulator,
    uccs: list[str],
    rate: float,
    count: int,
    seed: int | None,
    *,
    echo: bool = True,
) -> None:
    """Interleave a few calls' scripts at ``rate`` changes per second."""
    rng = random.Random(seed)
    active: list[tuple[str, str, list[int]]] = []
    sent = itertools.count(1)
    while True:
        while len(active) < 3:
            active.append((rng.choice(uccs), str(uuid.UUID(int=rng.getrandbits(128))), _call_script(rng)))
        ucc, correlation_id, script = rng.choice(active)
        action = script.pop(0)
        if not script:
            active.remove((ucc, correlation_id, script))
        reached = await sim.send_state(ucc, correlation_id, action)
        n = next(sent)
        if echo:
            print(f"[{n}] {ucc} {correlation_id} {ACTIONS[action]} -> {reached} client(s)", flush=True)
        if count and n >= count:
            return
        await trio.sleep(1.0 / rate if rate > 0 else 0)


async def _every(seconds: float, action: Any) -> None:
    while True:
        await trio.sleep(seconds)
        await action()


async def main(args: argparse.Namespace) -> None:
    sim = AnywhereNowSimulator(
        hub_path=args.hub_path,
        rest_prefix=args.rest_prefix,
        target=args.target,
        require_token=args.require_token,
        casing=args.casing,
        action_as_name=args.action_as_name,
        ping_interval=args.ping_interval,
        v2_enabled=not args.no_v2,
        agent_can_edit=not args.agents_cannot_edit,
    )
    scheme = "https" if args.certfile else "http"

    async def drop() -> None:
        n = await sim.drop_connections(args.drop_mode)
        print(f"dropped {n} connection(s) ({args.drop_mode})", flush=True)
        if args.outage > 0:
            sim.available = False
            print(f"hub down for {args.outage:g}s", flush=True)
            await trio.sleep(args.outage)
            sim.available = True
            print("hub up again", flush=True)

    async def restart() -> None:
        n = await sim.restart()
        print(f"restarted hub ({n} connection(s) dropped)", flush=True)

    async with trio.open_nursery() as nursery:
        port = await nursery.start(
            lambda task_status: sim.serve(
                args.host, args.port, certfile=args.certfile, keyfile=args.keyfile, task_status=task_status
            )
        )
        host = args.host if args.host not in ("0.0.0.0", "::") else "127.0.0.1"
        print(f"AnywhereNow simulator: hub {scheme}://{host}:{port}{sim.hub_path}", flush=True)
        print(f"                       rest_url {scheme}://{host}:{port}{sim.rest_prefix}", flush=True)
        if args.drop_every > 0:
            nursery.start_soon(_every, args.drop_every, drop)
        if args.restart_every > 0:
            nursery.start_soon(_every, args.restart_every, restart)
        if args.rate > 0:
            if not args.no_wait:
                print("waiting for the first client before generating events", flush=True)
                await sim.wait_for_clients(1, poll=0.1)
            nursery.start_soon(generate, sim, args.ucc or ["ucc-demo-name"], args.rate, args.count, args.seed)


class DemoHub:
    """For ``event-bridge demo``: a hub where an AnywhereNow source connects, generating calls."""

    def __init__(self, source: Any, rate: float = 1.0) -> None:
        settings = source.settings
        hub = urlsplit(settings.hub_url)
        rest = urlsplit(settings.rest_url) if settings.rest_url else None
        self.host = hub.hostname or "127.0.0.1"
        self.port = hub.port or (443 if hub.scheme in ("https", "wss") else 80)
        self.uccs = list(settings.ucc_names) or ["ucc-demo-name"]
        self.rate = rate
        self.sim = AnywhereNowSimulator(
            hub_path=hub.path,
            rest_prefix=rest.path if rest else "/attendantservice",
            target=settings.target,
            require_token=settings.access_token,
        )

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            port = await nursery.start(partial(self.sim.serve, self.host, self.port))
            task_status.started(port)
            await self.sim.wait_for_clients(1, poll=0.1)
            await generate(self.sim, self.uccs, self.rate, 0, None, echo=False)


def for_source(source: Any) -> DemoHub:
    return DemoHub(source)
