"""The Uptivity / inContact WFO Event Proxy and API server, simulated.

Built from the vendor docs: accepts the ``EVENTS`` request (CRLF-terminated XML),
answers the documented ``RESULT`` and streams the documented ``CALLCOPYEVENT``
examples, all seven types, in call order. Like the real proxy it broadcasts: every
subscriber gets the same events, and events produced while nobody is subscribed are
gone (production waits for ``min_subscribers`` before it starts, so tests can count).
A connection whose first request is not ``EVENTS`` is an API connection: it answers
``TEST``, ``DEVICELIST``, ``DEVICESTATUS`` and ``DEVICERECORDINGSTATUS`` from the device
table (see :mod:`.devices`) for as long as the client stays connected.

``numbered`` makes every event identifiable for loss accounting: EVENTXREF carries the
event number, GLOBALCALLID the call number and DEVICEID one of ``devices`` extensions.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import structlog
import trio

from bridge.simulators.journal import Journal, tcp_bytes_acked
from bridge.simulators.uptivity import protocol
from bridge.simulators.uptivity.devices import DeviceTable
from bridge.simulators.uptivity.examples import EVENTS_RESULT, EXAMPLES

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
# What each event type does to the device it is about.
EVENT_STATES = {
    "RECORDINGSTARTED": "recording",
    "RECORDINGPAUSED": "paused",
    "RECORDINGRESUMED": "recording",
    "RECORDINGSTOPPED": "idle",
    "CALLSTOP": "idle",
}


def _replace(doc: bytes, tag: bytes, value: bytes) -> bytes:
    return re.sub(
        rb"<" + tag + rb">[^<]*</" + tag + rb">", b"<" + tag + b">" + value + b"</" + tag + b">", doc
    )


def numbered_event(number: int, devices: int = 1, group: str | None = None) -> bytes:
    """Event ``number`` (1-based) of an endless sequence of calls of seven events each.

    ``group`` goes into GROUP exactly as given, unescaped, as the real proxy sends it.
    """
    call, step = divmod(number - 1, len(CALL_ORDER))
    doc = EXAMPLES[CALL_ORDER[step]]
    doc = _replace(doc, b"EVENTXREF", str(number).encode())
    doc = _replace(doc, b"GLOBALCALLID", f"{call + 1:014d}".encode())
    if group is not None:
        doc = doc.replace(b"<GROUP></GROUP>", b"<GROUP>" + group.encode() + b"</GROUP>")
    return _replace(doc, b"DEVICEID", str(1111 + call % max(1, devices)).encode())


def event_device(number: int, devices: int = 1) -> tuple[str, str]:
    """(EVENTTYPE, DEVICEID) of numbered event ``number``."""
    call, step = divmod(number - 1, len(CALL_ORDER))
    return CALL_ORDER[step], str(1111 + call % max(1, devices))


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
    written_at: list[float] = field(default_factory=list)  # monotonic time each write completed
    offset: int = 0  # bytes handed to the kernel on this connection so far
    closed: bool = False


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
        group: str | None = None,
        zone: str = "UTC",
        status_result_code: int = 20,
        journal: Journal | None = None,
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
        self.group = group
        self.status_result_code = status_result_code
        self.table = DeviceTable(devices, zone=zone, group=group or "")
        self.api_connections = 0
        self.api_requests: list[tuple[str, str]] = []  # (TYPE, REQUESTID) of every API request
        self.subscribers: dict[int, Subscriber] = {}
        # Ground truth for loss accounting (bridge/simulators/journal.py): every event
        # produced ("emit"), every document fully written to a connection with the byte
        # offset of its end ("write"), and at each close how many bytes the peer's kernel
        # had acknowledged ("close").
        self.journal = journal if journal is not None else Journal()
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

    def writes(self) -> dict[int, list[tuple[int, float]]]:
        """Per connection: (event number, monotonic time its write completed), in order."""
        subs = [*self.finished, *self.subscribers.values()]
        return {s.id: list(zip(s.written, s.written_at, strict=True)) for s in subs}

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

    def set_device_state(self, device_id: str, state: str, **kwargs: Any) -> None:
        """Change a device's recording state silently: no event is sent for it."""
        self.table.set_state(device_id, state, silent=True, **kwargs)

    def api_requests_of(self, request_type: str) -> int:
        return sum(1 for t, _ in self.api_requests if t == request_type)

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
        if self.numbered:
            return numbered_event(number, self.devices, self.group)
        doc = documented_event(number)
        if self.group is not None:
            doc = doc.replace(b"<GROUP></GROUP>", b"<GROUP>" + self.group.encode() + b"</GROUP>")
        return doc

    def _track(self, number: int) -> None:
        """Move the device of event ``number`` as the event says (not silent)."""
        name, device = event_device(number, self.devices if self.numbered else 1)
        state = EVENT_STATES.get(name)
        if state is not None and self.table.get(device).state != state:
            filename = "C:\\Recordings\\20110131\\1111\\1111-14-39-50.au" if state != "idle" else None
            self.table.set_state(device, state, silent=False, filename=filename)

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
            self.journal.add("emit", n=number)
            self._track(number)
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
        buffer = bytearray()
        request = await self._read_request(stream, buffer)
        if request is None or protocol.field(request, "TYPE") not in (None, "EVENTS"):
            if request is not None:
                await self._api(stream, request, buffer)
            await stream.aclose()
            return
        self.connections += 1
        self.requests.append(request)
        request_id = re.search(rb"<REQUESTID>\s*([^<]*?)\s*</REQUESTID>", request)
        event_class = re.search(rb"<EVENTCLASS>\s*([^<]*?)\s*</EVENTCLASS>", request)
        result = _replace(EVENTS_RESULT, b"REQUESTID", request_id.group(1) if request_id else b"0")
        result = _replace(result, b"EVENTCLASS", event_class.group(1) if event_class else b"ALL")
        if self.result_code != 20:
            name = protocol.RESULT_NAMES.get(self.result_code, "API_ERROR_UNKNOWN").encode()
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
        sub = Subscriber(self._next_id, stream, send, offset=len(result) + 2)
        self.subscribers[sub.id] = sub
        self._notify()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._watch, sub, nursery.cancel_scope)
                await self._pump(sub, receive)
                self._detach(sub)  # at once: nothing more may be queued for it
                nursery.cancel_scope.cancel()
        finally:
            await self._close(sub)

    async def _watch(self, sub: Subscriber, scope: trio.CancelScope) -> None:
        """Notice a subscriber that hung up even while there is nothing to send it."""
        try:
            while await sub.stream.receive_some(4096):
                pass
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        scope.cancel()

    async def _read_request(self, stream: trio.SocketStream, buf: bytearray) -> bytes | None:
        """The next request on ``stream`` (bytes after it stay in ``buf``); None at EOF."""
        end = b"</REQUEST>"
        with trio.move_on_after(30):
            while end not in buf:
                chunk = await stream.receive_some(4096)
                if not chunk or len(buf) > 65536:
                    return None
                buf += chunk
            cut = buf.index(end) + len(end)
            while cut >= len(buf) - 1 and len(buf) < cut + 2:  # the CRLF may follow in the next read
                with trio.move_on_after(0.05):
                    chunk = await stream.receive_some(4096)
                    if not chunk:
                        break
                    buf += chunk
                    continue
                break
            if buf[cut : cut + 2] == b"\r\n":
                cut += 2  # the terminator the docs ask for is part of the request as sent
            request = bytes(buf[:cut])
            del buf[:cut]
            return request
        return None

    async def _api(self, stream: trio.SocketStream, request: bytes | None, buf: bytearray) -> None:
        """An API connection: answer each request until the client hangs up."""
        self.api_connections += 1
        while request is not None:
            await stream.send_all(self.answer(request))
            request = await self._read_request(stream, buf)

    def answer(self, request: bytes) -> bytes:
        """The RESULT for one status request, from the device table."""
        kind = (protocol.field(request, "TYPE") or "").upper()
        request_id = protocol.field(request, "REQUESTID") or "0"
        self.api_requests.append((kind, request_id))
        if kind == "TEST":
            return protocol.test_result(request_id)
        if kind not in ("DEVICELIST", "DEVICESTATUS", "DEVICERECORDINGSTATUS"):
            return protocol.error(kind, request_id, 10)
        if self.status_result_code != 20:
            return protocol.error(kind, request_id, self.status_result_code)
        if kind == "DEVICELIST":
            return protocol.device_list(kind, request_id, list(self.table.devices.values()))
        found = []
        for key in ("DEVICEID", "DEVICEALIAS", "CRM_USER", "SYS_USER"):
            value = protocol.field(request, key)
            if value:
                found = self.table.find(key, value)
                break
        if not found:
            return protocol.error(kind, request_id, 8)
        if kind == "DEVICESTATUS":
            return protocol.device_list(kind, request_id, found[:1], "Found the following matching devices")
        return protocol.recording_status(request_id, found)

    async def _pump(self, sub: Subscriber, receive: trio.MemoryReceiveChannel[tuple[int, bytes]]) -> None:
        async with receive:
            async for number, doc in receive:
                for piece in self._pieces(doc):
                    await sub.stream.send_all(piece)
                    sub.offset += len(piece)
                if number:
                    sub.written.append(number)
                    sub.written_at.append(time.monotonic())
                    self.journal.add("write", conn=sub.id, n=number, end=sub.offset)
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

    def _detach(self, sub: Subscriber) -> bool:
        """Stop broadcasting to ``sub`` (no checkpoint: the producer cannot slip in)."""
        if self.subscribers.pop(sub.id, None) is None:
            return False
        self.finished.append(sub)
        sub.send.close()
        self._notify()
        return True

    async def _close(self, sub: Subscriber) -> None:
        self._detach(sub)
        if not sub.closed:
            sub.closed = True
            self.journal.add("close", conn=sub.id, acked=tcp_bytes_acked(sub.stream.socket))
        with trio.CancelScope(shield=True):
            await sub.stream.aclose()
