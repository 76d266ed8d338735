"""The bridge as a system daemon: sd_notify, watchdog, signals, reload, admin HTTP, tail, unit file."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from bridge.asgi import serve_asgi
from bridge.simulators.uptivity import UptivitySimulator
from tests.support.helpers import wait_for
from tests.support.receivers import Receiver

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def daemon_config(tmp_path: Path, *, sources: dict[str, int], hooks: dict[str, int], admin_port: int) -> str:
    text = f"""
[bridge]
state_dir = "{tmp_path / "state"}"

[admin]
listen = "127.0.0.1:{admin_port}"
"""
    for name, port in sources.items():
        text += f"""
[[sources.uptivity]]
name = "{name}"
host = "127.0.0.1"
port = {port}
reconnect_min = 0.02
reconnect_max = 0.1
"""
    for name, port in hooks.items():
        text += f"""
[[sinks.webhook]]
name = "{name}"
url = "http://127.0.0.1:{port}/"
secrets = ["{SECRET}"]
retry_schedule = [0.05, 0.1, 0.2]
"""
    return text


class Daemon:
    """`event-bridge run` as a real subprocess."""

    def __init__(self, tmp_path: Path, config_text: str, env: dict[str, str] | None = None) -> None:
        self.config = tmp_path / "bridge.toml"
        self.config.write_text(config_text)
        self.log = tmp_path / "bridge.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bridge", "run", "--config", str(self.config), "--shutdown-grace", "10"],
            stdout=subprocess.DEVNULL,
            stderr=self.log.open("ab"),
            env={**os.environ, **(env or {})},
        )

    def records(self) -> list[dict]:
        out = []
        for line in self.log.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                pass
        return out

    def logged(self, event: str) -> list[dict]:
        return [r for r in self.records() if r.get("event") == event]

    async def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return await trio.to_thread.run_sync(self.proc.wait)


class NotifyListener:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.messages: list[str] = []

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        await self.sock.bind(str(self.path))
        task_status.started()
        while True:
            data = await self.sock.recv(4096)
            self.messages.extend(data.decode().split("\n"))

    def count(self, prefix: str) -> int:
        return sum(1 for m in self.messages if m.startswith(prefix))


@pytest.mark.slow
async def test_sd_notify_ready_status_watchdog_and_stopping(tmp_path: Path, nursery) -> None:
    sim = UptivitySimulator(rate=50, numbered=True)
    sim_port = await nursery.start(sim.serve)
    receiver = Receiver()
    hook_port = await nursery.start(serve_asgi, receiver.app)
    listener = NotifyListener(tmp_path / "notify.sock")
    await nursery.start(listener.run)
    daemon = Daemon(
        tmp_path,
        daemon_config(tmp_path, sources={"up": sim_port}, hooks={"hook": hook_port}, admin_port=free_port()),
        env={"NOTIFY_SOCKET": str(listener.path), "WATCHDOG_USEC": "200000"},
    )
    try:
        await wait_for(lambda: listener.count("READY=1"), timeout=30)
        await wait_for(lambda: listener.count("WATCHDOG=1") >= 3)
        await wait_for(
            lambda: any("up: connected" in m for m in listener.messages if m.startswith("STATUS="))
        )
    finally:
        assert await daemon.stop() == 0
    assert listener.count("STOPPING=1") == 1
    ready_at = next(i for i, m in enumerate(listener.messages) if m == "READY=1")
    assert ready_at < next(i for i, m in enumerate(listener.messages) if m == "WATCHDOG=1")


async def test_a_stalled_event_loop_stops_the_watchdog_pings(tmp_path: Path, nursery) -> None:
    sim = UptivitySimulator(rate=5)
    sim_port = await nursery.start(sim.serve)
    listener = NotifyListener(tmp_path / "notify.sock")
    await nursery.start(listener.run)
    daemon = Daemon(
        tmp_path,
        daemon_config(tmp_path, sources={"up": sim_port}, hooks={}, admin_port=free_port()).replace(
            "\n[admin]",
            '\n[[sinks.log]]\nname = "log"\npath = "' + str(tmp_path / "e.jsonl") + '"\n\n[admin]',
        ),
        env={"NOTIFY_SOCKET": str(listener.path), "WATCHDOG_USEC": "100000", "EVENT_BRIDGE_TEST_HOOKS": "1"},
    )
    try:
        await wait_for(lambda: listener.count("WATCHDOG=1") >= 3, timeout=30)
        daemon.proc.send_signal(signal.SIGUSR2)  # test hook: block the trio loop
        await wait_for(lambda: daemon.logged("test_hook_stalling_event_loop"))
        await trio.sleep(0.2)
        before = listener.count("WATCHDOG=1")
        await trio.sleep(1.0)  # ten watchdog intervals
        assert listener.count("WATCHDOG=1") == before
    finally:
        await daemon.stop(signal.SIGKILL)


async def test_sigterm_during_a_burst_delivers_everything_and_exits_0(tmp_path: Path, nursery) -> None:
    async def slowish(receiver: Receiver, headers: dict, body: bytes) -> int:
        await trio.sleep(0.01)
        return 204

    sim = UptivitySimulator(rate=300, numbered=True, devices=8)
    sim_port = await nursery.start(sim.serve)
    receiver = Receiver(slowish)
    hook_port = await nursery.start(serve_asgi, receiver.app)
    daemon = Daemon(
        tmp_path,
        daemon_config(tmp_path, sources={"up": sim_port}, hooks={"hook": hook_port}, admin_port=free_port()),
    )
    await wait_for(lambda: len(receiver.requests) >= 50, timeout=30)
    assert await daemon.stop() == 0
    import sqlite3

    with sqlite3.connect(tmp_path / "state" / "outbox.sqlite3") as db:
        committed = [json.loads(b)["id"] for (b,) in db.execute("SELECT body FROM events ORDER BY seq")]
        pending = db.execute("SELECT count(*) FROM deliveries WHERE state=0").fetchone()[0]
    assert pending == 0, daemon.log.read_text()[-3000:]
    assert set(committed) == set(receiver.delivered_ids())
    assert len(committed) > 50
    stopped = daemon.logged("bridge_stopped")
    assert stopped and stopped[0]["committed"] == len(committed)


async def test_sighup_adds_a_sink_and_removes_a_source_live_and_rejects_a_broken_config(
    tmp_path: Path, nursery
) -> None:
    sim_a = UptivitySimulator(rate=100, numbered=True)
    sim_b = UptivitySimulator(rate=100, numbered=True)
    port_a = await nursery.start(sim_a.serve)
    port_b = await nursery.start(sim_b.serve)
    first, second = Receiver(), Receiver()
    hook1 = await nursery.start(serve_asgi, first.app)
    hook2 = await nursery.start(serve_asgi, second.app)
    admin = free_port()
    daemon = Daemon(
        tmp_path,
        daemon_config(tmp_path, sources={"a": port_a, "b": port_b}, hooks={"one": hook1}, admin_port=admin),
    )
    try:
        await wait_for(lambda: sim_a.subscribers and sim_b.subscribers, timeout=30)
        connections_a = sim_a.connections
        daemon.config.write_text(
            daemon_config(
                tmp_path, sources={"a": port_a}, hooks={"one": hook1, "two": hook2}, admin_port=admin
            )
        )
        daemon.proc.send_signal(signal.SIGHUP)
        await wait_for(lambda: daemon.logged("config_reloaded"))
        await wait_for(lambda: not sim_b.subscribers)  # source b removed: its connection closed
        await wait_for(lambda: len(second.requests) >= 5)  # sink two added
        assert sim_a.connections == connections_a  # source a untouched, never reconnected
        reloaded = daemon.logged("config_reloaded")[0]
        assert reloaded["added"] == ["sink:two"] and reloaded["removed"] == ["source:b"]

        daemon.config.write_text("this is [not valid toml")
        daemon.proc.send_signal(signal.SIGHUP)
        await wait_for(lambda: daemon.logged("config_reload_rejected"))
        count = len(second.requests)
        await wait_for(lambda: len(second.requests) > count + 5)  # the old config keeps running
        assert "invalid TOML" in daemon.logged("config_reload_rejected")[0]["error"]
    finally:
        assert await daemon.stop() == 0


async def test_readyz_healthz_and_metrics(tmp_path: Path, nursery) -> None:
    sim = UptivitySimulator(rate=0, count=21, numbered=True)
    sim_port = await nursery.start(sim.serve)
    receiver = Receiver()
    hook_port = await nursery.start(serve_asgi, receiver.app)
    admin = free_port()
    daemon = Daemon(
        tmp_path,
        daemon_config(tmp_path, sources={"up": sim_port}, hooks={"hook": hook_port}, admin_port=admin),
    )
    base = f"http://127.0.0.1:{admin}"
    try:
        async with httpx.AsyncClient() as client:

            async def get(path: str) -> httpx.Response | None:
                try:
                    return await client.get(base + path)
                except httpx.TransportError:
                    return None

            await wait_for(lambda: len(receiver.delivered_ids()) >= 21, timeout=30)
            healthz = await get("/healthz")
            assert healthz is not None and healthz.status_code == 200
            ready = await get("/readyz")
            assert ready.status_code == 200, ready.text
            assert ready.json()["sources"]["up"]["state"] == "connected"
            metrics = (await get("/metrics")).text
            samples = {
                (s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(metrics)
                for s in family.samples
            }
            received = sum(
                v for (n, labels), v in samples.items() if n == "event_bridge_events_received_total"
            )
            assert received == 21
            assert (
                samples[("event_bridge_deliveries_total", (("outcome", "delivered"), ("sink", "hook")))] == 21
            )
            assert samples[("event_bridge_outbox_pending", (("sink", "hook"),))] == 0
            assert samples[("event_bridge_delivery_latency_seconds_count", (("sink", "hook"),))] == 21
            assert samples[("event_bridge_source_connected", (("source", "up"), ("state", "connected")))] == 1

            await sim.drop_connections()
            sim.result_code = 48  # the proxy now refuses subscriptions
            await wait_for(lambda: daemon.logged("uptivity_events_refused"))
            not_ready = await get("/readyz")
            assert not_ready.status_code == 503
            assert "refused: ERROR (48) API_TOO_MANY_CLIENTS" in not_ready.json()["sources"]["up"]["detail"]
    finally:
        assert await daemon.stop() == 0


async def test_tail_follows_filtered_events(tmp_path: Path, nursery) -> None:
    sim = UptivitySimulator(rate=0, count=14, numbered=True)
    sim_port = await nursery.start(sim.serve)
    receiver = Receiver()
    hook_port = await nursery.start(serve_asgi, receiver.app)
    daemon = Daemon(
        tmp_path,
        daemon_config(tmp_path, sources={"up": sim_port}, hooks={"hook": hook_port}, admin_port=free_port()),
    )
    try:
        await wait_for(lambda: len(receiver.delivered_ids()) >= 14, timeout=30)
        tail = [
            sys.executable,
            "-m",
            "bridge",
            "tail",
            "--config",
            str(daemon.config),
            "--last",
            "100",
            "--once",
        ]
        text = subprocess.run(
            [*tail, "--type", "recording.pa*"], capture_output=True, text=True, check=True
        ).stdout
        assert text.count("recording.paused") == 2 and "call.started" not in text
        as_json = subprocess.run(
            [*tail, "--json", "--type", "call.*"], capture_output=True, text=True, check=True
        ).stdout
        events = [json.loads(line) for line in as_json.splitlines()]
        assert [e["type"] for e in events] == ["call.started", "call.ended"] * 2
    finally:
        await daemon.stop()


def _systemd_analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.fail("systemd-analyze is missing: scripts/setup test installs Debian's systemd package")
    return tool


def _unit_for_analysis(tmp_path: Path) -> Path:
    unit = (ROOT / "systemd" / "event-bridge.service").read_text()
    # verify checks that ExecStart binaries exist; point them at one that does.
    unit = unit.replace("/opt/event-bridge/.venv/bin/event-bridge", shutil.which("true") or "/bin/true")
    path = tmp_path / "event-bridge.service"
    path.write_text(unit)
    return path


@pytest.mark.needs_systemd
def test_unit_file_verifies_cleanly(tmp_path: Path) -> None:
    proc = subprocess.run(
        [_systemd_analyze(), "verify", str(_unit_for_analysis(tmp_path))], capture_output=True, text=True
    )
    assert proc.returncode == 0 and "event-bridge.service" not in proc.stderr, proc.stderr


@pytest.mark.needs_systemd
def test_unit_file_exposure_is_at_most_1_2(tmp_path: Path) -> None:
    proc = subprocess.run(
        [_systemd_analyze(), "security", "--offline=true", str(_unit_for_analysis(tmp_path))],
        capture_output=True,
        text=True,
    )
    match = re.search(r"Overall exposure level for event-bridge.service: ([0-9.]+)", proc.stdout)
    assert match, proc.stdout + proc.stderr
    assert float(match.group(1)) <= 1.2, proc.stdout
    # What systemd-analyze listed that the bridge can live with (issue 15): no mounts of
    # its own, and a network allow-list (loopback until the operator lists the peers).
    for finding in ("PrivateMounts=", "IPAddressDeny="):
        line = next(line for line in proc.stdout.splitlines() if finding in line)
        assert line.startswith("✓") or "only localhost entries" in line, line
    unit = (ROOT / "systemd" / "event-bridge.service").read_text()
    for directive in (
        "Type=notify",
        "WatchdogSec=",
        "DynamicUser=yes",
        "LoadCredential=",
        "CapabilityBoundingSet=\n",
        "PrivateMounts=yes\n",
        "IPAddressDeny=any\n",
        "IPAddressAllow=localhost\n",
        "UMask=0077\n",
    ):
        assert directive in unit
