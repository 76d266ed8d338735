"""A fast loopback webhook receiver for the benchmarks: a minimal h11 server on asyncio.

Every POST is answered ``204 No Content`` at once (keep-alive). For each request it
records the receipt time (``time.time()``), how many events the body carries (the
number of ``"specversion"`` members, i.e. a CloudEvents batch counts each event; any
other body counts as one) and every send stamp it finds (``USER15`` followed by a
float: the bench load generator stamps ``time.time()`` there, and it survives as
``"USER15":"<t>"`` in a CloudEvent's ``data.raw`` and as ``<USER15>t</USER15>`` in raw
XML; the copy in ``data.user_fields`` is not counted twice). The documented
RECORDINGSTOPPED and RECORDINGUPDATE examples have no USER fields, so latency is
sampled on the other five of every seven events (same code path).

Control (JSON): ``GET /stats`` returns what was recorded since the last ``POST /reset``.

    python bench/receiver.py --port 0      # prints "PORT <n>" on stdout once listening
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time

import h11

# The raw USER15 (right after USER14), not its copy in a CloudEvent's data.user_fields.
STAMP = re.compile(rb"USER14(?:\W|\\[rnt])+(?:USER14(?:\W|\\[rnt])+)?USER15\W{1,4}(\d{9,11}\.\d+)")


class Stats:
    """What the receiver saw since the last reset."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.requests = 0
        self.events = 0
        self.first: float | None = None
        self.last: float | None = None
        self.first_events = 0
        self.latencies: list[tuple[float, float]] = []  # (send stamp, receipt - stamp), seconds
        self.receipts: list[tuple[float, int]] = []  # (time, events) per request

    def record(self, body: bytes) -> None:
        now = time.time()
        n = body.count(b'"specversion"') or 1
        self.requests += 1
        self.events += n
        if self.first is None:
            self.first, self.first_events = now, n
        self.last = now
        self.receipts.append((now, n))
        for match in STAMP.finditer(body):
            stamp = float(match.group(1))
            self.latencies.append((stamp, now - stamp))

    def as_json(self) -> bytes:
        return json.dumps(
            {
                "requests": self.requests,
                "events": self.events,
                "first": self.first,
                "last": self.last,
                "first_events": self.first_events,
                "latencies": self.latencies,
                "receipts": self.receipts,
            }
        ).encode()


STATS = Stats()


class Http(asyncio.Protocol):
    """One keep-alive connection, parsed with h11."""

    def __init__(self) -> None:
        self.conn = h11.Connection(h11.SERVER)
        self.transport: asyncio.Transport | None = None
        self.body: list[bytes] = []
        self.target = b""
        self.method = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.conn.receive_data(data)
        self._drain()

    def eof_received(self) -> bool:
        self.conn.receive_data(b"")
        self._drain()
        return False

    def _drain(self) -> None:
        assert self.transport is not None
        while True:
            try:
                event = self.conn.next_event()
            except h11.RemoteProtocolError:
                self.transport.close()
                return
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.Request):
                self.method, self.target, self.body = event.method, event.target, []
            elif isinstance(event, h11.Data):
                self.body.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                self._respond(b"".join(self.body))
                if self.conn.our_state is h11.MUST_CLOSE:
                    self.transport.close()
                    return
                self.conn.start_next_cycle()
            elif isinstance(event, h11.ConnectionClosed):
                self.transport.close()
                return

    def _respond(self, body: bytes) -> None:
        assert self.transport is not None
        if self.method == b"GET" and self.target == b"/stats":
            payload = STATS.as_json()
            headers = [("content-type", "application/json"), ("content-length", str(len(payload)))]
            out = self.conn.send(h11.Response(status_code=200, headers=headers))
            out = (out or b"") + (self.conn.send(h11.Data(data=payload)) or b"")
        else:
            if self.method == b"POST" and self.target == b"/reset":
                STATS.reset()
            elif self.method == b"POST":
                STATS.record(body)
            out = self.conn.send(h11.Response(status_code=204, headers=[]))
        out = (out or b"") + (self.conn.send(h11.EndOfMessage()) or b"")
        self.transport.write(out)


async def main(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Http, "127.0.0.1", port, backlog=1024)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    try:
        asyncio.run(main(parser.parse_args().port))
    except KeyboardInterrupt:
        sys.exit(0)
