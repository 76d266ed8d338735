"""One SignalR connection to the AnywhereNow hub, bridged from signalrcore's threads into trio.

signalrcore (1.0.2, pinned) runs a blocking receive thread per connection and calls back
from it. This module keeps that world small and explicit:

* The bridge negotiates itself (:mod:`.negotiate`: deadlines, capped bodies, redirect
  policy) and hands signalrcore a ready WebSocket URL with ``skip_negotiation``.
* The WebSocket client is signalrcore's, patched around (:mod:`.transport`): frames and
  messages over ``max_message_bytes`` are refused before they are read.
* signalrcore's automatic reconnect is not used: the source owns reconnection.
* Every hub message crosses into trio only through ``trio.from_thread.run`` into a
  bounded channel; when the channel is full the receive thread blocks (backpressure),
  so nothing is dropped. A message that cannot cross (the trio side is gone) is
  counted and logged as an error, with a short masked excerpt only.
* Frames signalrcore cannot parse would kill its receive loop; the protocol subclass
  below hands them to the source for quarantine instead, and the connection stays up.
* ``close()`` shuts the socket down (which wakes the blocked ``recv``), stops the
  connection and joins the receive thread, so no thread outlives the connection.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import trio
from signalrcore.hub.base_hub_connection import BaseHubConnection
from signalrcore.hub_connection_builder import HubConnectionBuilder
from signalrcore.messages.message_type import MessageType
from signalrcore.messages.ping_message import PingMessage
from signalrcore.protocol.json_hub_protocol import JsonHubProtocol

from bridge.netutil import describe
from bridge.sources.anywherenow import transport
from bridge.sources.anywherenow.bounded import excerpt
from bridge.sources.anywherenow.negotiate import HubConnectError

RECORD_SEPARATOR = "\x1e"
RECV_THREAD_NAME = "Signalrcore websocket client"

# signalrcore logs URLs (with the connection token) and raw messages through stdlib
# logging; none of that may reach stderr through logging's last-resort handler.
_library_log = logging.getLogger("SignalRCoreClient")
_library_log.addHandler(logging.NullHandler())
_library_log.propagate = False

__all__ = ["RECORD_SEPARATOR", "HubConnectError", "HubLink", "HubMessage", "TolerantJsonHubProtocol"]


@dataclass
class HubMessage:
    """What crosses from the receive thread into trio."""

    kind: str  # "invocation" (our target), "bad" (unparseable), "unhandled" (other target), "hub_error"
    target: str
    arguments: Any
    raw: str
    reason: str = ""


class TolerantJsonHubProtocol(JsonHubProtocol):  # type: ignore[misc]
    """JSON hub protocol that reports bad records instead of raising in the receive thread."""

    def __init__(self, on_bad: Callable[[str, str], None], on_handshake_error: Callable[[str], None]) -> None:
        super().__init__(version=1)
        self._on_bad = on_bad
        self._on_handshake_error = on_handshake_error

    def decode_handshake(self, raw_message: str) -> Any:
        # signalrcore logs a refused handshake but reports no close: tell the link.
        try:
            response, messages = super().decode_handshake(raw_message)
        except Exception as exc:
            self._on_handshake_error(
                f"unreadable handshake response {excerpt(str(raw_message))!r}: {type(exc).__name__}"
            )
            raise
        if response.error:
            self._on_handshake_error(excerpt(str(response.error), 200, mask=False))
        return response, messages

    def parse_messages(self, raw: Any) -> list[Any]:
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8", errors="replace")
        result = []
        for record in str(raw).split(self.record_separator):
            if not record.strip():
                continue
            try:
                data = json.loads(record)
                if not isinstance(data, dict):
                    raise ValueError("hub message is not a JSON object")
                if not data:
                    continue
                message = self.get_message(dict(data))
            except Exception as exc:  # every way a record can be wrong
                self._on_bad(record, f"{type(exc).__name__}: {excerpt(str(exc), 120, mask=False)}")
                continue
            if message is None:
                self._on_bad(record, "unknown hub message type")
                continue
            message.raw_record = record
            result.append(message)
        return result


class HubLink:
    """One live hub connection; build a new one for every reconnect."""

    def __init__(
        self,
        *,
        target: str,
        ssl_context: ssl.SSLContext,
        send_channel: trio.MemorySendChannel[HubMessage],
        log: Any,
        max_message_bytes: int = 1_048_576,
    ) -> None:
        self.max_message_bytes = max_message_bytes
        self.target = target
        self.ssl_context = ssl_context
        self.log = log
        self._send = send_channel
        self._token = trio.lowlevel.current_trio_token()
        self._connection: BaseHubConnection | None = None
        self._recv_thread: threading.Thread | None = None
        self._stopping = False
        self.opened = trio.Event()
        self.closed = trio.Event()
        self.close_reason = ""
        self.last_received = time.monotonic()
        self.blocked = False  # receive thread waiting for room in the channel
        self.dropped = 0
        self.id = uuid.uuid4().hex[:8]

    # ---- called from signalrcore's threads -------------------------------------------

    def _to_trio(self, item: HubMessage) -> None:
        self._to_trio_many([item])

    def _to_trio_many(self, items: list[HubMessage]) -> None:
        """Hand messages to trio in order, blocking while the channel is full
        (backpressure); one thread hop per frame, not per message."""
        if not items:
            return
        sent = 0

        async def send_all() -> None:
            nonlocal sent
            for item in items:
                await self._send.send(item)
                sent += 1

        self.blocked = True
        try:
            trio.from_thread.run(send_all, trio_token=self._token)
        except Exception as exc:  # trio side gone (shutdown) or channel closed
            lost = items[sent:]
            self.dropped += len(lost)
            try:
                self.log.error(
                    "anywherenow_message_not_delivered",
                    reason=f"{type(exc).__name__}: {exc}",
                    kind=lost[0].kind,
                    excerpt=excerpt(lost[0].raw),
                    count=len(lost),
                    dropped_total=self.dropped,
                )
            except Exception:
                pass
        finally:
            self.blocked = False
            self.last_received = time.monotonic()

    def _signal(self, event: trio.Event) -> None:
        try:
            trio.from_thread.run_sync(event.set, trio_token=self._token)
        except Exception:
            pass  # trio has finished: nobody is waiting any more

    def _on_bad(self, raw: str, reason: str) -> None:
        self.last_received = time.monotonic()
        self._to_trio(HubMessage("bad", "", None, raw, reason))

    def _on_messages(self, messages: list[Any]) -> None:
        """Replaces the connection's dispatcher: ours first, the library for the rest."""
        self.last_received = time.monotonic()
        rest = []
        ours: list[HubMessage] = []
        for message in messages:
            kind = message.type
            if kind == MessageType.invocation or kind == MessageType.invocation.value:
                target = getattr(message, "target", "")
                raw = getattr(message, "raw_record", "")
                # Hub method names match case-insensitively, as in the official clients.
                if isinstance(target, str) and target.lower() == self.target.lower():
                    ours.append(HubMessage("invocation", target, message.arguments, raw))
                else:
                    ours.append(HubMessage("unhandled", str(target), message.arguments, raw))
                continue
            if kind == MessageType.close or kind == MessageType.close.value:
                error = getattr(message, "error", None)
                self.close_reason = "hub sent Close" + (
                    f": {excerpt(str(error), 200, mask=False)}" if error else ""
                )
            rest.append(message)
        self._to_trio_many(ours)
        if rest and self._connection is not None:
            BaseHubConnection.on_message(self._connection, rest)

    def _on_limit(self, reason: str) -> None:
        self.close_reason = reason

    def _on_handshake_error(self, error: str) -> None:
        self.close_reason = f"hub refused the SignalR handshake: {error}"
        self._signal(self.closed)

    def _on_open(self) -> None:
        self._signal(self.opened)

    def _on_close(self) -> None:
        if not self.close_reason:
            self.close_reason = (
                "stopped by the bridge"
                if self._stopping
                else "the hub closed the connection (no SignalR Close message) or the network dropped it"
            )
        self._signal(self.closed)

    def _on_error(self, error: Any) -> None:
        reason = excerpt(str(getattr(error, "error", error)), 200, mask=False)
        self._to_trio(HubMessage("hub_error", "", None, "", reason))

    # ---- trio side ---------------------------------------------------------------------

    def _kill_socket(self) -> None:
        transport = getattr(self._connection, "transport", None)
        client = getattr(transport, "_client", None)
        sock = getattr(client, "sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    async def _blocking(self, fn: Callable[[], Any], timeout: float, what: str) -> Any:
        """Run a blocking signalrcore call in a thread; on timeout or cancel, unblock it
        by shutting its socket down. Never abandons the thread."""
        done = False
        timed_out = False

        async def watchdog() -> None:
            nonlocal timed_out
            try:
                await trio.sleep(timeout)
                timed_out = True
            finally:
                with trio.CancelScope(shield=True):
                    while not done:
                        self._kill_socket()
                        await trio.sleep(0.05)

        result: Any = None
        error: Exception | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watchdog)
            try:
                result = await trio.to_thread.run_sync(fn)
            except Exception as exc:  # raised below, outside the nursery (no ExceptionGroup)
                error = exc
            finally:
                done = True
                nursery.cancel_scope.cancel()
        if error is not None:
            if timed_out:
                raise HubConnectError(f"{what} timed out after {timeout:g}s") from error
            raise error
        return result

    async def connect(self, ws_url: str, headers: dict[str, str], timeout: float) -> None:
        """Open the WebSocket and complete the SignalR handshake, or raise HubConnectError."""
        builder = HubConnectionBuilder().with_url(
            ws_url,
            options={"skip_negotiation": True, "headers": dict(headers), "ssl_context": self.ssl_context},
        )
        builder.with_hub_protocol(TolerantJsonHubProtocol(self._on_bad, self._on_handshake_error))
        connection = builder.build()
        connection.on_message = self._on_messages
        connection.on_open(self._on_open)
        connection.on_close(self._on_close)
        connection.on_error(self._on_error)
        self._connection = connection
        try:
            start = partial(
                transport.start, connection, max_message_bytes=self.max_message_bytes, on_limit=self._on_limit
            )
            await self._blocking(start, timeout, "WebSocket upgrade")
        except HubConnectError:
            await self.close()
            raise
        except Exception as exc:
            await self.close()
            raise HubConnectError(f"WebSocket upgrade failed: {describe(exc)}") from exc
        client = getattr(connection.transport, "_client", None)
        self._recv_thread = getattr(client, "recv_thread", None)
        with trio.move_on_after(timeout):
            while not (self.opened.is_set() or self.closed.is_set()):
                if connection.transport is not None and connection.transport.is_disconnected():
                    # signalrcore reports no close for a connection that never opened.
                    self.close_reason = (
                        self.close_reason or "the hub closed the connection during the SignalR handshake"
                    )
                    self.closed.set()
                    break
                await trio.sleep(0.01)
        if not self.opened.is_set():
            reason = self.close_reason if self.closed.is_set() else f"no handshake answer in {timeout:g}s"
            await self.close()
            raise HubConnectError(f"SignalR handshake failed: {reason}")
        self.last_received = time.monotonic()

    def alive_problem(self, server_timeout: float) -> str | None:
        """Why this connection should be considered dead, or None while it looks alive."""
        if self.closed.is_set():
            return self.close_reason or "connection closed"
        transport = getattr(self._connection, "transport", None)
        if transport is None or not transport.is_connected():
            return "transport is not connected"
        if self._recv_thread is None or not self._recv_thread.is_alive():
            return "receive thread has stopped"
        if not self.blocked and time.monotonic() - self.last_received > server_timeout:
            return f"nothing received from the hub for {server_timeout:g}s (server timeout)"
        return None

    async def ping(self, timeout: float) -> None:
        """Send a SignalR Ping (type 6) so the hub does not time us out."""
        transport = getattr(self._connection, "transport", None)
        if transport is None:
            raise HubConnectError("no transport")
        try:
            await self._blocking(lambda: transport.send(PingMessage()), timeout, "ping")
        except Exception as exc:
            raise HubConnectError(f"ping failed: {describe(exc)}") from exc

    async def close(self) -> None:
        """Stop the connection and join its receive thread (safe to call twice)."""
        self._stopping = True
        connection = self._connection
        if connection is None:
            return
        thread = self._recv_thread
        if thread is None:
            client = getattr(connection.transport, "_client", None)
            thread = getattr(client, "recv_thread", None)

        def stop() -> None:
            self._kill_socket()
            try:
                connection.stop()
            except Exception:
                pass
            transport = getattr(connection, "transport", None)
            client = getattr(transport, "_client", None)
            sock = getattr(client, "sock", None)
            if sock is not None:
                try:
                    sock.close()
                except OSError:
                    pass
            if thread is not None and thread is not threading.current_thread():
                thread.join(10)

        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(stop)
        if thread is not None and thread.is_alive():
            self.log.error("anywherenow_thread_left_running", thread=thread.name)
