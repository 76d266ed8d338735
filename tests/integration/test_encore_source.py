"""The Encore source against the real simulator over loopback HTTP.

Events go to an in-memory emitter that keeps the committed state the way the outbox
does (state and events together), so restarts can be exercised without the outbox.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import trio

from bridge.components import SourceContext
from bridge.quarantine import Quarantine
from bridge.simulators.encore import EncoreSimulator
from bridge.sources.encore import EncoreSettings, EncoreSource, PortSettings
from tests.support.helpers import MemoryEmitter

WAIT = 15.0


class RecordingLog:
    """Stands in for the structlog logger: records (level, event, fields)."""

    def __init__(self) -> None:
        self.records: list[tuple[str, str, dict[str, Any]]] = []

    def __getattr__(self, level: str) -> Any:
        def log(event: str, **fields: Any) -> None:
            self.records.append((level, event, fields))

        return log

    def named(self, event: str) -> list[dict[str, Any]]:
        return [fields for _, name, fields in self.records if name == event]


async def wait_for(predicate: Any, timeout: float = WAIT) -> Any:
    with trio.fail_after(timeout):
        while not (value := predicate()):
            await trio.sleep(0.01)
        return value


async def polls(sim: EncoreSimulator, count: int, op: str = "PortStatusEX") -> None:
    """Wait until ``count`` more status requests reached the simulator."""
    target = sim.calls[op] + count
    await wait_for(lambda: sim.calls[op] >= target)


@dataclass
class Harness:
    sim: EncoreSimulator
    source: EncoreSource
    emitter: MemoryEmitter
    log: RecordingLog
    quarantine_dir: Path


def settings_for(port: int, **overrides: Any) -> EncoreSettings:
    """Test settings; ``ports`` may be given as (unit, port) pairs, lists as lists."""
    options: dict[str, Any] = {
        "name": "encore-test",
        "url": f"http://127.0.0.1:{port}/WebAPI/ECAPI.svc",
        "interval": 0.02,
        "timeout": 5.0,
        "resolve_interval": 3600.0,
        "misconfigured_recheck": 3600.0,
        "duration_tolerance": 2.0,
        **overrides,
    }
    options["ports"] = tuple(PortSettings(unit=u, port=p) for u, p in options.get("ports", ()))
    for key in ("extensions", "users"):
        options[key] = tuple(options.get(key, ()))
    return EncoreSettings(**options)


@asynccontextmanager
async def source_running(
    sim: EncoreSimulator,
    tmp_path: Path,
    emitter: MemoryEmitter | None = None,
    **overrides: Any,
) -> AsyncIterator[Harness]:
    emitter = emitter if emitter is not None else MemoryEmitter()
    log = RecordingLog()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(sim.serve)
        source = EncoreSource(settings_for(port, **overrides))
        ctx = SourceContext(emitter, Quarantine(tmp_path / "quarantine"), dict(emitter.state), log)
        await nursery.start(source.run, ctx)
        # Version probe and resolution done, first answers in.
        await wait_for(lambda: source.health.state != "starting")
        yield Harness(sim, source, emitter, log, tmp_path / "quarantine")
        nursery.cancel_scope.cancel()


def close_to(moment: datetime, expected: float, slack: float = 2.5) -> bool:
    """Event time within ``slack`` seconds of ``expected`` (stateDuration is whole seconds)."""
    return abs(moment.timestamp() - expected) <= slack


# -- transitions ------------------------------------------------------------------------


async def test_every_transition_becomes_the_expected_event_with_its_time(tmp_path: Path) -> None:
    sim = EncoreSimulator()
    async with source_running(sim, tmp_path, ports=[("1", "1")]) as h:
        await polls(sim, 3)
        assert h.emitter.events == []  # NOT RECORDING at first sight announces nothing

        script = [
            (sim.start, "recording.started", "NOT RECORDING", "RECORD"),
            (sim.pause, "recording.paused", "RECORD", "PAUSE"),
            (sim.resume, "recording.resumed", "PAUSE", "RECORD"),
            (sim.hold, "recording.suspended", "RECORD", "SUSPENDED"),
            (sim.retrieve, "recording.resumed", "SUSPENDED", "RECORD"),
            (sim.stop, "recording.stopped", "RECORD", "NOT RECORDING"),
        ]
        for count, (action, kind, before, after) in enumerate(script, start=1):
            assert action(1, 1) == 100
            changed_at = time.time()
            await wait_for(lambda n=count: len(h.emitter.events) >= n)
            event = h.emitter.events[-1]
            assert (event.type, event.subject) == (kind, "1/1")
            assert (event.data["previousState"], event.data["state"]) == (before, after)
            assert event.data["unit"] == "1" and event.data["port"] == "1"
            assert event.data["inferred"] is False
            assert event.data["raw"]["operation"] == "PortStatusEX"
            assert event.data["raw"]["portStatus"] == after  # the answer's fields as sent
            assert close_to(event.time, changed_at), (kind, event.time, changed_at)
            # One recording throughout: the URL GetURL gave when it started.
            assert event.data["recording_url"] == sim.url_of(1, 1)
        assert len(h.emitter.events) == len(script)


async def test_a_change_is_dated_by_state_duration_never_before_the_last_poll(tmp_path: Path) -> None:
    """7.1 docs: stateDuration is the duration of the current state; a port first seen
    recording for 300 s started 300 s ago. A change after the bridge last saw the port
    cannot be older than that poll, whatever stateDuration claims."""
    sim = EncoreSimulator()
    sim.start(1, 1)
    sim.backdate(1, 1, 300)
    async with source_running(sim, tmp_path, ports=[("1", "1"), ("1", "2")]) as h:
        await wait_for(lambda: h.emitter.events)
        first = h.emitter.events[0]
        assert first.type == "recording.started" and first.data["time_source"] == "state_duration"
        assert close_to(first.time, time.time() - 300)
        await polls(sim, 4)  # 1/2 seen NOT RECORDING
        before = time.time()
        sim.start(1, 2)
        sim.backdate(1, 2, 120)  # impossible: the bridge saw it idle a moment ago
        await wait_for(lambda: len(h.emitter.events) >= 2)
        second = h.emitter.events[1]
        assert second.type == "recording.started" and second.data["time_source"] == "last_poll"
        assert before - 1.0 <= second.time.timestamp() <= time.time()


async def test_stop_from_pause_and_suspended_is_announced(tmp_path: Path) -> None:
    sim = EncoreSimulator()
    async with source_running(sim, tmp_path, ports=[("1", "1"), ("1", "2")]) as h:
        sim.start(1, 1), sim.start(1, 2)
        await wait_for(lambda: len(h.emitter.events) >= 2)
        sim.pause(1, 1), sim.hold(1, 2)
        await wait_for(lambda: len(h.emitter.events) >= 4)
        assert sim.cancel(1, 1) == 100 and sim.cancel(1, 2) == 100
        await wait_for(lambda: len(h.emitter.events) >= 6)
        stops = {e.subject: e.data["previousState"] for e in h.emitter.events[4:]}
        assert stops == {"1/1": "PAUSE", "1/2": "SUSPENDED"}
        assert {e.type for e in h.emitter.events[4:]} == {"recording.stopped"}
        assert not any(e.data["inferred"] for e in h.emitter.events)


async def test_start_and_pause_between_polls_infers_the_start(tmp_path: Path) -> None:
    sim = EncoreSimulator()
    async with source_running(sim, tmp_path, ports=[("1", "1")]) as h:
        await polls(sim, 2)  # the port is known to be NOT RECORDING
        sim.start(1, 1), sim.pause(1, 1)
        await wait_for(lambda: len(h.emitter.events) >= 2)
        started, paused = h.emitter.events
        assert (started.type, started.data["inferred"]) == ("recording.started", True)
        assert (paused.type, paused.data["inferred"]) == ("recording.paused", False)
        assert started.time <= paused.time


async def test_pause_and_resume_between_two_polls_is_an_interruption_not_a_pause(tmp_path: Path) -> None:
    sim = EncoreSimulator()
    sim.start(1, 1)
    sim.backdate(1, 1, 60)  # recording for a minute when the bridge first looks
    async with source_running(sim, tmp_path, ports=[("1", "1")]) as h:
        await wait_for(lambda: h.emitter.events)
        started = h.emitter.events[0]
        await polls(sim, 2)
        # Both changes land between two polls (no await in between): the source only
        # sees RECORD again, but with a stateDuration younger than what it saw before,
        # and GetURL names the same recording: it was interrupted, pause or hold unknown.
        assert sim.pause(1, 1) == 100 and sim.resume(1, 1) == 100
        resumed_at = time.time()
        await wait_for(lambda: len(h.emitter.events) >= 2)
        await polls(sim, 5)
        (interrupted,) = h.emitter.events[1:]
        assert interrupted.type == "recording.interrupted"
        assert interrupted.data["inferred"] is True
        assert interrupted.data["inferred_kind"] == "pause_or_hold"
        assert (interrupted.data["previousState"], interrupted.data["state"]) == ("RECORD", "RECORD")
        assert interrupted.data["recording_url"] == started.data["recording_url"] == sim.url_of(1, 1)
        assert close_to(interrupted.time, resumed_at)
        # Between the last poll that saw the old state and the poll that saw the new one.
        window = datetime.fromisoformat(interrupted.data["window_start"]).timestamp()
        assert started.time.timestamp() <= window <= resumed_at <= interrupted.time.timestamp() + 1.0
        assert "recording.paused" not in h.emitter.types()  # never a plain pause for this
        assert len(h.emitter.events) == 2  # and it is not inferred again on later polls


async def test_a_wall_clock_step_is_not_mistaken_for_a_transition(tmp_path: Path) -> None:
    sim = EncoreSimulator()
    emitter, log, offset = MemoryEmitter(), RecordingLog(), [0.0]
    async with trio.open_nursery() as nursery:
        port = await nursery.start(sim.serve)
        source = EncoreSource(
            settings_for(port, ports=[("1", "1")]), wall_clock=lambda: time.time() + offset[0]
        )
        ctx = SourceContext(emitter, Quarantine(tmp_path / "q"), {}, log)
        await nursery.start(source.run, ctx)
        sim.start(1, 1)
        sim.backdate(1, 1, 60)
        await wait_for(lambda: emitter.events)
        offset[0] = 3600.0  # NTP steps the clock an hour forward
        await polls(sim, 10)
        sim.stop(1, 1)
        await wait_for(lambda: len(emitter.events) == 2)
        nursery.cancel_scope.cancel()
    assert [e.type for e in emitter.events] == ["recording.started", "recording.stopped"]
    assert emitter.events[1].time.timestamp() > time.time() + 3000  # dated by the (new) wall clock


async def test_static_state_duration_disables_inference(tmp_path: Path) -> None:
    # The vendor's test service always answers stateDuration 20: it dates nothing.
    sim = EncoreSimulator(fixed_duration=20)
    async with source_running(sim, tmp_path, ports=[("1", "1")], duration_tolerance=0.3) as h:
        sim.start(1, 1)
        await wait_for(lambda: h.source.duration_static)
        await polls(sim, 10)
        assert h.emitter.types() == ["recording.started"]
        assert h.log.named("encore_state_duration_static")
        sim.stop(1, 1)
        before_stop = time.time()
        await wait_for(lambda: len(h.emitter.events) == 2)
        assert h.emitter.events[1].type == "recording.stopped"
        assert h.emitter.events[1].time.timestamp() >= before_stop - 0.5


async def test_unknown_port_state_is_quarantined_not_announced(tmp_path: Path) -> None:
    sim = EncoreSimulator()
    async with source_running(sim, tmp_path, ports=[("1", "1")]) as h:
        sim.port(1, 1).state = "DEFROSTING"
        await polls(sim, 5)
        assert h.emitter.events == []
        assert len(h.log.named("encore_unknown_state")) == 1
        assert list(h.quarantine_dir.rglob("*.bin"))


# -- response codes -----------------------------------------------------------------------


async def test_unit_and_port_that_do_not_exist_are_marked_and_rechecked(tmp_path: Path) -> None:
    sim = EncoreSimulator(units=1)
    ports = [("1", "1"), ("9", "1"), ("1", "999")]
    async with source_running(sim, tmp_path, ports=ports, misconfigured_recheck=3600.0) as h:
        await polls(sim, 30)
        asked = [(p["Unit"], p["Port"]) for op, p in sim.requests if op == "PortStatusEX"]
        assert asked.count(("9", "1")) <= 2  # the version probe uses the first port only
        assert asked.count(("1", "999")) == 1
        assert asked.count(("1", "1")) > 20
        misconfigured = h.log.named("encore_port_misconfigured")
        assert sorted((m["subject"], m["code"]) for m in misconfigured) == [("1/999", 611), ("9/1", 606)]
        assert "9/1" in h.source.health.detail and h.source.health.state == "polling"
        sim.start(1, 1)  # the good port keeps working
        await wait_for(lambda: h.emitter.types("1/1") == ["recording.started"])


async def test_misconfigured_port_recovers_when_it_appears(tmp_path: Path) -> None:
    sim = EncoreSimulator(units=1)
    async with source_running(sim, tmp_path, ports=[("2", "5")], misconfigured_recheck=0.2) as h:
        await wait_for(lambda: h.log.named("encore_port_misconfigured"))
        sim.units = 2  # the administrator adds the recording unit
        sim.start(2, 5)
        await wait_for(lambda: h.emitter.types("2/5") == ["recording.started"])
        assert h.log.named("encore_port_recovered")
        assert len(h.log.named("encore_port_misconfigured")) == 1


async def test_transient_codes_back_off_and_other_codes_are_logged(tmp_path: Path) -> None:
    sim = EncoreSimulator()
    # The first answer goes to the start-up version probe (any SOAP answer means 7.1+).
    sim.injected[("1", "1")] = [653, 621, 651, 653, 801, 610]
    async with source_running(sim, tmp_path, ports=[("1", "1")]) as h:
        sim.start(1, 1)
        await wait_for(lambda: h.emitter.events)
        backoffs = h.log.named("encore_backoff")
        assert [b["error"].split(": ")[1][:3] for b in backoffs] == ["621", "651", "653", "801"]
        other = h.log.named("encore_port_error")
        assert other == [
            {
                "subject": "1/1",
                "code": 610,
                "message": "Error: Issue creating transaction record",  # Appendix D
                "operation": "PortStatusEX",
            }
        ]
        assert h.emitter.types() == ["recording.started"]
        assert h.source.health.state == "polling"


# -- resolution -------------------------------------------------------------------------


async def test_extensions_and_users_resolve_to_ports(tmp_path: Path) -> None:
    sim = EncoreSimulator()
    sim.resolution_errors["ext:7777"] = 660
    sim.resolution_errors["user:ghost"] = 655
    async with source_running(sim, tmp_path, extensions=["1234", "7777"], users=["smith", "ghost"]) as h:
        ext_port, user_port = sim.stations["1234"], sim.users["smith"]
        assert ext_port != user_port
        sim.start(1, ext_port)
        sim.start(1, user_port)
        await wait_for(lambda: len(h.emitter.events) >= 2)
        by_subject = {e.subject: e for e in h.emitter.events}
        assert by_subject[f"1/{ext_port}"].data["extension"] == "1234"
        assert by_subject[f"1/{user_port}"].data["user"] == "smith"
        failures = {
            (f.get("extension") or f.get("user"), f["code"]) for f in h.log.named("encore_resolve_failed")
        }
        assert failures == {("7777", 660), ("ghost", 655)}
        assert "extension 7777 (660)" in h.source.health.detail
        assert "user ghost (655)" in h.source.health.detail
        init_user = [p for op, p in sim.requests if op == "InitUser"]
        assert {"User": "smith", "Machine": "smith"} in init_user


async def test_extensions_are_re_resolved_periodically(tmp_path: Path) -> None:
    sim = EncoreSimulator()
    async with source_running(sim, tmp_path, extensions=["1234"], resolve_interval=0.1) as h:
        first = sim.stations["1234"]
        await polls(sim, 3)
        sim.assign("ext", "1234", 50)  # the agent moved desks
        await wait_for(lambda: ("1", "50") in h.source.targets)
        assert ("1", str(first)) not in h.source.targets
        sim.start(1, 50)
        await wait_for(lambda: h.emitter.events)
        assert h.emitter.events[0].subject == "1/50"
        assert h.emitter.events[0].data["extension"] == "1234"
        assert h.log.named("encore_resolved")[-1]["previous"] == f"1/{first}"


# -- restart ------------------------------------------------------------------------------


async def test_restart_announces_only_what_changed_while_down(tmp_path: Path) -> None:
    sim = EncoreSimulator()
    emitter = MemoryEmitter()
    ports = [("1", "1"), ("1", "2"), ("1", "3"), ("1", "4")]
    async with trio.open_nursery() as nursery:
        await nursery.start(sim.serve)  # keeps the simulator's state across both runs

        for port in (1, 2, 4):  # recording for 100 s when the bridge first looks
            sim.start(1, port)
            sim.backdate(1, port, 100)
        async with source_running(sim, tmp_path, emitter, ports=ports) as h:
            await wait_for(lambda: len(h.emitter.events) == 3)
            await polls(sim, 8)
        down_at = time.time()
        first_run = list(emitter.events)
        assert {e.subject for e in first_run} == {"1/1", "1/2", "1/4"}
        assert set(emitter.state) == {"port:1/1", "port:1/2", "port:1/4"}

        # While the bridge is down: 1/2 stops, 1/3 starts, 1/1 pauses and resumes,
        # 1/4 keeps recording.
        sim.stop(1, 2)
        sim.start(1, 3)
        sim.pause(1, 1)
        sim.resume(1, 1)

        async with source_running(sim, tmp_path, emitter, ports=ports) as h:
            await wait_for(lambda: len(emitter.events) >= len(first_run) + 3)
            await polls(sim, 12)
        nursery.cancel_scope.cancel()

    later = emitter.events[len(first_run) :]
    second_run = [(e.subject, e.type, e.data["inferred"]) for e in later]
    # The interruption happened after the last poll before the shutdown.
    interrupted = next(e for e in later if e.type == "recording.interrupted")
    window = datetime.fromisoformat(interrupted.data["window_start"]).timestamp()
    assert down_at - 1.0 <= window <= interrupted.time.timestamp()
    assert sorted(second_run) == [
        ("1/1", "recording.interrupted", True),
        ("1/2", "recording.stopped", False),
        ("1/3", "recording.started", False),
    ]


async def test_restart_after_crash_does_not_reuse_stale_start_up_state(tmp_path: Path) -> None:
    # The supervisor restarts run() with the ctx of the first start; memory must win.
    sim = EncoreSimulator()
    emitter = MemoryEmitter()
    log = RecordingLog()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(sim.serve)
        source = EncoreSource(settings_for(port, ports=[("1", "1")]))
        ctx = SourceContext(emitter, Quarantine(tmp_path / "q"), {}, log)
        for _ in range(2):
            async with trio.open_nursery() as inner:
                await inner.start(source.run, ctx)
                sim.start(1, 1) if not emitter.events else None
                await wait_for(lambda: emitter.events)
                await polls(sim, 5)
                inner.cancel_scope.cancel()
        nursery.cancel_scope.cancel()
    assert [e.type for e in emitter.events] == ["recording.started"]


# -- 7.0 servers and concurrency -----------------------------------------------------------


async def test_70_server_is_detected_and_polled_with_portstatus(tmp_path: Path) -> None:
    sim = EncoreSimulator(api_version="7.0")
    async with source_running(sim, tmp_path, users=["smith"], extensions=["1234"]) as h:
        assert h.source.legacy is True
        user_port = sim.users["smith"]  # resolved with 7.0's userName/machineName
        sim.start(1, user_port)
        before = time.time()
        await wait_for(lambda: h.emitter.events)
        event = h.emitter.events[0]
        assert event.type == "recording.started" and event.data["user"] == "smith"
        assert event.data["raw"]["operation"] == "PortStatus"
        assert event.data["stateDuration"] is None
        assert event.time.timestamp() >= before - 0.5  # dated by observation, not guessed
        assert sim.calls["PortStatusEX"] == 1  # only the probe
        assert not h.log.named("encore_resolve_failed")
        sim.stop(1, user_port)
        await wait_for(lambda: len(h.emitter.events) == 2)
        assert h.emitter.events[1].type == "recording.stopped"


async def test_one_request_in_flight_by_default(tmp_path: Path) -> None:
    sim = EncoreSimulator(latency=0.01)
    ports = [("1", str(n)) for n in range(1, 11)]
    # The interval is shorter than the server needs: the sweep must stretch, not overlap.
    # Re-resolution runs beside the sweep and must share the same one-request limit.
    async with source_running(
        sim, tmp_path, ports=ports, interval=0.02, extensions=["1234"], resolve_interval=0.05
    ):
        await polls(sim, 40)
        await polls(sim, 3, op="InitStation")
    assert sim.max_concurrency == 1


async def test_configured_concurrency_is_used_and_bounded(tmp_path: Path) -> None:
    sim = EncoreSimulator(latency=0.05)
    ports = [("1", str(n)) for n in range(1, 21)]
    async with source_running(sim, tmp_path, ports=ports, interval=0.05, max_in_flight=3):
        await polls(sim, 40)
    assert 1 < sim.max_concurrency <= 3


async def test_event_ids_are_stable_for_the_same_transition(tmp_path: Path) -> None:
    sim = EncoreSimulator()
    async with source_running(sim, tmp_path, ports=[("1", "1")]) as h:
        sim.start(1, 1)
        sim.backdate(1, 1, 42)
        await wait_for(lambda: h.emitter.events)
    event = h.emitter.events[0]
    assert event.identity["type"] == "recording.started"
    assert event.identity["at"] == round(event.time.timestamp())
    assert event.digest() == replace(event, data={}).digest()  # identity, not data, decides
    assert event.time.tzinfo is UTC


# -- TLS --------------------------------------------------------------------------------


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_https_is_verified_by_default_and_a_ca_bundle_can_be_trusted(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    sim = EncoreSimulator()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(partial(sim.serve, certfile=str(cert), keyfile=str(key)))
        url = f"https://127.0.0.1:{port}/WebAPI/ECAPI.svc"
        outcomes = {}
        choices: dict[str, dict[str, Any]] = {
            "default": {},
            "ca_file": {"ca_file": cert},
            "off": {"verify_tls": False},
        }
        for label, tls in choices.items():
            emitter, log = MemoryEmitter(), RecordingLog()
            source = EncoreSource(settings_for(port, ports=[("1", "1")], url=url, **tls))
            ctx = SourceContext(emitter, Quarantine(tmp_path / "q"), {}, log)
            async with trio.open_nursery() as inner:
                await inner.start(source.run, ctx)
                await wait_for(lambda s=source: s.health.state != "starting")
                outcomes[label] = (source.health.state, source.health.detail, log)
                inner.cancel_scope.cancel()
        nursery.cancel_scope.cancel()
    state, detail, _ = outcomes["default"]
    assert state == "error" and "CERTIFICATE_VERIFY_FAILED" in detail
    assert outcomes["ca_file"][0] == "polling"
    off_state, _, off_log = outcomes["off"]
    assert off_state == "polling" and off_log.named("encore_tls_verification_disabled")
