"""The AnywhereNow source against the real simulator over loopback (SignalR + REST).

The source's events go to a small in-memory emitter (the outbox has its own tests); the
network side is never mocked: signalrcore talks to the simulator's hub over real sockets.
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import structlog
import trio

from bridge.components import SourceContext
from bridge.config import ConfigError, Context, Secrets, Table
from bridge.model import Event
from bridge.quarantine import Quarantine
from bridge.settings import load_settings
from bridge.simulators.anywherenow import AnywhereNowSimulator
from bridge.sources.anywherenow import AnywhereNowSettings, AnywhereNowSource
from bridge.sources.anywherenow.mapping import state_key
from tests.support.helpers import LogCapture, MemoryEmitter, wait_for
from tests.support.tls import self_signed

UCC = "ucc-demo-name"
TOKEN = "s3cret-token-value"


def make_table(data: dict[str, Any], tmp_path: Path, secrets: Secrets | None = None) -> Table:
    ctx = Context(
        file=tmp_path / "bridge.toml",
        secrets=secrets or Secrets(),
        state_dir=tmp_path / "state",
        timezone=ZoneInfo("UTC"),
    )
    return Table(data, "sources.anywherenow[0]", ctx)


def build_source(table: Table) -> AnywhereNowSource:
    """What the config loader does for one [[sources.anywherenow]] table."""
    return AnywhereNowSource(load_settings(AnywhereNowSettings, table))


def source_config(sim: AnywhereNowSimulator, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "name": "anw",
        "hub_url": sim.hub_url(),
        "rest_url": sim.rest_url(),
        "reconnect_min": 0.01,
        "reconnect_max": 0.1,
        "ping_interval": 0.2,
        "server_timeout": 2.0,
        "connect_timeout": 5.0,
    }
    config.update(overrides)
    return config


@asynccontextmanager
async def running_source(
    sim: AnywhereNowSimulator,
    tmp_path: Path,
    *,
    state: Mapping[str, str] | None = None,
    emitter: MemoryEmitter | None = None,
    **overrides: Any,
) -> AsyncIterator[tuple[AnywhereNowSource, MemoryEmitter]]:
    table = make_table(source_config(sim, **overrides), tmp_path)
    source = build_source(table)
    table.check_unknown()
    emitter = emitter or MemoryEmitter(state)
    ctx = SourceContext(
        emitter=emitter,
        quarantine=Quarantine(tmp_path / "quarantine"),
        state=dict(emitter.state),
        log=structlog.get_logger("bridge.source").bind(source=source.name, vendor=source.vendor),
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(source.run, ctx)
        try:
            yield source, emitter
        finally:
            nursery.cancel_scope.cancel()


async def connected(source: AnywhereNowSource, sim: AnywhereNowSimulator, count: int = 1) -> None:
    await wait_for(lambda: source.connections >= count and sim.connected_clients >= 1 and source.health.ready)


def signalr_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("Signalrcore")]


EXPECTED = [
    (1, "Start", "recording.started"),
    (2, "Stop", "recording.stopped"),
    (3, "Pause", "recording.paused"),
    (4, "Save", "recording.saved"),
    (5, "Delete", "recording.deleted"),
    (6, "Mark", "recording.marked"),
    (7, "UnMark", "recording.unmarked"),
]


@pytest.mark.parametrize("casing", ["camel", "pascal"])
@pytest.mark.parametrize("as_name", [False, True])
async def test_every_state_action_becomes_its_cloudevent(
    tmp_path: Path, nursery: trio.Nursery, casing: str, as_name: bool
) -> None:
    sim = AnywhereNowSimulator(casing=casing, action_as_name=as_name)
    await nursery.start(sim.serve)
    async with running_source(sim, tmp_path) as (source, emitter):
        await connected(source, sim)
        for number, _name, _type in EXPECTED:
            # A separate call per action so Start is never a resume.
            assert await sim.send_state(UCC, f"call-{number}", number) == 1
        await wait_for(lambda: len(emitter.events) == len(EXPECTED))
    for event, (number, name, expected_type) in zip(emitter.events, EXPECTED, strict=True):
        assert event.type == expected_type
        assert event.subject == f"call-{number}"
        assert event.vendor == "anywherenow" and event.source_name == "anw"
        assert event.data["ucc_name"] == UCC
        assert event.data["action"] == name
        assert event.data["state_action"] == number
        assert event.data["raw"] == sim.event_payload(UCC, f"call-{number}", number)
        assert "reconciled" not in event.data
        assert event.time.tzinfo is not None
        ce = event.to_cloudevent("id-1")
        assert ce["type"] == expected_type and ce["subject"] == f"call-{number}"
    # Every call is remembered (for reconciliation): none is both stopped and saved/deleted.
    assert set(emitter.state) == {state_key(UCC, f"call-{n}") for n in range(1, 8)}
    assert json.loads(emitter.state[state_key(UCC, "call-2")])["r"] == 2
    assert json.loads(emitter.state[state_key(UCC, "call-6")])["m"] == 1


async def test_start_after_pause_is_resume_and_unknown_actions_pass_through(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    sim = AnywhereNowSimulator(casing="pascal")
    await nursery.start(sim.serve)
    async with running_source(sim, tmp_path) as (source, emitter):
        await connected(source, sim)
        for action in (1, 3, 1, 42, "Transcribe", 2):
            await sim.send_state(UCC, "c1", action)
        await wait_for(lambda: len(emitter.events) == 6)
    assert emitter.types() == [
        "recording.started",
        "recording.paused",
        "recording.resumed",
        "vendor.anywherenow.42",
        "vendor.anywherenow.transcribe",
        "recording.stopped",
    ]
    assert emitter.events[3].data["raw"]["StateAction"] == 42
    # Stopped but never saved or deleted: still remembered, so a later Save is recovered.
    assert json.loads(emitter.state[state_key(UCC, "c1")])["r"] == 2
    assert len({e.digest() for e in emitter.events}) == 6


async def test_stop_missed_while_disconnected_is_reconciled_after_reconnect(
    tmp_path: Path, nursery: trio.Nursery, log_capture: LogCapture
) -> None:
    sim = AnywhereNowSimulator()
    await nursery.start(sim.serve)
    async with running_source(sim, tmp_path) as (source, emitter):
        await connected(source, sim)
        await sim.send_state(UCC, "call-a", 1)
        await sim.send_state(UCC, "call-b", 1)
        await sim.send_state(UCC, "call-b", 3)
        await wait_for(lambda: len(emitter.events) == 3)
        # The hub goes away mid-call; while nobody listens, call-a stops and call-b resumes.
        sim.available = False
        await sim.drop_connections("abort")
        await wait_for(lambda: source.health.state in ("disconnected", "error"))
        assert await sim.send_state(UCC, "call-a", "Stop") == 0  # sent while the bridge is away
        sim.set_state(UCC, "call-b", "Start")
        assert await sim.send_state(UCC, "call-a", "Save") == 0  # nobody hears this one
        sim.available = True
        await wait_for(lambda: source.connections >= 2 and source.reconciliations >= 2)
        await wait_for(lambda: len(emitter.events) == 6)
    reconciled = emitter.events[3:]
    assert {(e.subject, e.type) for e in reconciled} == {
        ("call-a", "recording.stopped"),
        ("call-a", "recording.saved"),
        ("call-b", "recording.resumed"),
    }
    # Per call in the order they can have happened: the stop before the save.
    assert [e.type for e in reconciled if e.subject == "call-a"] == ["recording.stopped", "recording.saved"]
    for event in reconciled:
        assert event.data["reconciled"] is True
        assert event.data["raw"]["CorrelationId"] == event.subject
        assert event.identity["reconciled"] is True
    assert emitter.state.keys() == {state_key(UCC, "call-b")}
    assert json.loads(emitter.state[state_key(UCC, "call-b")])["r"] == 1
    assert log_capture.events("anywherenow_disconnected"), "the drop is logged with its reason"
    assert all(r.get("reason") for r in log_capture.events("anywherenow_disconnected"))
    # The bridge asked the v2 state endpoint for each open call.
    paths = [r.path for r in sim.requests]
    assert f"/attendantservice/api/v2/recording/{UCC}/call-a" in paths


async def test_reconciliation_after_a_bridge_restart_uses_persisted_state(
    tmp_path: Path, nursery: trio.Nursery, log_capture: LogCapture
) -> None:
    sim = AnywhereNowSimulator(v2_enabled=False)  # also proves the v1 fallback
    await nursery.start(sim.serve)
    emitter = MemoryEmitter()
    async with running_source(sim, tmp_path, emitter=emitter) as (source, _):
        await connected(source, sim)
        await sim.send_state(UCC, "call-x", 1)
        await sim.send_state(UCC, "call-y", 1)
        await wait_for(lambda: len(emitter.events) == 2)
    assert signalr_threads() == []
    # While the bridge is down: call-x stops, call-y's session disappears entirely.
    sim.set_state(UCC, "call-x", 2)
    sim.forget_call(UCC, "call-y")
    async with running_source(sim, tmp_path, emitter=emitter) as (source, _):
        await wait_for(lambda: source.reconciliations >= 1 and len(emitter.events) == 4)
    later = {e.subject: e for e in emitter.events[2:]}
    assert later["call-x"].type == "recording.stopped" and later["call-x"].data["reconciled"] is True
    assert later["call-y"].type == "recording.stopped"
    assert later["call-y"].data["reconcile_reason"] == "session_not_found"
    # call-x stopped but has no final saving state yet: remembered; call-y is gone.
    assert emitter.state.keys() == {state_key(UCC, "call-x")}
    assert any(r.path == f"/attendantservice/api/recording/{UCC}/call-x" for r in sim.requests)
    # The REST ErrorMessage is logged with both its ErrorType and its Message.
    (error,) = log_capture.events("anywherenow_rest_error_message")
    assert error["correlation_id"] == "call-y" and error["error_type"] == 2
    assert error["message"] == "No recording session found for this CorrelationId"


async def test_malformed_invocations_are_logged_quarantined_and_the_connection_survives(
    tmp_path: Path, nursery: trio.Nursery, log_capture: LogCapture
) -> None:
    sim = AnywhereNowSimulator()
    await nursery.start(sim.serve)
    bad_payloads = [
        [{"uccName": UCC, "stateAction": 1}],  # no CorrelationId
        [{"uccName": UCC, "correlationId": "m1"}],  # no StateAction
        [{"uccName": UCC, "correlationId": "m1", "stateAction": True}],
        ["not an object"],
        [],
    ]
    async with running_source(sim, tmp_path) as (source, emitter):
        await connected(source, sim)
        for arguments in bad_payloads:
            await sim.send_invocation("RecordingStateChangedEvent", arguments)
        await sim.send_raw('{"type":1,"target":"RecordingStateChangedEvent","arguments":[{\x1e')
        await sim.send_raw('{"type":99}\x1e')
        await sim.send_invocation("SomethingElse", [{"x": 1}])
        await sim.send_invocation(
            "recordingstatechangedevent", [{"CorrelationId": "lower", "StateAction": 2}]
        )
        await sim.send_state(UCC, "good", 1)
        await wait_for(lambda: len(emitter.events) == 2)
        assert source.connections == 1 and sim.connected_clients == 1
    # Hub method names match case-insensitively, as in the official clients.
    assert [e.subject for e in emitter.events] == ["lower", "good"]
    (other,) = log_capture.events("anywherenow_unhandled_target")
    assert other["target"] == "SomethingElse"
    warnings = log_capture.events("anywherenow_malformed_message")
    assert len(warnings) == len(bad_payloads) + 2
    # The log shows a short, masked excerpt; the quarantine file keeps the bytes.
    assert any(w["excerpt"].startswith('{"****": #, "******": "****') for w in warnings)
    assert all(len(w["excerpt"]) < 120 for w in warnings)
    assert any("CorrelationId" in w["reason"] for w in warnings)
    kept = sorted((tmp_path / "quarantine" / "anw").glob("*.bin"))
    assert len(kept) == len(bad_payloads) + 2
    assert any(b'"arguments":[{' in path.read_bytes() for path in kept)


async def test_access_token_and_custom_headers_reach_the_hub_and_rest(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    sim = AnywhereNowSimulator(require_token=TOKEN)
    await nursery.start(sim.serve)
    async with running_source(
        sim, tmp_path, access_token=TOKEN, headers={"X-Tenant": "acme"}, ucc_names=[UCC]
    ) as (source, emitter):
        await connected(source, sim)
        await sim.send_state(UCC, "auth-call", 1)
        await wait_for(lambda: len(emitter.events) == 1)
        await wait_for(lambda: any("capabilities" in r.path for r in sim.requests))
    by_kind = {(r.kind, r.path.rsplit("/", 1)[-1]): r.headers for r in sim.requests}
    negotiate = by_kind[("http", "negotiate")]
    websocket = by_kind[("websocket", "recordinghub")]
    for headers in (negotiate, websocket):
        assert headers["authorization"] == f"Bearer {TOKEN}"
        assert headers["x-tenant"] == "acme"
    capabilities = next(r for r in sim.requests if "capabilities" in r.path)
    assert capabilities.headers["authorization"] == f"Bearer {TOKEN}"
    assert sim.requests[0].query["negotiateVersion"] == ["1"]


async def test_wrong_token_is_an_error_and_is_retried(
    tmp_path: Path, nursery: trio.Nursery, log_capture: LogCapture
) -> None:
    sim = AnywhereNowSimulator(require_token=TOKEN)
    await nursery.start(sim.serve)
    async with running_source(sim, tmp_path, access_token="wrong-token") as (source, _):
        await wait_for(lambda: len(log_capture.events("anywherenow_connect_failed")) >= 2)
        assert source.health.state == "error"
        assert "401" in source.health.detail
    # The source itself never logs the token (the log layer's redaction is a second net).
    assert "wrong-token" not in log_capture.getvalue()
    assert source.connections == 0


async def test_capabilities_warning_when_agents_cannot_edit(
    tmp_path: Path, nursery: trio.Nursery, log_capture: LogCapture
) -> None:
    sim = AnywhereNowSimulator(agent_can_edit=False)
    await nursery.start(sim.serve)
    async with running_source(sim, tmp_path, ucc_names=[UCC]) as (_source, _):
        await wait_for(lambda: log_capture.events("anywherenow_agents_cannot_edit_recordings"))
    (warning,) = log_capture.events("anywherenow_agents_cannot_edit_recordings")
    assert warning["ucc"] == UCC and warning["level"] == "warning"
    assert "AgentCanEditRecordings" in warning["detail"]


async def test_hub_close_message_and_silent_hub_are_detected(
    tmp_path: Path, nursery: trio.Nursery, log_capture: LogCapture
) -> None:
    sim = AnywhereNowSimulator(ping_interval=0.1)
    await nursery.start(sim.serve)
    async with running_source(sim, tmp_path, server_timeout=0.6) as (source, emitter):
        await connected(source, sim)
        await sim.drop_connections("close", error="Server is shutting down")
        await connected(source, sim, 2)
        # A hub that stops talking but keeps the socket open: only liveness can tell.
        await sim.drop_connections("silent")
        await connected(source, sim, 3)
        await sim.send_state(UCC, "after", 1)
        await wait_for(lambda: emitter.types("after") == ["recording.started"])
    reasons = [r["reason"] for r in log_capture.events("anywherenow_disconnected")]
    assert any("Server is shutting down" in reason for reason in reasons)
    assert any("server timeout" in reason for reason in reasons)


async def test_shutdown_leaves_no_thread_behind(tmp_path: Path, nursery: trio.Nursery) -> None:
    before = set(threading.enumerate())
    sim = AnywhereNowSimulator()
    await nursery.start(sim.serve)
    async with running_source(sim, tmp_path) as (source, emitter):
        await connected(source, sim)
        assert signalr_threads(), "signalrcore runs a receive thread while connected"
        await sim.drop_connections("abort")
        await connected(source, sim, 2)
        await sim.send_state(UCC, "t", 1)
        await wait_for(lambda: len(emitter.events) == 1)
    after = {t for t in threading.enumerate() if t.is_alive()}
    leftover = [t for t in after - before if not t.name.startswith("Trio thread")]
    assert leftover == []
    assert signalr_threads() == []


async def test_full_channel_blocks_the_hub_thread_instead_of_dropping(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    sim = AnywhereNowSimulator()
    await nursery.start(sim.serve)
    gate = trio.Event()

    class SlowEmitter(MemoryEmitter):
        async def emit(self, events: Sequence[Event], **kwargs: Any) -> None:
            await gate.wait()
            await super().emit(events, **kwargs)

    emitter = SlowEmitter()
    async with running_source(sim, tmp_path, emitter=emitter, queue_size=1, server_timeout=1.0) as (
        source,
        _,
    ):
        await connected(source, sim)
        for i in range(40):
            await sim.send_state(UCC, f"bp-{i}", 1)
        await trio.sleep(1.5)  # longer than server_timeout: a blocked thread is not "dead"
        gate.set()
        await wait_for(lambda: len(emitter.events) == 40)
        assert source.connections == 1
    assert [e.subject for e in emitter.events] == [f"bp-{i}" for i in range(40)]


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"sources\.anywherenow\[0\]\.hub_url"):
        build_source(make_table({"name": "a", "hub_url": "ftp://x"}, tmp_path))
    with pytest.raises(ConfigError, match="ca_file"):
        build_source(make_table({"name": "a", "hub_url": "https://x/h", "ca_file": "missing.pem"}, tmp_path))
    with pytest.raises(ConfigError, match="server_timeout"):
        build_source(
            make_table(
                {"name": "a", "hub_url": "https://x/h", "ping_interval": 30.0, "server_timeout": 10.0},
                tmp_path,
            )
        )
    secrets = Secrets()
    table = make_table(
        {
            "name": "a",
            "hub_url": "https://x/h",
            "access_token": "tok-123456",
            "headers": {"X-Api-Key": "key-abcdef"},
        },
        tmp_path,
        secrets,
    )
    source = build_source(table)
    table.check_unknown()
    assert {"tok-123456", "key-abcdef"} <= secrets.values
    assert source.settings.verify_tls is True
    with pytest.raises(ConfigError, match="not a known key"):
        bad = make_table({"name": "a", "hub_url": "https://x/h", "hub_ur1": "typo"}, tmp_path)
        build_source(bad)
        bad.check_unknown()


async def test_tls_is_verified_by_default_and_a_ca_bundle_can_be_trusted(
    tmp_path: Path, nursery: trio.Nursery, log_capture: LogCapture
) -> None:
    cert, key = self_signed(tmp_path)
    sim = AnywhereNowSimulator()
    await nursery.start(partial(sim.serve, certfile=str(cert), keyfile=str(key)))
    https = {"hub_url": sim.hub_url("https"), "rest_url": sim.rest_url("https")}
    async with running_source(sim, tmp_path, **https) as (source, _):
        await wait_for(lambda: log_capture.events("anywherenow_connect_failed"))
        assert source.connections == 0 and "CERTIFICATE_VERIFY_FAILED" in source.health.detail
    async with running_source(sim, tmp_path, ca_file=str(cert), **https) as (source, emitter):
        await connected(source, sim)
        await sim.send_state(UCC, "tls-call", 1)
        await wait_for(lambda: emitter.types("tls-call") == ["recording.started"])
    assert any(r.kind == "websocket" for r in sim.requests), "the event came over wss"
    async with running_source(sim, tmp_path, verify_tls=False, **https) as (source, _):
        await connected(source, sim)
    assert log_capture.events("anywherenow_tls_verification_disabled")


async def test_a_stuck_upgrade_times_out_and_shutdown_during_it_leaves_no_thread(
    tmp_path: Path, nursery: trio.Nursery, log_capture: LogCapture
) -> None:
    sim = AnywhereNowSimulator()
    sim.hang_upgrades = True
    await nursery.start(sim.serve)
    async with running_source(sim, tmp_path, connect_timeout=0.3) as (source, _):
        await wait_for(lambda: log_capture.events("anywherenow_connect_failed"))
        assert "timed out" in source.health.detail
        assert source.connections == 0
    assert signalr_threads() == []
    # Shutdown while signalrcore is blocked in the upgrade (long timeout): prompt, no thread left.
    async with running_source(sim, tmp_path, connect_timeout=60.0) as (source, _):
        await wait_for(lambda: sum(r.kind == "websocket" for r in sim.requests) >= 2)
        await trio.sleep(0.1)
    with trio.fail_after(5):
        while signalr_threads():
            await trio.sleep(0.01)
    # The hub recovers: the bridge connects as soon as upgrades are answered again.
    sim.hang_upgrades = False
    async with running_source(sim, tmp_path) as (source, _):
        await connected(source, sim)


async def test_a_refused_handshake_is_reported_with_the_hub_error(
    tmp_path: Path, nursery: trio.Nursery, log_capture: LogCapture
) -> None:
    sim = AnywhereNowSimulator()
    sim.handshake_error = "Protocol version 1 is not supported here"
    await nursery.start(sim.serve)
    async with running_source(sim, tmp_path, connect_timeout=30.0) as (source, _):
        await wait_for(lambda: log_capture.events("anywherenow_connect_failed"), timeout=10)
        assert "Protocol version 1 is not supported here" in source.health.detail
        assert source.connections == 0
    assert signalr_threads() == []


async def test_a_burst_arrives_complete_and_in_order(tmp_path: Path, nursery: trio.Nursery) -> None:
    sim = AnywhereNowSimulator()
    await nursery.start(sim.serve)
    async with running_source(sim, tmp_path, queue_size=64) as (source, emitter):
        await connected(source, sim)
        for i in range(3000):
            await sim.send_state(UCC, f"burst-{i}", 6)
        await wait_for(lambda: len(emitter.events) == 3000, timeout=60)
    assert [e.subject for e in emitter.events] == [f"burst-{i}" for i in range(3000)]
    assert source.connections == 1


async def test_calls_nobody_can_answer_for_are_forgotten_after_forget_after(
    tmp_path: Path, nursery: trio.Nursery, log_capture: LogCapture
) -> None:
    sim = AnywhereNowSimulator()
    await nursery.start(sim.serve)
    old = json.dumps({"state": "started", "since": 1_000_000.0})
    fresh = json.dumps({"state": "started", "since": 4_000_000_000.0})
    state = {state_key("", "no-ucc-old"): old, state_key("", "no-ucc-fresh"): fresh, "junk": "x"}
    async with running_source(sim, tmp_path, state=state, forget_after=3600.0) as (source, emitter):
        await wait_for(lambda: log_capture.events("anywherenow_call_forgotten_unconfirmed"))
        assert source.calls.keys() == {("", "no-ucc-fresh")}
    assert emitter.state == {state_key("", "no-ucc-fresh"): fresh, "junk": "x"}
    assert emitter.events == []
    assert log_capture.events("anywherenow_state_ignored")[0]["key"] == "junk"
    assert source.stats()["calls_forgotten_unconfirmed"] == 1


async def test_a_live_copy_of_a_reconciled_change_is_not_announced_twice(
    tmp_path: Path, nursery: trio.Nursery, log_capture: LogCapture
) -> None:
    """Around a reconnect the hub may deliver a change the REST reconcile already reported."""
    sim = AnywhereNowSimulator()
    await nursery.start(sim.serve)
    async with running_source(sim, tmp_path) as (source, emitter):
        await connected(source, sim)
        await sim.send_state(UCC, "call-a", 1)
        await wait_for(lambda: len(emitter.events) == 1)
        sim.available = False
        await sim.drop_connections("abort")
        await wait_for(lambda: source.health.state in ("disconnected", "error"))
        sim.set_state(UCC, "call-a", "Stop")
        sim.available = True
        await wait_for(lambda: source.connections >= 2 and source.reconciliations >= 2)
        await wait_for(lambda: len(emitter.events) == 2)
        # The late live copy of that Stop, then a genuinely new call on the same hub.
        assert await sim.send_state(UCC, "call-a", "Stop") == 1
        assert await sim.send_state(UCC, "call-b", "Start") == 1
        await wait_for(lambda: any(e.subject == "call-b" for e in emitter.events))
    assert [(e.subject, e.type) for e in emitter.events] == [
        ("call-a", "recording.started"),
        ("call-a", "recording.stopped"),
        ("call-b", "recording.started"),
    ]
    assert emitter.events[1].data["reconciled"] is True
    assert log_capture.events("anywherenow_live_repeat_of_reconciled")
