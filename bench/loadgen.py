"""Bench-only Uptivity Event Proxy that stamps each event with its send time.

Speaks the same protocol as ``event-bridge simulate uptivity`` (answers the CRLF
terminated ``EVENTS`` request with the documented ``RESULT``, then streams the
documented ``CALLCOPYEVENT`` examples in call order, numbered like ``--numbered``), but
puts ``time.time()`` at the moment of the ``send`` into ``<USER15>`` so a receiver can
measure send -> receipt latency. Events are paced on a 1 ms tick (all events due in a
tick go out in one write); ``--rate 0`` sends as fast as the socket takes them.

    python bench/loadgen.py --port 0 --rate 1000 --count 10000 --devices 100
    # prints "PORT <n>" once listening, "DONE <sent> <seconds>" after the last event
"""

from __future__ import annotations

import argparse
import re
import socket
import sys
import time

from bridge.simulators.uptivity import CALL_ORDER, _replace
from bridge.simulators.uptivity.examples import EVENTS_RESULT, EXAMPLES

_MARKS = {b"EVENTXREF": b"\x01", b"GLOBALCALLID": b"\x02", b"DEVICEID": b"\x03", b"USER15": b"\x04"}


def templates() -> list[list[bytes]]:
    """Per call step: the document split into literal parts and one-byte placeholders."""
    out = []
    for name in CALL_ORDER:
        doc = EXAMPLES[name]
        for tag, mark in _MARKS.items():
            doc = _replace(doc, tag, mark)
        out.append(re.split(rb"([\x01-\x04])", doc + b"\r\n"))
    return out


TEMPLATES = templates()


def event(number: int, devices: int, stamp: bytes) -> bytes:
    """Event ``number`` (1-based), as ``numbered_event`` makes it, with USER15 = stamp."""
    call, step = divmod(number - 1, len(CALL_ORDER))
    values = {
        b"\x01": str(number).encode(),
        b"\x02": f"{call + 1:014d}".encode(),
        b"\x03": str(1111 + call % max(1, devices)).encode(),
        b"\x04": stamp,
    }
    return b"".join(values.get(part, part) for part in TEMPLATES[step])


def read_request(conn: socket.socket) -> bytes:
    buf = b""
    while b"</REQUEST>" not in buf:
        chunk = conn.recv(4096)
        if not chunk:
            raise ConnectionError("closed before the EVENTS request")
        buf += chunk
    return buf


def stream(conn: socket.socket, args: argparse.Namespace, start_number: int) -> int:
    """Send events until ``count``; returns the next event number."""
    number = start_number
    t0 = time.perf_counter()
    sent0 = number
    while args.count is None or number <= args.count:
        if args.rate > 0:
            due = sent0 + int((time.perf_counter() - t0) * args.rate) - number + 1
            if due <= 0:
                time.sleep(0.001)
                continue
        else:
            due = 64
        if args.count is not None:
            due = min(due, args.count - number + 1)
        stamp = f"{time.time():.6f}".encode()
        conn.sendall(b"".join(event(number + i, args.devices, stamp) for i in range(due)))
        number += due
    print(f"DONE {number - sent0} {time.perf_counter() - t0:.3f}", flush=True)
    return number


def serve(args: argparse.Namespace) -> None:
    listener = socket.create_server(("127.0.0.1", args.port))
    print(f"PORT {listener.getsockname()[1]}", flush=True)
    number = 1
    while True:
        conn, _ = listener.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            request = read_request(conn)
            request_id = re.search(rb"<REQUESTID>\s*([^<]*?)\s*</REQUESTID>", request)
            result = _replace(EVENTS_RESULT, b"REQUESTID", request_id.group(1) if request_id else b"0")
            conn.sendall(result + b"\r\n")
            if args.start_delay:
                time.sleep(args.start_delay)
            number = stream(conn, args, number)
            while conn.recv(4096):  # hold the connection open until the peer goes
                pass
        except OSError as exc:
            print(f"connection ended: {exc}", file=sys.stderr, flush=True)
        finally:
            conn.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--rate", type=float, default=1000.0, help="events/s (0 = as fast as possible)")
    parser.add_argument("--count", type=int, default=None)
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--start-delay", type=float, default=0.0, help="seconds between RESULT and events")
    try:
        serve(parser.parse_args())
    except KeyboardInterrupt:
        pass
