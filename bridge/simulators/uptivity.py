"""Uptivity / inContact WFO Event Proxy simulator (``event-bridge simulate uptivity``).

Built from the vendor docs: accepts the ``EVENTS`` request (CRLF-terminated XML),
answers the documented ``RESULT`` and streams the documented ``CALLCOPYEVENT``
examples, all seven types, in call order. Like the real proxy it broadcasts: every
subscriber gets the same events, and events produced while nobody is subscribed are
gone (production waits for ``min_subscribers`` before it starts, so tests can count).

``numbered`` makes every event identifiable for loss accounting: EVENTXREF carries the
event number, GLOBALCALLID the call number and DEVICEID one of ``devices`` extensions.
"""

from __future__ import annotations

import argparse
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import structlog
import trio

from bridge.simulators.uptivity_examples import EVENTS_RESULT, EXAMPLES

log = structlog.get_logger("bridge.simulators.uptivity")

CALL_ORDER = (
    "CALLSTART",
    "RECORDINGSTARTED",
    "RECORDINGPAUSED",
    "RECORDINGRESUMED",
    "RECORDINGSTOPPED",
    "RECORDINGUPDATE",
    "CALLSTOP",
)
SEPARATORS = {"crlf": b"\r\n", "lf": b"\n", "none": b""}
RESULT_TYPES = {
    20: "API_OK",
    30: "API_EVENT_TYPE_INVALID",
    48: "API_TOO_MANY_CLIENTS",
    16: "API_INVALID_MESSAGE_FORMAT",
}


def _replace(doc: bytes, tag: bytes, value: bytes) -> bytes:
    return re.sub(
        rb"<" + tag + rb">[^<]*</" + tag + rb">", b"<" + tag + b">" + value + b"</" + tag + b">", doc
    )


def numbered_event(number: int, devices: int = 1) -> bytes:
    """Event ``number`` (1-based) of an endless sequence of calls of seven events each."""
    call, step = divmod(number - 1, len(CALL_ORDER))
    doc = EXAMPLES[CALL_ORDER[step]]
    doc = _replace(doc, b"EVENTXREF", str(number).encode())
    doc = _replace(doc, b"GLOBALCALLID", f"{call + 1:014d}".encode())
    return _replace(doc, b"DEVICEID", str(1111 + call % max(1, devices)).encode())


def documented_event(number: int) -> bytes:
    return EXAMPLES[CALL_ORDER[(number - 1) % len(CALL_ORDER)]]


def event_number(doc: bytes) -> int | None:
    """The EVENTXREF of a numbered event (what tests use to account for every event)."""
    match = re.search(rb"<EVENTXREF>\s*(\d+)\s*</EVENTXREF>", doc)
    return int(match.group(1)) if match else None


@dataclass
class Subscriber:
    id: int
    stream: trio.SocketStream
    send: trio.MemorySendChannel[tuple[int, bytes]]
    written: list[int] = field(default_factory=list)  # event numbers fully handed to the kernel


class UptivitySimulator:
    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        rate: float = 10.0,
        count: int | None = None,
        numbered: bool = False,
        devices: int = 1,
        split: bool = False,
        drop_after: int | None = None,
        separator: str = "crlf",
        result_code: int = 20,
        min_subscribers: int = 1,
        queue_size: int = 100_000,
        seed: int | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.rate = rate
        self.count = count
        self.numbered = numbered
        self.devices = devices
        self.split = split
        self.drop_after = drop_after
        self.separator = SEPARATORS[separator]
        self.result_code = result_code
        self.min_subscribers = min_subscribers
        self.queue_size = queue_size
        self.rng = random.Random(seed)
        self.subscribers: dict[int, Subscriber] = {}
        self.finished: list[Subscriber] = []
        self.produced = 0
        self.requests: list[bytes] = []
        self.connections = 0
        self._changed = trio.Event()
        self._next_id = 0
        self._paused = False

    # -- scripting API ----------------------------------------------------
    def written(self) -> dict[int, list[int]]:
        """Per connection: the event numbers written to it, in order."""
        out = {s.id: list(s.written) for s in self.finished}
        out.update({s.id: list(s.written) for s in self.subscribers.values()})
        return out

    def all_written(self) -> list[int]:
        return sorted({n for nums in self.written().values() for n in nums})

    async def wait_subscribers(self, n: int = 1) -> None:
        while len(self.subscribers) < n:
            await self._wait_change()

    async def wait_produced(self, n: int) -> None:
        while self.produced < n:
            await self._wait_change()

    async def drop_connections(self) -> None:
        """Close every subscriber connection abruptly (mid-stream)."""
        for sub in list(self.subscribers.values()):
            await self._close(sub)

    async def inject(self, raw: bytes) -> None:
        """Send arbitrary bytes to every subscriber (hostile-input tests)."""
        for sub in list(self.subscribers.values()):
            await sub.send.send((0, raw))

    def _idle(self) -> bool:
        done = self.count is not None and self.produced >= self.count
        return done or self._paused or len(self.subscribers) < self.min_subscribers

    def pause(self, paused: bool = True) -> None:
        self._paused = paused
        self._notify()

    # -- internals -----------------------------------------------------------
    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def _wait_change(self) -> None:
        await self._changed.wait()

    def document(self, number: int) -> bytes:
        return numbered_event(number, self.devices) if self.numbered else documented_event(number)

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(self.port, host=self.host)
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._produce)
            task_status.started(self.port)
            await trio.serve_listeners(self._handle, listeners, handler_nursery=nursery)

    async def _produce(self) -> None:
        interval = 1.0 / self.rate if self.rate > 0 else 0.0
        next_at = trio.current_time()
        while True:
            while self._idle():
                await self._wait_change()
                next_at = trio.current_time()
            number = self.produced + 1
            doc = self.document(number) + self.separator
            for sub in list(self.subscribers.values()):
                try:
                    sub.send.send_nowait((number, doc))
                except trio.WouldBlock:
                    log.warning("simulator_subscriber_too_slow", connection=sub.id)
                    await self._close(sub)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
            self.produced = number
            self._notify()
            if interval:
                next_at += interval
                await trio.sleep_until(next_at)
            elif number % 64 == 0:
                await trio.sleep(0)

    async def _handle(self, stream: trio.SocketStream) -> None:
        """One subscriber; a peer that vanishes (reset, kill -9) just ends its connection."""
        try:
            await self._subscribe(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async def _subscribe(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        request = await self._read_request(stream)
        if request is None:
            await stream.aclose()
            return
        self.requests.append(request)
        request_id = re.search(rb"<REQUESTID>\s*([^<]*?)\s*</REQUESTID>", request)
        event_class = re.search(rb"<EVENTCLASS>\s*([^<]*?)\s*</EVENTCLASS>", request)
        result = _replace(EVENTS_RESULT, b"REQUESTID", request_id.group(1) if request_id else b"0")
        result = _replace(result, b"EVENTCLASS", event_class.group(1) if event_class else b"ALL")
        if self.result_code != 20:
            name = RESULT_TYPES.get(self.result_code, "API_ERROR_UNKNOWN").encode()
            result = _replace(result, b"RESULTTYPE", b"ERROR")
            result = _replace(result, b"RESULTCODE", str(self.result_code).encode())
            result = _replace(result, b"RESULTMSG", b" " + name)
            try:
                await stream.send_all(result + b"\r\n")
            finally:
                await stream.aclose()
            return
        await stream.send_all(result + b"\r\n")
        send, receive = trio.open_memory_channel[tuple[int, bytes]](self.queue_size)
        self._next_id += 1
        sub = Subscriber(self._next_id, stream, send)
        self.subscribers[sub.id] = sub
        self._notify()
        try:
            await self._pump(sub, receive)
        finally:
            await self._close(sub)

    async def _read_request(self, stream: trio.SocketStream) -> bytes | None:
        buf = b""
        with trio.move_on_after(30):
            while b"</REQUEST>" not in buf:
                chunk = await stream.receive_some(4096)
                if not chunk or len(buf) > 65536:
                    return None
                buf += chunk
            return buf
        return None

    async def _pump(self, sub: Subscriber, receive: trio.MemoryReceiveChannel[tuple[int, bytes]]) -> None:
        async with receive:
            async for number, doc in receive:
                for piece in self._pieces(doc):
                    await sub.stream.send_all(piece)
                if number:
                    sub.written.append(number)
                    if self.drop_after and len(sub.written) >= self.drop_after:
                        return

    def _pieces(self, doc: bytes) -> Iterator[bytes]:
        if not self.split:
            yield doc
            return
        pos = 0
        while pos < len(doc):
            size = self.rng.randint(1, 64)
            yield doc[pos : pos + size]
            pos += size

    async def _close(self, sub: Subscriber) -> None:
        if self.subscribers.pop(sub.id, None) is None:
            return
        self.finished.append(sub)
        sub.send.close()
        with trio.CancelScope(shield=True):
            await sub.stream.aclose()
        self._notify()


def for_source(source: Any) -> UptivitySimulator:
    """A demo simulator listening where ``source`` (an UptivitySource) connects."""
    return UptivitySimulator(host=source.host, port=source.port, rate=2.0)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=5620, help="TCP port (default 5620, 0 = any free port)")
    parser.add_argument("--rate", type=float, default=2.0, help="events per second (0 = as fast as possible)")
    parser.add_argument("--count", type=int, default=None, help="stop producing after this many events")
    parser.add_argument(
        "--numbered", action="store_true", help="number events (EVENTXREF) and vary calls/devices"
    )
    parser.add_argument("--devices", type=int, default=1, help="with --numbered: spread calls over N devices")
    parser.add_argument(
        "--split", action="store_true", help="split every document into random small TCP writes"
    )
    parser.add_argument("--drop-after", type=int, default=None, help="drop each connection after N events")
    parser.add_argument(
        "--separator", choices=sorted(SEPARATORS), default="crlf", help="bytes between documents"
    )
    parser.add_argument(
        "--result-code", type=int, default=20, help="RESULTCODE to answer EVENTS with (20 = API_OK)"
    )
    parser.add_argument(
        "--min-subscribers", type=int, default=1, help="wait for N subscribers before producing"
    )


async def main(args: argparse.Namespace) -> None:
    sim = UptivitySimulator(
        host=args.host,
        port=args.port,
        rate=args.rate,
        count=args.count,
        numbered=args.numbered,
        devices=args.devices,
        split=args.split,
        drop_after=args.drop_after,
        separator=args.separator,
        result_code=args.result_code,
        min_subscribers=args.min_subscribers,
    )
    async with trio.open_nursery() as nursery:
        port = await nursery.start(sim.serve)
        log.info("uptivity_simulator_listening", host=args.host, port=port, rate=args.rate, count=args.count)
