"""A simulator's journal: the ground truth that loss accounting counts against.

Every simulator appends what it did to its journal: each event it emitted or state change
it made (with a sequence number and a monotonic timestamp), each observation it answered
(a poll, a REST answer), and for each subscriber connection what it wrote and when the
write completed, and how many bytes the peer's kernel had acknowledged when it closed.
Tests (``tests/support/accounting.py``) read only journals (this one and the receivers'),
never the bridge's own bookkeeping. ``event-bridge simulate <vendor> --journal FILE``
writes it as JSON Lines as well.

This module is vendor-neutral and imports nothing from ``bridge.sources``.
"""

from __future__ import annotations

import json
import socket
import struct
import time
from collections import deque
from pathlib import Path
from typing import IO, Any, Protocol

__all__ = ["Journal", "tcp_bytes_acked"]


class Journal:
    """Append-only, in memory (the newest ``limit`` entries) and optionally on disk.

    A long-running simulator (a demo) must not grow without bound, so memory keeps at most
    ``limit`` entries and counts what it let go in ``dropped``; an account over a journal
    that dropped entries is refused (it could not prove anything about them).
    """

    def __init__(self, path: Path | str | None = None, *, limit: int = 500_000) -> None:
        self.entries: deque[dict[str, Any]] = deque(maxlen=limit)
        self.dropped = 0
        self._seq = 0
        self._file: IO[str] | None = open(path, "a", encoding="utf-8") if path else None  # noqa: SIM115

    def add(self, kind: str, **fields: Any) -> dict[str, Any]:
        self._seq += 1
        entry = {"seq": self._seq, "t": time.monotonic(), "kind": kind, **fields}
        if len(self.entries) == self.entries.maxlen:
            self.dropped += 1
        self.entries.append(entry)
        if self._file is not None:
            self._file.write(json.dumps(entry, default=str) + "\n")
            self._file.flush()
        return entry

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.entries if e["kind"] == kind]

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


# struct tcp_info (linux/tcp.h) up to tcpi_bytes_acked: 8 one-byte fields, then 24
# 32-bit fields, then tcpi_pacing_rate, tcpi_max_pacing_rate, tcpi_bytes_acked (64-bit).
_TCP_INFO = struct.Struct("=8B24I3Q")


class _HasSockopt(Protocol):
    def getsockopt(self, level: int, optname: int, buflen: int, /) -> bytes: ...


def tcp_bytes_acked(sock: _HasSockopt) -> int | None:
    """Bytes of this connection the peer's kernel has acknowledged (Linux TCP_INFO).

    What the peer's kernel acknowledged reached the peer's machine; what was written past
    it was still in transit when the connection died. None where the kernel cannot say.
    """
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    except (OSError, AttributeError):
        return None
    if len(raw) < _TCP_INFO.size:
        return None
    acked: int = _TCP_INFO.unpack_from(raw)[-1]
    return acked
