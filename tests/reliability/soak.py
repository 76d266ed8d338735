"""Soak driver (not collected by pytest): ``SOAK_MINUTES`` (default 30) at ``SOAK_RATE``
(default 200) events/s across all three vendor simulators into a real bridge process
and two webhook endpoints, with faults injected at random.

Faults: Uptivity connection drops (the simulator's own) and TCP resets (FaultProxy),
AnywhereNow hub drops, Encore transient error codes, receivers answering 500 for a few
seconds, and kill -9 of the bridge followed by a restart. kill -9 happens during the
first third only, so the last two thirds run one bridge process whose memory can be
judged: RSS after a warm-up (a quarter of that stretch, at least 30 s) is compared with
RSS at the end, and may grow at most ``SOAK_MAX_RSS_GROWTH`` (default 10%).

At the end production stops and the bridge drains. Then, per endpoint and vendor, every
event each simulator's journal says it produced is accounted for from the journals alone
(``tests/support/ground_truth.py``): delivered, unread, in transit at a cut or kill (the
soak journals when it cut a connection or killed the bridge), unobservable, or lost.
Rows go to ``tests.support.reliability.record``; the exit status is 0 only if nothing was lost, no
duplicate carried a new id, no delivered event lacked journal backing, everything the
outbox committed was delivered, and memory stayed within bounds.

Run it through ``scripts/soak``, or: ``.venv/bin/python -m tests.reliability.soak``.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import trio

from bridge.asgi import serve_asgi
from bridge.simulators.anywherenow import AnywhereNowSimulator
from bridge.simulators.encore import NOT_RECORDING, PAUSE, RECORD, EncoreSimulator
from bridge.simulators.journal import Journal
from bridge.simulators.uptivity import UptivitySimulator
from tests.support import reliability
from tests.support.faults import FaultProxy
from tests.support.ground_truth import account, unbacked_claims
from tests.support.reliability import record

MINUTES = float(os.environ.get("SOAK_MINUTES", "30"))
RATE = float(os.environ.get("SOAK_RATE", "200"))
MAX_RSS_GROWTH = float(os.environ.get("SOAK_MAX_RSS_GROWTH", "0.10"))
SEED = int(os.environ.get("SOAK_SEED", str(int(time.time()))))
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
UCC = "ucc-soak"
ENCORE_PORTS = list(range(1, 41))
ANW_SCRIPT = ("Start", "Pause", "Start", "Stop")  # then Save or Delete


def say(message: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {message}", flush=True)


class LeanReceiver:
    """A webhook endpoint that journals a lean copy of every event it accepted (what loss
    accounting reads: id, source, subject, type, arrival time and the few data fields that
    tie an event to the simulator's journal); answers 500 while ``failing_until`` lies
    ahead."""

    def __init__(self) -> None:
        self.journal: list[dict[str, Any]] = []
        self.ids: set[str] = set()
        self.received = 0
        self.failing_until = 0.0
        self.answered_500 = 0

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        status = 204
        if time.monotonic() < self.failing_until:
            status = 500
            self.answered_500 += 1
        else:
            payload = json.loads(body)
            now = time.monotonic()
            for event in payload if isinstance(payload, list) else [payload]:
                self.received += 1
                self.ids.add(event["id"])
                data = event.get("data") or {}
                raw = data.get("raw") if isinstance(data.get("raw"), dict) else {}
                lean = {k: data[k] for k in ("reconciled", "recording_url", "inferred") if k in data}
                if "EVENTXREF" in raw:
                    lean["raw"] = {"EVENTXREF": raw["EVENTXREF"]}
                self.journal.append(
                    {
                        "t": now,
                        "id": event["id"],
                        "source": event["source"],
                        "subject": event.get("subject"),
                        "type": event["type"],
                        "data": lean,
                    }
                )
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def config(workdir: Path, up: int, anw: AnywhereNowSimulator, enc: int, hooks: list[int]) -> Path:
    sinks = "".join(
        f"""
[[sinks.webhook]]
name = "hook{i}"
url = "http://127.0.0.1:{port}/"
secrets = ["{SECRET}"]
mode = "batch"
max_in_flight = 8
retry_schedule = [0.1, 0.3, 1, 2, 5, 10, 10, 10, 10]  # outlasts the 1-5 s receiver outages
reconnect_min = 0.5
reconnect_max = 2.0
"""
        for i, port in enumerate(hooks)
    )
    ports = "".join(f"\n[[sources.encore.ports]]\nunit = 1\nport = {p}\n" for p in ENCORE_PORTS)
    path = workdir / "bridge.toml"
    path.write_text(
        f"""
[bridge]
state_dir = "{workdir / "state"}"

[admin]
listen = "127.0.0.1:0"

[[sources.uptivity]]
name = "up"
host = "127.0.0.1"
port = {up}
reconnect_min = 0.02
reconnect_max = 0.2

[[sources.anywherenow]]
name = "anw"
hub_url = "{anw.hub_url()}"
rest_url = "{anw.rest_url()}"
ucc_names = ["{UCC}"]
reconnect_min = 0.02
reconnect_max = 0.2
ping_interval = 1.0
server_timeout = 10.0

[[sources.encore]]
name = "enc"
url = "http://127.0.0.1:{enc}/WebAPI/ECAPI.svc"
interval = 0.5
max_in_flight = 4
api_version = "7.1"
{ports}
{sinks}
"""
    )
    return path


def rss_kb(pid: int) -> int | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"^VmRSS:\s+(\d+) kB", text, re.M)
    return int(match.group(1)) if match else None


class Soak:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.rng = random.Random(SEED)
        big = 20_000_000  # journal entries kept: a whole soak (accounting refuses a cut journal)
        self.up_sim = UptivitySimulator(
            rate=RATE * 0.75, numbered=True, devices=200, journal=Journal(limit=big)
        )
        self.anw_sim = AnywhereNowSimulator(ping_interval=1.0, journal=Journal(limit=big))
        self.enc_sim = EncoreSimulator(journal=Journal(limit=big))
        # The soak's own journal: when a connection was cut (kill -9, drops, resets). What a
        # cut connection or killed bridge had not committed is its tail (accounting.py).
        self.cuts: list[float] = []
        self.receivers = [LeanReceiver(), LeanReceiver()]
        self.faults: Counter[str] = Counter()
        self.anw_changes = 0
        self.enc_changes = 0
        self.anw_active: dict[str, int] = {}  # call -> index of its next step
        self.anw_scripts: dict[str, tuple[str, ...]] = {}
        self.anw_next = 0
        self.producing = True
        self.proc: subprocess.Popen | None = None
        self.rss: list[tuple[float, int]] = []  # (seconds into the final process, kB)

    # -- vendors ---------------------------------------------------------------------
    async def anywherenow(self) -> None:
        """~15% of the rate as hub state changes. Each call runs Start, Pause, Start, Stop
        and then Save or Delete, as a finished call does: the bridge remembers a call until
        its saving state is final, so a soak whose calls never end would measure that
        memory (bounded by ``max_calls``) instead of leaks."""
        interval = 1.0 / (RATE * 0.15)
        while True:
            if self.producing:
                while len(self.anw_active) < 20 and self.anw_sim.connected_clients:
                    self.anw_next += 1
                    call = f"call-{self.anw_next}"
                    self.anw_active[call] = 0
                    self.anw_scripts[call] = (*ANW_SCRIPT, self.rng.choice(("Save", "Delete")))
                if self.anw_active:
                    await self._anw_step(self.rng.choice(sorted(self.anw_active)))
            await trio.sleep(interval)

    async def _anw_step(self, call: str) -> None:
        index, script = self.anw_active[call], self.anw_scripts[call]
        await self.anw_sim.send_state(UCC, call, script[index])
        self.anw_changes += 1
        if index + 1 == len(script):
            del self.anw_active[call]
            del self.anw_scripts[call]
        else:
            self.anw_active[call] = index + 1

    async def encore(self) -> None:
        """~10% of the rate as port state changes over 40 ports."""
        interval = 1.0 / (RATE * 0.10)
        while True:
            if self.producing:
                port = self.rng.choice(ENCORE_PORTS)
                state = self.enc_sim.state_of(1, port)
                if state == NOT_RECORDING:
                    self.enc_sim.start(1, port)
                elif state == RECORD:
                    (self.enc_sim.pause if self.rng.random() < 0.5 else self.enc_sim.stop)(1, port)
                elif state == PAUSE:
                    self.enc_sim.resume(1, port)
                self.enc_changes += 1
            await trio.sleep(interval)

    # -- the bridge ------------------------------------------------------------------
    def start_bridge(self, config_path: Path) -> None:
        log = (self.workdir / "bridge.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bridge", "run", "--config", str(config_path), "--shutdown-grace", "10"],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )

    async def kill_bridge(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await trio.to_thread.run_sync(self.proc.wait)

    # -- faults ----------------------------------------------------------------------
    async def fault(self, proxy: FaultProxy, allow_kill: bool, config_path: Path) -> None:
        choices = ["uptivity drop", "uptivity reset", "anywherenow drop", "encore 653", "receiver 500"]
        if allow_kill:
            choices += ["kill -9"] * 2
        kind = self.rng.choice(choices)
        if allow_kill and not self.faults["kill -9"] and self.faults.total() >= 3:
            kind = "kill -9"  # at least one kill in every run, however short
        self.faults[kind] += 1
        if kind in ("uptivity drop", "uptivity reset", "anywherenow drop", "kill -9"):
            self.cuts.append(time.monotonic())
        if kind == "uptivity drop":
            await self.up_sim.drop_connections()
        elif kind == "uptivity reset":
            await proxy.reset_all()
        elif kind == "anywherenow drop":
            await self.anw_sim.drop_connections("abort")
        elif kind == "encore 653":
            port = self.rng.choice(ENCORE_PORTS)
            self.enc_sim.injected[("1", str(port))].extend([653] * 3)
        elif kind == "receiver 500":
            self.rng.choice(self.receivers).failing_until = time.monotonic() + self.rng.uniform(1, 5)
        else:
            await self.kill_bridge()
            await trio.sleep(self.rng.uniform(0.0, 1.0))
            self.start_bridge(config_path)

    async def run(self) -> bool:
        async with trio.open_nursery() as nursery:
            up_port = await nursery.start(self.up_sim.serve)
            proxy = FaultProxy(up_port)
            await nursery.start(proxy.serve)
            await nursery.start(self.anw_sim.serve)
            enc_port = await nursery.start(serve_asgi, self.enc_sim.app)
            hooks = [await nursery.start(serve_asgi, r.app) for r in self.receivers]
            config_path = config(self.workdir, proxy.port, self.anw_sim, enc_port, hooks)
            nursery.start_soon(self.anywherenow)
            nursery.start_soon(self.encore)
            self.start_bridge(config_path)
            total = MINUTES * 60
            kill_phase = total / 3
            began = trio.current_time()
            say(
                f"{MINUTES:g} min at {RATE:g} events/s, seed {SEED}; "
                f"kill -9 during the first {kill_phase:.0f} s"
            )
            final_started: float | None = None
            next_fault = began + self.rng.uniform(2, 8)
            next_report = began + 30
            while (now := trio.current_time()) - began < total:
                if now >= next_fault:
                    await self.fault(proxy, now - began < kill_phase, config_path)
                    next_fault = now + self.rng.uniform(2, 8)
                if now - began >= kill_phase and final_started is None:
                    final_started = now
                    self.final_pid = self.proc.pid if self.proc else 0
                if final_started is not None and self.proc is not None:
                    kb = rss_kb(self.proc.pid)
                    if kb is not None:
                        self.rss.append((now - final_started, kb))
                if now >= next_report:
                    next_report = now + 30
                    say(
                        f"t={now - began:.0f}s uptivity={self.up_sim.produced} "
                        f"anywherenow={self.anw_changes} "
                        f"encore={self.enc_changes} delivered={[len(r.ids) for r in self.receivers]} "
                        f"faults={dict(self.faults)} rss={self.rss[-1][1] // 1024 if self.rss else '-'} MB"
                    )
                await trio.sleep(1.0)
            ok = await self.finish()
            nursery.cancel_scope.cancel()
        return ok

    async def finish(self) -> bool:
        """Stop production, let the bridge drain, then account for every event."""
        self.producing = False
        self.up_sim.count = self.up_sim.produced
        for call in sorted(self.anw_active):
            while call in self.anw_active:
                await self._anw_step(call)
        db = self.workdir / "state" / "outbox.sqlite3"
        deadline = trio.current_time() + 300
        stored: dict[str, str] = {}
        while trio.current_time() < deadline:
            await trio.sleep(2.0)
            stored = committed_ids(db)
            if all(stored.keys() <= r.ids for r in self.receivers) or not pending(db):
                break
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = await trio.to_thread.run_sync(self.proc.wait)
        stored = committed_ids(db)
        return self.report(stored, code)

    def report(self, stored: dict[str, str], exit_code: int) -> bool:
        ok = exit_code == 0
        warm = max(30.0, (self.rss[-1][0] if self.rss else 0) / 4)
        after_warmup = [kb for t, kb in self.rss if t >= warm]
        growth = None
        if len(after_warmup) >= 6:
            start = sorted(after_warmup[:3])[1]
            end = sorted(after_warmup[-3:])[1]
            growth = (end - start) / start
            say(
                f"bridge RSS after {warm:.0f} s warm-up: "
                f"{start // 1024} MB -> {end // 1024} MB ({growth:+.1%})"
            )
            ok = ok and growth <= MAX_RSS_GROWTH
        else:
            say("not enough RSS samples after warm-up to judge memory (run longer)")
        injected = sum(self.faults.values())
        sims = {"up": ("up", self.up_sim), "anw": ("anw", self.anw_sim), "enc": ("enc", self.enc_sim)}
        tallies = {}
        for index, receiver in enumerate(self.receivers):
            undelivered = [eid for eid in stored if eid not in receiver.ids]
            for eid in undelivered[:20]:
                say(f"hook{index} never got committed event {eid} ({stored[eid]})")
            tallies = account(receiver.journal, **sims, kills=sorted(self.cuts))
            for source, tally in tallies.items():
                unbacked = unbacked_claims(tally)
                record(
                    f"soak: {MINUTES:g} min at {RATE:g} events/s, random faults",
                    f"{source} → hook{index}: "
                    f"{', '.join(f'{k} ×{v}' for k, v in sorted(self.faults.items()))}",
                    injected=injected,
                    **tally.row(),
                    observed=(
                        f"{tally.at_kill} in transit at a cut or kill, {tally.unobservable} unobservable "
                        f"(journals); {len(unbacked)} unbacked claims; {receiver.answered_500} answered 500; "
                        "RSS growth after warm-up " + (f"{growth:+.1%}" if growth is not None else "n/a")
                    ),
                )
                for lost in tally.lost[:10]:
                    say(f"hook{index} {source}: lost {lost}")
                for key in tally.new_id_duplicates[:10]:
                    say(f"hook{index} {source}: delivered again with a new id: {key}")
                for event in unbacked[:10]:
                    say(
                        f"hook{index} {source}: not backed by the journal: "
                        f"{event['type']} {event['subject']} {event['data']}"
                    )
                ok = ok and not tally.lost and not tally.new_id_duplicates and not unbacked
            ok = ok and not undelivered
            say(
                f"hook{index}: committed={len(stored)} delivered={len(receiver.ids)} "
                f"undelivered={len(undelivered)} " + " ".join(f"{k}:{t.row()}" for k, t in tallies.items())
            )
        if not ok:  # keep the evidence where a person can look at it
            evidence = Path(os.environ.get("SOAK_EVIDENCE") or self.workdir / "evidence.json")
            evidence.write_text(
                json.dumps(
                    {
                        "cuts": self.cuts,
                        "journals": {
                            k: list(sim.journal.entries) for k, (_, sim) in sims.items() if k != "up"
                        },
                        "receivers": [r.journal for r in self.receivers],
                    },
                    default=str,
                )
            )
            say(f"AnywhereNow and Encore journals, cuts and receiver records: {evidence}")
        sent = {k: t.sent for k, t in tallies.items()}
        say(f"sent: {sent}; faults: {dict(self.faults)}; bridge exit {exit_code}; {'PASS' if ok else 'FAIL'}")
        return ok


def pending(db: Path) -> int:
    """Deliveries still to do (not delivered, not dead-lettered)."""
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT count(*) FROM deliveries WHERE state=0").fetchone()[0]


def committed_ids(db: Path) -> dict[str, str]:
    """id -> source name of every event the outbox committed."""
    with sqlite3.connect(db) as conn:
        return dict(conn.execute("SELECT id, source FROM events").fetchall())


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="soak-") as directory:
        workdir = Path(os.environ.get("SOAK_WORKDIR") or directory)
        workdir.mkdir(parents=True, exist_ok=True)
        say(f"state, config and bridge.log in {workdir}")
        ok = trio.run(Soak(workdir).run)
        # Not under pytest: write the held rows with the soak's own verdict.
        reliability.flush("tests/reliability/soak.py", "passed" if ok else "failed", expected=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
