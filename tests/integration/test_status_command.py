"""``event-bridge status`` as a real process: from the admin listener (with its token), with
--watch, and from the outbox file when no bridge answers."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from bridge import admin, logs
from bridge.asgi import serve_asgi
from bridge.config import load
from bridge.service import Bridge
from tests.integration.operators import free_port, start_simulators, three_vendor_config
from tests.support.helpers import wait_for
from tests.support.receivers import Receiver

TOKEN = "status-command-admin-token-42"


def status(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", "status", "--config", str(path), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.slow
async def test_status_from_the_listener_then_from_the_outbox(tmp_path: Path, nursery: trio.Nursery) -> None:
    async def refuse(receiver: Receiver, headers: dict[str, str], body: bytes) -> int:
        return 503  # retried: the backlog grows

    receiver = Receiver(refuse)
    hook = await nursery.start(serve_asgi, receiver.app)
    path = three_vendor_config(
        tmp_path, hooks={"crm": hook}, admin_port=free_port(), admin_extra=f'token = "{TOKEN}"'
    )
    config = load(path)
    await start_simulators(nursery, config)
    logs.redactor.update(config.secrets.values)
    bridge = Bridge(config, shutdown_grace=0.2)
    admin.attach(bridge)
    async with trio.open_nursery() as inner:
        await inner.start(bridge.run)
        await wait_for(lambda: all(s.health.ready for s in bridge.sources.values()), timeout=30)
        await wait_for(lambda: len(receiver.requests) >= 3, timeout=30)
        await wait_for(
            lambda: bridge.admin.cache.stats.get("deliveries", {}).get("crm", {}).get("pending"), 30
        )

        proc = await trio.to_thread.run_sync(status, path)
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
        assert config.admin.listen in lines[0] and "outbox: writable" in lines[1]
        for name in ("uptivity", "anywherenow", "encore"):
            row = next(line for line in lines if line.startswith(name + " "))
            assert "connected" in row or "polling" in row
        sink = next(line for line in lines if line.startswith("crm "))
        assert int(sink.split()[2]) > 0  # the backlog column

        as_json = json.loads((await trio.to_thread.run_sync(status, path, "--json")).stdout)
        assert {s["name"] for s in as_json["sources"]} == {"uptivity", "anywherenow", "encore"}

        def watch() -> str:
            proc = subprocess.Popen(
                [sys.executable, "-m", "bridge", "status", "--config", str(path), "--watch", "0.3"],
                stdout=subprocess.PIPE,
                text=True,
            )
            try:
                proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGINT)
            out, _ = proc.communicate(timeout=30)
            assert proc.returncode == 0
            return out

        frames = (await trio.to_thread.run_sync(watch)).count("event-bridge status ")
        assert frames >= 3
        bridge.request_stop()

    # No bridge running: the outbox still tells the backlog.
    proc = await trio.to_thread.run_sync(status, path)
    assert proc.returncode == 0, proc.stderr
    assert "bridge not answering" in proc.stdout and "sources: unknown" in proc.stdout
    sink = next(line for line in proc.stdout.splitlines() if line.startswith("crm "))
    assert int(sink.split()[2]) > 0


def test_status_with_a_wrong_token_says_so(tmp_path: Path) -> None:
    """A listener answering 401 is reported in one line, not mistaken for a stopped bridge."""
    from http.server import BaseHTTPRequestHandler, HTTPServer
    from threading import Thread

    class Refuse(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(401)
            self.end_headers()
            self.wfile.write(b"bearer token required\x1b[2J")

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Refuse)
    Thread(target=server.serve_forever, daemon=True).start()
    try:
        path = three_vendor_config(tmp_path, hooks={}, admin_port=server.server_address[1])
        path.write_text(
            path.read_text().replace(
                "[[sources.uptivity]]", '[[sinks.log]]\nname = "l"\nstdout = true\n\n[[sources.uptivity]]'
            )
        )
        proc = status(path)
    finally:
        server.shutdown()
    assert proc.returncode == 1
    assert "answered 401" in proc.stderr and "\x1b" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
