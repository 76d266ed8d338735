"""kill -9 of the real bridge process at random moments of an Uptivity burst, then restart.

What can be promised (see README, "What nothing lost means"): every event the bridge
had committed is delivered at least once, duplicates carry the same id, and each killed
Uptivity connection loses at most its uncommitted tail (the Event Proxy has no replay).
Counted from the simulator's and receivers' journals only (tests/support/accounting.py):
a missing event is unread (past the acknowledged bytes), the killed bridge's tail
(nothing read after it was delivered), or lost; lost must be 0.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trio

from bridge.asgi import serve_asgi
from bridge.simulators.uptivity import UptivitySimulator
from tests.support.accounting import entries, uptivity
from tests.support.helpers import wait_for, write_config
from tests.support.receivers import Receiver
from tests.support.reliability import record

pytestmark = [pytest.mark.slow, pytest.mark.reliability]

ROUNDS = int(os.environ.get("CRASH_ROUNDS", "20"))
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def bridge_config(tmp_path: Path, sim_port: int, ports: list[int]) -> Path:
    hooks = "".join(
        f"""
[[sinks.webhook]]
name = "hook{i}"
url = "http://127.0.0.1:{port}/"
secrets = ["{SECRET}"]
max_concurrency = 4
retry_schedule = [0.05, 0.1, 0.2, 0.4]
"""
        for i, port in enumerate(ports)
    )
    return write_config(
        tmp_path,
        f"""
[bridge]
state_dir = "{tmp_path / "state"}"

[outbox]
synchronous = "normal"

[[sources.uptivity]]
name = "up"
host = "127.0.0.1"
port = {sim_port}
reconnect_min = 0.01
reconnect_max = 0.05
{hooks}
""",
    )


def start_bridge(config: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "bridge", "run", "--config", str(config), "--shutdown-grace", "5"],
        stdout=subprocess.DEVNULL,
        stderr=log.open("ab"),
    )


async def test_kill_9_at_random_moments_loses_nothing_that_was_read(tmp_path: Path, nursery) -> None:
    rng = random.Random(20261122)
    sim = UptivitySimulator(rate=400, numbered=True, devices=5)
    sim_port = await nursery.start(sim.serve)
    receivers = [Receiver(), Receiver()]
    ports = [await nursery.start(serve_asgi, r.app) for r in receivers]
    config = bridge_config(tmp_path, sim_port, ports)
    log = tmp_path / "bridge.log"

    kills: list[float] = []  # the test's own journal of each kill -9
    for _ in range(ROUNDS):
        before = sim.connections
        proc = start_bridge(config, log)
        try:
            await wait_for(lambda b=before: sim.connections > b and sim.subscribers, timeout=30)
            await trio.sleep(rng.uniform(0.05, 0.6))
        finally:
            proc.send_signal(signal.SIGKILL)
            kills.append(time.monotonic())
            await trio.to_thread.run_sync(proc.wait)
        await wait_for(lambda: not sim.subscribers)

    # A last run that is not killed: production stops once it is subscribed, and every
    # committed event must then reach both endpoints.
    before = sim.connections
    proc = start_bridge(config, log)
    try:
        await wait_for(lambda b=before: sim.connections > b and sim.subscribers, timeout=30)
        await trio.sleep(0.3)
        sim.count = sim.produced
        final_connection = max(sim.written())
        await wait_for(
            lambda: len(sim.written()[final_connection]) == len(_produced_on(sim, final_connection))
        )
        written = sim.written()
        must_arrive = set(written[final_connection])
        for receiver in receivers:
            await wait_for(lambda r=receiver: must_arrive <= set(_numbers(r)), timeout=60)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await trio.to_thread.run_sync(proc.wait) == 0

    committed = _committed_numbers(tmp_path / "state" / "outbox.sqlite3")
    failures = []
    for index, receiver in enumerate(receivers):
        got = [(n, e["id"]) for e in receiver.journal if (n := _number(e)) is not None]
        tally = uptivity(entries(sim.journal), got, kills=kills)
        record(
            "crash: kill -9 (Uptivity burst)",
            f"hook{index}: kill -9 at random moments of a 400 ev/s stream, restart",
            injected=ROUNDS,
            **tally.row(),
            observed=f"{tally.at_kill} in transit at a kill, {tally.unread} unread (journal)",
        )
        if tally.lost or tally.new_id_duplicates:
            failures.append(f"hook{index}: lost {tally.lost[:10]}, new ids {tally.new_id_duplicates[:10]}")
        # The outbox's own promise on top: everything it recorded reached this endpoint.
        missing = committed - {n for n, _ in got}
        if missing:
            failures.append(f"hook{index}: {len(missing)} committed events never delivered")
    assert not failures, "\n".join(failures)


def _number(event: dict) -> int | None:
    """The simulator's sequence number of a streamed event; None for the events the
    bridge recovered through status requests after a reconnect (they carry no EVENTXREF)."""
    raw = (event.get("data") or {}).get("raw") or {}
    return int(raw["EVENTXREF"]) if "EVENTXREF" in raw else None


def _committed_numbers(db: Path) -> set[int]:
    with sqlite3.connect(db) as conn:
        numbers = (_number(json.loads(body)) for (body,) in conn.execute("SELECT body FROM events"))
        return {n for n in numbers if n is not None}


def _numbers(receiver: Receiver) -> list[int]:
    numbers = (_number(e) for r in receiver.requests if r.status == 204 for e in r.events())
    return [n for n in numbers if n is not None]


def _produced_on(sim: UptivitySimulator, connection: int) -> list[int]:
    return [
        n for n in range(1, sim.produced + 1) if n >= min(sim.written()[connection] or [sim.produced + 1])
    ]
