"""The simulator's SignalR side: negotiate and the JSON hub protocol over WebSockets.

Written from the SignalR specs (TransportProtocols, HubProtocol), not from the bridge:
``POST <hub>/negotiate[?negotiateVersion=1]`` answers like ASP.NET Core (v0:
connectionId; v1: connectionId + connectionToken, and the WebSocket ``id`` must be the
token), or with a redirect (``url`` + ``accessToken``) as Azure SignalR does. The
WebSocket speaks the JSON hub protocol: handshake request/response, records ending in
0x1E, Ping (type 6) every ``ping_interval``, Invocation (type 1) and Close (type 7).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import trio

from bridge.simulators.anywherenow.state import RS, RequestRecord, _Client, _push
from bridge.simulators.journal import Journal


class HubSide:
    """Mixin of :class:`AnywhereNowSimulator`: negotiate and the hub WebSocket."""

    hub_path: str
    available: bool
    hang_upgrades: bool
    handshake_error: str | None
    ping_interval: float
    max_negotiate_version: int
    redirect: tuple[str, str | None] | None
    connections_total: int
    client_messages: list[dict[str, Any]]
    _clients: dict[str, _Client]
    _tokens: set[str]

    def _record(self, kind: str, scope: dict[str, Any]) -> RequestRecord:
        raise NotImplementedError

    def shown(self, client_id: str, text: str) -> None:
        raise NotImplementedError

    journal: Journal

    def _authorized(self, record: RequestRecord) -> bool:
        raise NotImplementedError

    def _negotiate(self, record: RequestRecord) -> tuple[int, Any]:
        if not self.available:
            return 503, "Service Unavailable"
        if not self._authorized(record):
            return 401, "Unauthorized"
        if self.redirect is not None:
            url, token = self.redirect
            answer_redirect: dict[str, Any] = {"url": url}
            if token is not None:
                answer_redirect["accessToken"] = token
            return 200, answer_redirect
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
        self.journal.add("connect", client=client.id)
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
                    self.shown(client.id, value)
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
