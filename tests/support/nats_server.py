"""A real ``nats-server`` with JetStream for tests, and asyncio helpers to read a stream.

The server runs on 127.0.0.1 with a free port and its own store directory; it can be
stopped and started again on the same port and store (restart tests). A missing binary
fails the test with the command that installs it: these tests are never skipped.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio

INSTALL_HINT = "nats-server is not installed: run scripts/setup-nats (apt-get install -y nats-server)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NatsServer:
    def __init__(self, store: Path, *, args: tuple[str, ...] = (), scheme: str = "nats") -> None:
        binary = shutil.which("nats-server")
        if binary is None:
            pytest.fail(INSTALL_HINT, pytrace=False)
        self.binary = binary
        self.store = store
        self.args = args
        self.scheme = scheme
        self.port = free_port()
        self.log = store.parent / f"{store.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.store.mkdir(parents=True, exist_ok=True)
        cmd = [
            self.binary,
            "-js",
            "-sd",
            str(self.store),
            "-a",
            "127.0.0.1",
            "-p",
            str(self.port),
            *self.args,
        ]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self.log.open("ab"))
        deadline = time.monotonic() + 15
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"nats-server exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            if b"Server is ready" in self.log.read_bytes().split(b"Starting nats-server")[-1]:
                return
            if time.monotonic() > deadline:
                pytest.fail(f"nats-server did not become ready: {self.log.read_text()[-2000:]}")
            time.sleep(0.02)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(15)
        self.proc = None


def running_server(tmp_path: Path, *args: str, scheme: str = "nats") -> Iterator[NatsServer]:
    """Body of a test module's ``nats_server`` fixture: started, and stopped afterwards."""
    server = NatsServer(tmp_path / "jetstream", args=args, scheme=scheme)
    server.start()
    try:
        yield server
    finally:
        server.stop()


# -- reading a stream back (asyncio in a worker thread) ------------------------------------
@dataclass
class StoredMessage:
    seq: int
    subject: str
    headers: dict[str, str]
    body: bytes


async def _read_stream(url: str, stream: str, options: dict[str, Any]) -> list[StoredMessage]:
    import nats
    from nats.js.errors import NotFoundError

    nc = await nats.connect(url, **options)
    try:
        js = nc.jetstream()
        try:
            info = await js.stream_info(stream)
        except NotFoundError:
            return []
        out = []
        if info.state.messages:
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                msg = await js.get_msg(stream, seq)
                out.append(StoredMessage(seq, msg.subject or "", dict(msg.headers or {}), msg.data or b""))
        return out
    finally:
        await nc.close()


async def read_stream(url: str, stream: str, **options: Any) -> list[StoredMessage]:
    """Every message in ``stream``, in stream order (from trio)."""
    return await trio.to_thread.run_sync(lambda: asyncio.run(_read_stream(url, stream, options)))


async def _stream_count(url: str, stream: str) -> int:
    import nats
    from nats.js.errors import NotFoundError

    nc = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=0, allow_reconnect=False)
    try:
        return (await nc.jetstream().stream_info(stream)).state.messages
    except NotFoundError:
        return 0
    finally:
        await nc.close()


async def stream_count(url: str, stream: str) -> int:
    """How many messages ``stream`` holds; -1 while the server is unreachable."""

    def count() -> int:
        try:
            return asyncio.run(_stream_count(url, stream))
        except Exception:
            return -1

    return await trio.to_thread.run_sync(count)
