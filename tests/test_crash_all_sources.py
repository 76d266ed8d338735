"""kill -9 of the real bridge at random moments while all three vendors produce, then restart.

Three sources (Uptivity stream, AnywhereNow hub + REST, Encore SOAP polling) feed two
webhook endpoints. After ``CRASH_ROUNDS`` kills (default 10; ``scripts/soak`` runs 50)
one last run is stopped gracefully, and per source:

* everything the outbox committed reached both endpoints (lost must be 0);
* a re-delivered event carries the same id as the first delivery;
* Uptivity: a killed connection misses at most its tail (no replay, README);
* AnywhereNow: every call whose start the bridge recorded ends with a delivered
  ``recording.stopped`` (live, or reconciled over REST after the restart);
* Encore: every port the bridge announced ends in ``NOT RECORDING`` (re-polled after
  every restart from the persisted last state).
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import trio

from bridge.asgi import serve_asgi
from bridge.simulators.anywherenow import AnywhereNowSimulator
from bridge.simulators.encore import NOT_RECORDING, PAUSE, RECORD, EncoreSimulator
from bridge.simulators.uptivity import UptivitySimulator
from tests.helpers import wait_for, write_config
from tests.receivers import Receiver
from tests.reliability import record

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
max_concurrency = 4
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
backoff_base = 0.01
backoff_cap = 0.1
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


def logical_key(event: dict[str, Any]) -> tuple[Any, ...]:
    """What makes two deliveries the same event, independent of its id."""
    source = event["source"].rsplit("/", 1)[-1]
    data = event["data"]
    if source == "up":
        if data.get("reconciled"):  # recovered by status requests: no EVENTXREF
            return (
                source,
                "reconciled",
                event["subject"],
                event["type"],
                data.get("call_instance"),
                event["time"],
            )
        return (source, int(data["raw"]["EVENTXREF"]))
    if source == "anw":
        return (source, event["subject"], event["type"])
    # Encore: two recordings (two GetURL links) may share a time when both are inferred
    # between the same two polls; the link tells them apart.
    return (
        source,
        event["subject"],
        event["type"],
        data.get("previousState"),
        event["time"],
        data.get("recording_url"),
    )


def delivered(receiver: Receiver) -> list[dict[str, Any]]:
    return [e for r in receiver.requests if 200 <= r.status < 300 for e in r.events()]


def anywherenow_complete(events: list[dict[str, Any]]) -> bool:
    """Every call whose start was committed has a committed stop."""
    started = {
        e["subject"] for e in events if e["source"].endswith("/anw") and e["type"] == "recording.started"
    }
    stopped = {
        e["subject"] for e in events if e["source"].endswith("/anw") and e["type"] == "recording.stopped"
    }
    return started <= stopped


def encore_complete(events: list[dict[str, Any]]) -> bool:
    """Every announced port's newest committed state is NOT RECORDING."""
    last: dict[str, str] = {}
    for e in events:
        if e["source"].endswith("/enc"):
            last[e["subject"]] = e["data"]["state"]
    return bool(last) and all(state == NOT_RECORDING for state in last.values())


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

    for _ in range(ROUNDS):
        before = counters()
        proc = start_bridge(config, log)
        try:
            await wait_for(lambda b=before: all_connected(b), timeout=30)
            await trio.sleep(rng.uniform(0.05, 1.0))
        finally:
            proc.send_signal(signal.SIGKILL)
            await trio.to_thread.run_sync(proc.wait)
        await wait_for(lambda: not up_sim.subscribers and anw_sim.connected_clients == 0)
        await trio.sleep(rng.uniform(0.0, 0.3))  # vendors carry on while the bridge is down

    # The last run is not killed: production stops once every source is connected.
    before = counters()
    proc = start_bridge(config, log)
    try:
        await wait_for(lambda b=before: all_connected(b), timeout=30)
        await trio.sleep(0.3)
        up_sim.count = up_sim.produced
        await anw.finish()
        enc.finish()
        final = max(up_sim.written())
        await wait_for(
            lambda: len(up_sim.written()[final]) == up_sim.produced - min(up_sim.written()[final] or [1]) + 1
        )
        must = set(up_sim.written()[final])
        await wait_for(
            lambda: (
                {
                    int(e["data"]["raw"]["EVENTXREF"])
                    for e in committed(db)
                    if e["source"].endswith("/up") and not e["data"].get("reconciled")
                }
                >= must
            ),
            timeout=60,
        )
        await wait_for(lambda: anywherenow_complete(committed(db)), timeout=60)
        await wait_for(lambda: encore_complete(committed(db)), timeout=60)
        stored = committed(db)
        for receiver in receivers:
            await wait_for(
                lambda r=receiver: {e["id"] for e in stored} <= {e["id"] for e in delivered(r)}, timeout=60
            )
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await trio.to_thread.run_sync(proc.wait) == 0

    stored = committed(db)
    assert anywherenow_complete(stored) and encore_complete(stored)
    written = up_sim.written()
    sent = {"up": sum(len(s) for s in written.values()), "anw": anw.changes, "enc": enc.changes}
    live_repeats: dict[int, int] = {}
    for index, receiver in enumerate(receivers):
        got = delivered(receiver)
        ids = {e["id"] for e in got}
        # Zero loss after the commit, on every endpoint.
        missing = [e for e in stored if e["id"] not in ids]
        assert not missing, f"hook{index}: {len(missing)} committed events never delivered"
        # A duplicate delivery is the same event with the same id, never a new id.
        ids_per_event: dict[tuple[Any, ...], set[str]] = defaultdict(set)
        for event in got:
            ids_per_event[logical_key(event)].add(event["id"])
        # Known AnywhereNow issue (reported): a live message that reaches the new connection
        # after REST reconciliation already announced the same transition (e.g. Stop) is
        # announced again with its own id, and a live Start for a call remembered as started
        # (its Pause lost in a kill) becomes a second "recording.started". Counted, not
        # hidden; anything else fails.
        reconciled_calls = {e["subject"] for e in stored if e["data"].get("reconciled")}
        repeats = [k for k, v in ids_per_event.items() if len(v) > 1]
        known = [
            k for k in repeats if k[0] == "anw" and (k[1] in reconciled_calls or k[2] == "recording.started")
        ]
        assert repeats == known, f"a duplicate carried a new id: {[k for k in repeats if k not in known]}"
        live_repeats[index] = len(known)
        # Uptivity: only the tail of a killed connection may be missing, never a gap.
        up_numbers = {k[1] for k in ids_per_event if k[0] == "up"}
        unread_up = 0
        for connection, numbers in written.items():
            got_here = [n for n in numbers if n in up_numbers]
            assert got_here == numbers[: len(got_here)], f"gap in Uptivity connection {connection}"
            unread_up += len(numbers) - len(got_here)
        for source in ("up", "anw", "enc"):
            events_here = [e for e in got if e["source"].endswith("/" + source)]
            distinct = {logical_key(e) for e in events_here}
            stored_here = [e for e in stored if e["source"].endswith("/" + source)]
            unread = unread_up if source == "up" else max(0, sent[source] - len(distinct))
            record(
                "crash: kill -9 (all sources)",
                f"{source} → hook{index}: kill -9 at random moments, restart",
                injected=ROUNDS,
                sent=sent[source],
                delivered=len(distinct),
                duplicated=len(events_here) - len(distinct),
                lost=len([e for e in stored_here if e["id"] not in ids]),
                unread=unread,
                observed=_observed(source, stored_here)
                + (
                    f"; {live_repeats[index]} live transitions re-announced after reconcile (known issue)"
                    if source == "anw" and live_repeats[index]
                    else ""
                ),
            )


def _observed(source: str, stored: list[dict[str, Any]]) -> str:
    if source == "up":
        return "committed ⊆ delivered; each killed connection lost at most its unread tail (no replay)"
    if source == "anw":
        reconciled = sum(1 for e in stored if e["data"].get("reconciled"))
        return (
            f"{reconciled} transitions recovered over REST; every recorded call ends stopped; "
            "unread = pause/resume pairs made while no bridge listened (REST shows the state only)"
        )
    inferred = sum(1 for e in stored if e["data"].get("inferred"))
    return (
        f"re-polled after each restart ({inferred} inferred); every port ends NOT RECORDING; "
        "unread = changes undone before the next poll saw them (a polled API shows states, not steps)"
    )
