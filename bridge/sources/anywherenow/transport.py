"""signalrcore's WebSocket transport, with every read from the hub bounded.

signalrcore 1.0.2 (pinned: this module relies on its internals) ships its own WebSocket
client, which reads a frame of whatever length the header announces and joins
continuation frames without limit, and reads the HTTP upgrade answer until it ends. We
*patch around* it rather than replace it: :class:`BoundedWebSocketClient` subclasses
that client and overrides only the reading side (frame and message size capped at
``max_message_bytes``, the upgrade answer at 16 KiB, server Pings answered with Pongs),
and :func:`start` does what ``BaseHubConnection.start`` does but builds the transport
with that client. A frame over the limit is refused before its payload is read: the
client sends Close 1009 (message too big), the connection ends with a reason that says
so, and the source reconnects.
"""

from __future__ import annotations

import ssl
import struct
import threading
from collections.abc import Callable
from typing import Any

from signalrcore.transport.sockets.errors import NoHeaderException, SocketClosedError, SocketHandshakeError
from signalrcore.transport.websockets.websocket_client import WebSocketClient
from signalrcore.transport.websockets.websocket_transport import WebsocketTransport
from signalrcore.types import CRLF, CRLF_CRLF, DEFAULT_ENCODING

MAX_UPGRADE_ANSWER = 16 * 1024
CLOSE_TOO_BIG = 1009


class BoundedWebSocketClient(WebSocketClient):  # type: ignore[misc]
    def __init__(self, *, max_message_bytes: int, on_limit: Callable[[str], None], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_message_bytes = max_message_bytes
        self.on_limit = on_limit

    def connect(self) -> None:
        """The library's upgrade, with the answer's size bounded."""
        self.sock = self.create_socket()
        lines = self.get_socket_headers()
        lines.extend(f"{k}: {v}" for k, v in self.headers.items())
        self.sock.sendall((CRLF.join(lines) + CRLF_CRLF).encode(DEFAULT_ENCODING))
        response = b""
        end = CRLF_CRLF.encode(DEFAULT_ENCODING)
        while end not in response:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise SocketHandshakeError("Connection closed during handshake")
            response += chunk
            if len(response) > MAX_UPGRADE_ANSWER:
                raise SocketHandshakeError(f"upgrade answer longer than {MAX_UPGRADE_ANSWER} bytes")
        status = response.split(b"\r\n", 1)[0]
        if self.success_status_code not in status:
            raise SocketHandshakeError(f"Handshake failed: {status[:200].decode('latin-1')}")
        self.running = True
        self.recv_thread = threading.Thread(target=self.run, name=self.thread_name, daemon=True)
        self.recv_thread.start()

    def _recv_exactly(self, n: int) -> bytes:
        data = bytearray()
        while len(data) < n:
            chunk = self.sock.recv(min(n - len(data), 65536))
            if not chunk:
                raise SocketClosedError()
            data += chunk
        return bytes(data)

    def _refuse(self, size: int) -> None:
        reason = (
            f"the hub sent a message of {size} bytes, over max_message_bytes = {self.max_message_bytes}; "
            "it was not read"
        )
        self.on_limit(reason)
        try:
            self.send(struct.pack(">H", CLOSE_TOO_BIG), opcode=0x8)
        except Exception:
            pass
        # The library's receive loop treats exactly this type as "closed" (it compares
        # types, not isinstance): the link then closes with the reason set above.
        raise SocketClosedError(reason)

    def _read_one_frame(self) -> tuple[bool, int, bytes]:
        try:
            header = self._recv_exactly(2)
        except (ssl.SSLError, SocketClosedError):
            raise NoHeaderException() from None  # as the library does: a quiet close
        fin = (header[0] & 0x80) != 0
        opcode = header[0] & 0x0F
        if header[1] & 0x80:  # RFC 6455 5.1: a server must not mask
            raise SocketClosedError()
        length = header[1] & 0x7F
        if length == 126:
            length = struct.unpack(">H", self._recv_exactly(2))[0]
        elif length == 127:
            length = struct.unpack(">Q", self._recv_exactly(8))[0]
        if length > self.max_message_bytes:
            self._refuse(length)
        return fin, opcode, self._recv_exactly(length)

    def _recv_frame(self) -> Any:
        while True:
            fin, opcode, data = self._read_one_frame()
            if opcode == 0x8:
                raise SocketClosedError()
            if opcode == 0x9:  # Ping: answer, as RFC 6455 requires
                self.send(data, opcode=0xA)
                continue
            if opcode == 0xA:
                continue
            break
        payload = bytearray(data)
        while not fin:
            fin, opcode, data = self._read_one_frame()
            if opcode == 0x8:
                raise SocketClosedError()
            if opcode in (0x9, 0xA):
                if opcode == 0x9:
                    self.send(data, opcode=0xA)
                continue
            if len(payload) + len(data) > self.max_message_bytes:
                self._refuse(len(payload) + len(data))
            payload += data
        return self.prepare_data(bytes(payload))


class BoundedWebsocketTransport(WebsocketTransport):  # type: ignore[misc]
    def __init__(self, *, max_message_bytes: int, on_limit: Callable[[str], None], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_message_bytes = max_message_bytes
        self.on_limit = on_limit

    def create_client(self) -> BoundedWebSocketClient:
        return BoundedWebSocketClient(
            max_message_bytes=self.max_message_bytes,
            on_limit=self.on_limit,
            url=self.url,
            connection_id=self.connection_id,
            headers=self.headers,
            is_binary=False,
            ssl_context=self.ssl_context,
            enable_trace=self.enable_trace,
            on_message=self.on_message,
            on_error=self.on_socket_error,
            on_close=self.on_socket_close,
            on_open=self.on_socket_open,
        )


def start(connection: Any, *, max_message_bytes: int, on_limit: Callable[[str], None]) -> bool:
    """``BaseHubConnection.start`` (skip_negotiation, JSON protocol) with the bounded transport."""
    negotiate_response = connection._negotiate()
    connection.protocol = connection._selected_protocol
    connection.transport = BoundedWebsocketTransport(
        max_message_bytes=max_message_bytes,
        on_limit=on_limit,
        url=connection.url,
        protocol=connection.protocol,
        headers=connection.headers,
        token=connection.token,
        skip_negotiation=connection.skip_negotiation,
        connection_id=negotiate_response.get_id(),
        ssl_context=connection.ssl_context,
        proxies=connection.proxies,
        on_close=connection._callbacks.on_close,
        on_open=connection._callbacks.on_open,
        on_reconnect=connection._callbacks.on_reconnect,
        on_message=connection.on_message,
        **connection.kwargs,
    )
    result: bool = connection.transport.start()
    return result
