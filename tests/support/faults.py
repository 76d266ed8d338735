"""A fault-injecting TCP proxy for loopback tests.

Sits between the bridge and a vendor simulator and, on command, misbehaves the way
networks do: resets connections (RST), goes silent without closing (a half-open peer
or a stalled server), drips bytes one at a time, or refuses new connections.
"""

from __future__ import annotations

import socket
import struct

import trio


class FaultProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.mode = "pass"  # pass | stall | drip | refuse
        self.drip_delay = 0.001
        self.connections = 0
        self.forwarded = 0
        self._streams: list[tuple[trio.SocketStream, trio.SocketStream]] = []
        self._listeners: list[trio.SocketListener] = []

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(self.port, host="127.0.0.1")
        self._listeners = listeners
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started(self.port)
        await trio.serve_listeners(self._handle, listeners)

    async def reset_all(self) -> None:
        """Abort every proxied connection with a TCP RST (SO_LINGER 0)."""
        for client, upstream in self._streams:
            for stream in (client, upstream):
                stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                await stream.aclose()
        self._streams.clear()

    async def _handle(self, client: trio.SocketStream) -> None:
        self.connections += 1
        if self.mode == "refuse":
            await client.aclose()
            return
        try:
            upstream = await trio.open_tcp_stream(*self.target)
        except OSError:
            await client.aclose()
            return
        pair = (client, upstream)
        self._streams.append(pair)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._pump, client, upstream, nursery)
                nursery.start_soon(self._pump, upstream, client, nursery)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            if pair in self._streams:
                self._streams.remove(pair)
            for stream in pair:
                with trio.CancelScope(shield=True):
                    await stream.aclose()

    async def _pump(self, source: trio.SocketStream, dest: trio.SocketStream, nursery: trio.Nursery) -> None:
        try:
            while True:
                data = await source.receive_some(65536)
                if not data:
                    break
                while self.mode == "stall":
                    await trio.sleep(0.01)  # hold the bytes: the peer sees silence, no FIN
                if self.mode == "drip":
                    for i in range(len(data)):
                        await dest.send_all(data[i : i + 1])
                        await trio.sleep(self.drip_delay)
                else:
                    await dest.send_all(data)
                self.forwarded += len(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        nursery.cancel_scope.cancel()
