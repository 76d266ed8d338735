"""kill -9 of the real bridge at random moments while all three vendors produce, then restart.

Three sources (Uptivity stream, AnywhereNow hub + REST, Encore SOAP polling) feed two
webhook endpoints. After ``CRASH_ROUNDS`` kills (default 10; ``scripts/soak`` runs 50)
one last run is stopped gracefully. Then, per source and endpoint, every event each
simulator's journal says it produced is accounted for from the journals alone
(``tests/support/ground_truth.py``): delivered, unread (Uptivity: past the bytes the
bridge's kernel acknowledged, or produced with no subscriber), in transit at a kill (the
uncommitted tail of a killed bridge: nothing it read later from the same connection or
subject was delivered), unobservable (no poll or REST answer showed it), or lost.
The test fails on any lost event, on any
duplicate with a new id and on any delivered event the journal does not back; its rows
are written to the reliability matrix either way.
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
from typing import Any

import pytest
import trio

from bridge.asgi import serve_asgi
from bridge.simulators.anywherenow import AnywhereNowSimulator
from bridge.simulators.encore import NOT_RECORDING, PAUSE, RECORD, EncoreSimulator
from bridge.simulators.uptivity import UptivitySimulator
from tests.support.accounting import Tally
from tests.support.ground_truth import account, unbacked_claims
from tests.support.helpers import wait_for, write_config
from tests.support.receivers import Receiver
from tests.support.reliability import record

ROUNDS = int(os.environ.get("CRASH_ROUNDS", "10"))
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
UCC = "ucc-crash"
ENCORE_PORTS = [1, 2, 3, 4]


def bridge_config(tmp_path: Path, up: int, anw: AnywhereNowSimulator, enc: int, hooks: list[int]) -> Path:
    sinks = "".join(
        f"""
[[sinks.webhook]]
name = "hook{i}"
url = "http://127.0.0.1:{port}/"
secrets = ["{SECRET}"]
max_in_flight = 4
retry_schedule = [0.05, 0.1, 0.2, 0.4]
"""
        for i, port in enumerate(hooks)
    )
    ports = "".join(f"\n[[sources.encore.ports]]\nunit = 1\nport = {p}\n" for p in ENCORE_PORTS)
    return write_config(
        tmp_path,
        f"""
[bridge]
state_dir = "{tmp_path / "state"}"

[outbox]
synchronous = "normal"

[admin]
listen = "127.0.0.1:0"

[[sources.uptivity]]
name = "up"
host = "127.0.0.1"
port = {up}
reconnect_min = 0.01
reconnect_max = 0.05

[[sources.anywherenow]]
name = "anw"
hub_url = "{anw.hub_url()}"
rest_url = "{anw.rest_url()}"
ucc_names = ["{UCC}"]
reconnect_min = 0.01
reconnect_max = 0.1
ping_interval = 0.5
server_timeout = 5.0

[[sources.encore]]
name = "enc"
url = "http://127.0.0.1:{enc}/WebAPI/ECAPI.svc"
interval = 0.05
max_in_flight = 2
api_version = "7.1"
{ports}
{sinks}
""",
    )


def start_bridge(config: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "bridge", "run", "--config", str(config), "--shutdown-grace", "5"],
        stdout=subprocess.DEVNULL,
        stderr=log.open("ab"),
    )


class AnywhereNowDriver:
    """Calls that go Start, Pause, Start (resume), Stop, a few at a time; a call is only
    started while a bridge is connected (one nobody ever heard of cannot be recovered)."""

    SCRIPT = ("Start", "Pause", "Start", "Stop")

    def __init__(self, sim: AnywhereNowSimulator, rng: random.Random) -> None:
        self.sim = sim
        self.rng = rng
        self.next_call = 0
        self.active: dict[str, int] = {}  # call id -> next step
        self.changes = 0
        self.running = True

    async def run(self) -> None:
        while True:
            if self.running:
                # New calls only while the bridge listens; known calls also move on while
                # it is down (what REST reconciliation has to recover).
                while len(self.active) < 3 and self.sim.connected_clients:
                    self.next_call += 1
                    self.active[f"call-{self.next_call}"] = 0
                if self.active:
                    await self.step(self.rng.choice(sorted(self.active)))
            await trio.sleep(0.03)

    async def step(self, call: str) -> None:
        index = self.active[call]
        await self.sim.send_state(UCC, call, self.SCRIPT[index])
        self.changes += 1
        if index + 1 == len(self.SCRIPT):
            del self.active[call]
        else:
            self.active[call] = index + 1

    async def finish(self) -> None:
        self.running = False
        for call in sorted(self.active):
            while call in self.active:
                await self.step(call)


class EncoreDriver:
    """Ports cycling through start, pause, resume, stop at random."""

    def __init__(self, sim: EncoreSimulator, rng: random.Random) -> None:
        self.sim = sim
        self.rng = rng
        self.changes = 0
        self.running = True

    async def run(self) -> None:
        while True:
            if self.running:
                port = self.rng.choice(ENCORE_PORTS)
                state = self.sim.state_of(1, port)
                if state == NOT_RECORDING:
                    self.sim.start(1, port)
                elif state == RECORD:
                    (self.sim.pause if self.rng.random() < 0.5 else self.sim.stop)(1, port)
                elif state == PAUSE:
                    self.sim.resume(1, port)
                self.changes += 1
            await trio.sleep(0.15)

    def finish(self) -> None:
        self.running = False
        for port in ENCORE_PORTS:
            if self.sim.state_of(1, port) == PAUSE:
                self.sim.resume(1, port)
                self.changes += 1
            if self.sim.state_of(1, port) == RECORD:
                self.sim.stop(1, port)
                self.changes += 1


def committed(db: Path) -> list[dict[str, Any]]:
    """Every CloudEvent the outbox holds, in commit order."""
    with sqlite3.connect(db) as conn:
        return [json.loads(body) for (body,) in conn.execute("SELECT body FROM events ORDER BY seq")]


@pytest.mark.slow
@pytest.mark.reliability
@pytest.mark.timeout(900)
async def test_kill_9_across_all_sources_loses_nothing_recoverable(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    rng = random.Random(20261122 + ROUNDS)
    up_sim = UptivitySimulator(rate=150, numbered=True, devices=5)
    up_port = await nursery.start(up_sim.serve)
    anw_sim = AnywhereNowSimulator(ping_interval=0.5)
    await nursery.start(anw_sim.serve)
    enc_sim = EncoreSimulator()
    enc_port = await nursery.start(serve_asgi, enc_sim.app)
    receivers = [Receiver(), Receiver()]
    hooks = [await nursery.start(serve_asgi, r.app) for r in receivers]
    config = bridge_config(tmp_path, up_port, anw_sim, enc_port, hooks)
    db = tmp_path / "state" / "outbox.sqlite3"
    log = tmp_path / "bridge.log"
    anw = AnywhereNowDriver(anw_sim, rng)
    enc = EncoreDriver(enc_sim, rng)
    nursery.start_soon(anw.run)
    nursery.start_soon(enc.run)

    def all_connected(before: tuple[int, int, int]) -> bool:
        return (
            up_sim.connections > before[0]
            and bool(up_sim.subscribers)
            and anw_sim.connections_total > before[1]
            and anw_sim.connected_clients > 0
            and enc_sim.calls["PortStatusEX"] > before[2]
        )

    def counters() -> tuple[int, int, int]:
        return (up_sim.connections, anw_sim.connections_total, enc_sim.calls["PortStatusEX"])

    kills: list[float] = []  # the test's own journal: when each kill -9 happened
    for _ in range(ROUNDS):
        before = counters()
        proc = start_bridge(config, log)
        try:
            await wait_for(lambda b=before: all_connected(b), timeout=30)
            await trio.sleep(rng.uniform(0.3, 1.5))
        finally:
            proc.send_signal(signal.SIGKILL)
            kills.append(time.monotonic())
            await trio.to_thread.run_sync(proc.wait)
        await wait_for(lambda: not up_sim.subscribers and anw_sim.connected_clients == 0)
        await trio.sleep(rng.uniform(0.0, 0.3))  # vendors carry on while the bridge is down

    # The last run is not killed: production stops once every source is connected, and
    # the run ends when no receiver has accepted anything for a while.
    before = counters()
    proc = start_bridge(config, log)
    try:
        await wait_for(lambda b=before: all_connected(b), timeout=30)
        await trio.sleep(0.3)
        up_sim.count = up_sim.produced
        await anw.finish()
        enc.finish()
        await quiet(receivers, seconds=3.0, timeout=90)
        stored = committed(db)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await trio.to_thread.run_sync(proc.wait) == 0

    sims = {"up": ("up", up_sim), "anw": ("anw", anw_sim), "enc": ("enc", enc_sim)}
    failures: list[str] = []
    for index, receiver in enumerate(receivers):
        tallies = account(receiver.journal, **sims, kills=kills)
        ids = {e["id"] for e in receiver.journal}
        for source, tally in tallies.items():
            unbacked = unbacked_claims(tally)
            record(
                "crash: kill -9 (all sources)",
                f"{source} → hook{index}: kill -9 at random moments, restart",
                injected=ROUNDS,
                **tally.row(),
                observed=_observed(source, tally, unbacked, stored),
            )
            if tally.lost:
                failures.append(f"hook{index} {source}: lost {tally.lost[:10]}")
            if tally.new_id_duplicates or unbacked:
                failures.append(
                    f"hook{index} {source}: duplicates with a new id or unbacked claims: "
                    f"{tally.new_id_duplicates[:5]} {[(e['type'], e['subject']) for e in unbacked[:5]]}"
                )
        # The outbox's own promise on top: nothing it committed stays undelivered.
        undelivered = [e for e in stored if e["id"] not in ids]
        if undelivered:
            failures.append(f"hook{index}: {len(undelivered)} committed events never delivered")
    if failures:  # keep the evidence where a person can look at it
        evidence = Path(os.environ.get("CRASH_EVIDENCE", tmp_path / "evidence.json"))
        evidence.write_text(
            json.dumps(
                {
                    "kills": kills,
                    "journals": {k: list(sim.journal.entries) for k, (_, sim) in sims.items()},
                    "receivers": [r.journal for r in receivers],
                },
                default=str,
            )
        )
        failures.append(f"journals and receiver records: {evidence}")
    assert not failures, "\n".join(failures)


async def quiet(receivers: list[Receiver], *, seconds: float, timeout: float) -> None:
    """Until no receiver has accepted anything for ``seconds``."""
    with trio.fail_after(timeout):
        while True:
            counts = [len(r.journal) for r in receivers]
            await trio.sleep(seconds)
            if counts == [len(r.journal) for r in receivers]:
                return


def _observed(source: str, tally: Tally, unbacked: list[dict[str, Any]], stored: list[dict[str, Any]]) -> str:
    recovered = sum(1 for e in stored if e["source"].endswith("/" + source) and e["data"].get("reconciled"))
    parts = [f"{tally.at_kill} in transit at a kill (journal)"]
    if source == "up":
        parts.append(f"{tally.unread} unread (past the acknowledged bytes, or no subscriber)")
        parts.append(f"{recovered} state changes recovered by status requests")
    else:
        parts.append(f"{tally.unobservable} unobservable (no answer showed them)")
        parts.append(f"{recovered} recovered by {'REST' if source == 'anw' else 're-polling'}")
    interrupted = sum(1 for e in tally.unexplained if e.get("type") == "recording.interrupted")
    if interrupted:
        parts.append(f"{interrupted} recording.interrupted for unseen interruptions")
    if unbacked:
        parts.append(f"{len(unbacked)} deliveries the journal does not back")
    return "; ".join(parts)
