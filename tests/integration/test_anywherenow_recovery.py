"""Issue 13 over real sockets: what reconciliation recovers after an outage, and its bounds.

The simulator is the independent recorder: changes are made on it silently (no hub
message reaches the bridge), and what the bridge must announce is read from the vendor
doc's states (MarkingState Mark/Unmark, SavingState Save/Delete, RecordingState).
The restart tests run the real service with its SQLite outbox and log sink.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import trio

from bridge.model import Event
from bridge.simulators.anywherenow import AnywhereNowSimulator
from tests.integration.test_anywherenow_security import peak_rss, rss_bytes
from tests.integration.test_anywherenow_source import UCC, connected, running_source
from tests.support.helpers import LogCapture, read_jsonl, running_bridge, wait_for, write_config


async def outage(sim: AnywhereNowSimulator, source: Any) -> None:
    sim.available = False
    await sim.drop_connections("abort")
    await wait_for(lambda: not source.health.ready)


async def back(sim: AnywhereNowSimulator, source: Any, connections: int) -> None:
    sim.available = True
    await wait_for(lambda: source.connections >= connections and source.reconciliations >= connections)


def by_call(events: Sequence[Event]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for e in events:
        out.setdefault(e.subject or "", []).append(e.type)
    return out


def reconciled_flags(events: Sequence[Event], call: str) -> list[bool]:
    """Per event of ``call``, in order: was it recovered over REST?"""
    return [bool(e.data.get("reconciled", False)) for e in events if e.subject == call]


async def test_mark_save_and_delete_during_an_outage_are_recovered_after_reconnect(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    sim = AnywhereNowSimulator()
    await nursery.start(sim.serve)
    async with running_source(sim, tmp_path) as (source, emitter):
        await connected(source, sim)
        for call, action in (
            ("marked", 1),
            ("saved", 1),
            ("deleted", 1),
            ("deleted", 2),
            ("unmarked", 1),
            ("unmarked", 6),
        ):
            await sim.send_state(UCC, call, action)
        await wait_for(lambda: len(emitter.events) == 6)
        await outage(sim, source)
        sim.set_state(UCC, "marked", "Mark")
        sim.set_state(UCC, "saved", "Stop")
        sim.set_state(UCC, "saved", "Save")
        sim.set_state(UCC, "deleted", "Delete")
        sim.set_state(UCC, "unmarked", "UnMark")
        await back(sim, source, 2)
        await wait_for(lambda: len(emitter.events) == 11)
    recovered = emitter.events[6:]
    assert by_call(recovered) == {
        "marked": ["recording.marked"],
        "saved": ["recording.stopped", "recording.saved"],
        "deleted": ["recording.deleted"],
        "unmarked": ["recording.unmarked"],
    }
    for event in recovered:
        assert event.data["reconciled"] is True
        assert event.data["raw"] == sim.calls[(UCC, event.subject)].as_json()  # the REST answer
    # Stopped and saved/deleted calls are final: forgotten; the others are still watched.
    assert set(source.calls) == {(UCC, "marked"), (UCC, "unmarked")}


async def test_stop_then_delete_during_an_outage_gives_both_in_order(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    sim = AnywhereNowSimulator(rest_casing="camel")  # camelCase REST answers, too
    await nursery.start(sim.serve)
    async with running_source(sim, tmp_path) as (source, emitter):
        await connected(source, sim)
        await sim.send_state(UCC, "call", "Start")
        await wait_for(lambda: len(emitter.events) == 1)
        await outage(sim, source)
        assert await sim.send_state(UCC, "call", "Stop") == 0
        assert await sim.send_state(UCC, "call", "Delete") == 0
        await back(sim, source, 2)
        await wait_for(lambda: len(emitter.events) == 3)
    assert emitter.types("call") == ["recording.started", "recording.stopped", "recording.deleted"]
    assert emitter.state == {}


async def test_a_200_with_error_message_for_an_unknown_session_ends_the_call(
    tmp_path: Path, nursery: trio.Nursery, log_capture: LogCapture
) -> None:
    sim = AnywhereNowSimulator(not_found="200")
    await nursery.start(sim.serve)
    async with running_source(sim, tmp_path) as (source, emitter):
        await connected(source, sim)
        await sim.send_state(UCC, "vanished", "Start")
        await wait_for(lambda: len(emitter.events) == 1)
        await outage(sim, source)
        sim.forget_call(UCC, "vanished")
        await back(sim, source, 2)
        await wait_for(lambda: len(emitter.events) == 2)
        # Another reconnect: the call is forgotten, nothing is announced twice.
        await outage(sim, source)
        await back(sim, source, 3)
    stopped = emitter.events[1]
    assert stopped.type == "recording.stopped" and stopped.data["reconcile_reason"] == "session_not_found"
    assert (
        stopped.data["raw"]["ErrorMessage"]["Message"] == "No recording session found for this CorrelationId"
    )
    assert len(emitter.events) == 2 and emitter.state == {}
    (line,) = log_capture.events("anywherenow_rest_error_message")
    assert (line["status"], line["ucc"], line["correlation_id"]) == (200, UCC, "vanished")
    assert line["error_type"] == 2 and line["message"]
    assert source.stats()["calls_forgotten_unconfirmed"] == 1


async def test_recording_state_zero_for_a_live_call_does_not_end_it(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    sim = AnywhereNowSimulator(report_uninitialized=True)
    await nursery.start(sim.serve)
    async with running_source(sim, tmp_path) as (source, emitter):
        await connected(source, sim)
        await sim.send_state(UCC, "live", "Start")
        await wait_for(lambda: len(emitter.events) == 1)
        await outage(sim, source)
        sim.set_state(UCC, "live", "Mark")
        await back(sim, source, 2)
        await wait_for(lambda: len(emitter.events) == 2)
    assert emitter.types("live") == ["recording.started", "recording.marked"]
    assert source.calls[(UCC, "live")].recording == 1  # still recording as far as the bridge knows


def bridge_config(tmp_path: Path, sim: AnywhereNowSimulator) -> Path:
    return write_config(
        tmp_path,
        f"""
[bridge]
state_dir = "{tmp_path / "state"}"

[[sources.anywherenow]]
name = "anw"
hub_url = "{sim.hub_url()}"
rest_url = "{sim.rest_url()}"
reconnect_min = 0.02
reconnect_max = 0.2
ping_interval = 0.2
server_timeout = 2.0

[[sinks.log]]
name = "log"
path = "{tmp_path / "events.jsonl"}"
""",
    )


async def test_mark_save_and_delete_while_the_bridge_is_down_are_recovered_after_restart(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    sim = AnywhereNowSimulator()
    await nursery.start(sim.serve)
    config = bridge_config(tmp_path, sim)

    def delivered() -> list[dict[str, Any]]:
        return read_jsonl(tmp_path / "events.jsonl")

    async with running_bridge(config) as bridge:
        source = bridge.sources["anw"]
        await wait_for(lambda: source.connections >= 1 and sim.connected_clients >= 1)
        for call, action in (("m", 1), ("s", 1), ("d", 1), ("d", 2)):
            await sim.send_state(UCC, call, action)
        await wait_for(lambda: len(delivered()) == 4)
    # While the bridge is down: m is marked, s stops and is saved, d is deleted.
    sim.set_state(UCC, "m", "Mark")
    sim.set_state(UCC, "s", "Stop")
    sim.set_state(UCC, "s", "Save")
    sim.set_state(UCC, "d", "Delete")
    async with running_bridge(config) as bridge:
        await wait_for(lambda: len(delivered()) == 8)
        await trio.sleep(0.3)  # nothing else may follow
    got = delivered()
    assert len(got) == 8 and len({e["id"] for e in got}) == 8
    later = [(e["subject"], e["type"]) for e in got[4:]]
    assert sorted(later) == [
        ("d", "recording.deleted"),
        ("m", "recording.marked"),
        ("s", "recording.saved"),
        ("s", "recording.stopped"),
    ]
    assert later.index(("s", "recording.stopped")) < later.index(("s", "recording.saved"))
    assert all(e["data"]["reconciled"] is True for e in got[4:])


class CountingEmitter:
    """The Emitter protocol, keeping only counts and the committed state (bounded)."""

    def __init__(self) -> None:
        self.count = 0
        self.subjects: list[str] = []
        self.state: dict[str, str] = {}

    async def emit(
        self, events: Sequence[Event], *, state: Mapping[str, str | None] | None = None, durable: bool = False
    ) -> None:
        self.count += len(events)
        for e in events:
            if not (e.subject or "").startswith("flood-"):
                self.subjects.append(e.subject or "")
        for key, value in (state or {}).items():
            if value is None:
                self.state.pop(key, None)
            else:
                self.state[key] = value


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_100k_distinct_calls_on_the_hub_keep_memory_bounded_and_live_events_flowing(
    tmp_path: Path, nursery: trio.Nursery, log_capture: LogCapture
) -> None:
    sim = AnywhereNowSimulator()
    await nursery.start(sim.serve)
    emitter: Any = CountingEmitter()
    total, batch = 100_000, 500

    def record(i: int) -> str:
        # A tenth also invent a UCC: the capability checks must stay bounded as well.
        ucc = f"ucc-{i}" if i % 10 == 0 else UCC
        payload = {"uccName": ucc, "correlationId": f"flood-{i}", "stateAction": 1}
        return json.dumps({"type": 1, "target": "RecordingStateChangedEvent", "arguments": [payload]})

    async with running_source(sim, tmp_path, emitter=emitter, max_calls=2000, queue_size=2000) as (source, _):
        await connected(source, sim)
        sent = 0
        with peak_rss() as warm:
            while sent < total // 5:
                await sim.send_records([record(i) for i in range(sent, sent + batch)])
                sent += batch
            await wait_for(lambda: emitter.count == sent, timeout=120)
        after_warmup = rss_bytes()
        while sent < total:
            await sim.send_records([record(i) for i in range(sent, sent + batch)])
            sent += batch
        await wait_for(lambda: emitter.count == total, timeout=300)
        grown = rss_bytes() - after_warmup
        await sim.send_state(UCC, "live-after-flood", 1)
        await wait_for(lambda: "live-after-flood" in emitter.subjects)
        assert len(source.calls) <= 2000 and len(emitter.state) <= 2000
        assert source.stats()["calls_evicted"] == total + 1 - 2000
        assert source.capabilities.skipped > 0
    # 80,000 more calls than fit: memory stays where the first 20,000 left it.
    assert grown < 40 * 1024 * 1024, (grown, warm)
    warnings = log_capture.events("anywherenow_calls_evicted")
    assert 1 <= len(warnings) <= total // 1000 + 1


async def test_a_live_message_while_its_reconcile_is_in_flight_is_announced_once(
    tmp_path: Path, nursery: trio.Nursery, log_capture: LogCapture
) -> None:
    """Deterministic: the REST answer is held at a gate until the live copy has been
    committed; the reconcile then asks again and finds nothing new. One event, one id."""
    sim = AnywhereNowSimulator()
    await nursery.start(sim.serve)
    async with running_source(sim, tmp_path) as (source, emitter):
        await connected(source, sim)
        await sim.send_state(UCC, "race", "Start")
        await wait_for(lambda: len(emitter.events) == 1)
        await outage(sim, source)
        sim.set_state(UCC, "race", "Stop")  # REST already says stopped ...
        sim.set_state(UCC, "race", "Save")
        sim.rest_gate = trio.Event()
        sim.available = True
        await wait_for(lambda: source.connections >= 2 and sim.rest_waiting >= 1)
        # ... and the hub delivers the Stop and the Save live while the answer is held.
        assert await sim.send_state(UCC, "race", "Stop") == 1
        assert await sim.send_state(UCC, "race", "Save") == 1
        await wait_for(lambda: len(emitter.events) == 3)
        sim.rest_gate.set()
        await wait_for(lambda: source.reconciliations >= 2)
        await trio.sleep(0.2)
    assert emitter.types("race") == ["recording.started", "recording.stopped", "recording.saved"]
    assert all("reconciled" not in e.data for e in emitter.events)
    assert len({e.digest() for e in emitter.events}) == 3
    assert log_capture.events("anywherenow_reconcile_superseded_by_live")


async def test_a_live_copy_after_reconciliation_announced_it_is_dropped(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    """The other order, deterministic too: reconciliation committed Stop and Save first."""
    sim = AnywhereNowSimulator()
    await nursery.start(sim.serve)
    async with running_source(sim, tmp_path) as (source, emitter):
        await connected(source, sim)
        await sim.send_state(UCC, "race", "Start")
        await sim.send_state(UCC, "other", "Start")
        await wait_for(lambda: len(emitter.events) == 2)
        await outage(sim, source)
        sim.set_state(UCC, "race", "Stop")
        sim.set_state(UCC, "race", "Mark")
        await back(sim, source, 2)
        await wait_for(lambda: len(emitter.events) == 4)
        for action in ("Stop", "Mark"):  # the hub's late copies
            assert await sim.send_state(UCC, "race", action) == 1
        await sim.send_state(UCC, "other", "Stop")  # a new change: announced
        await wait_for(lambda: emitter.types("other") == ["recording.started", "recording.stopped"])
    assert emitter.types("race") == ["recording.started", "recording.stopped", "recording.marked"]
    assert reconciled_flags(emitter.events, "race") == [False, True, True]


async def test_a_late_copy_of_a_change_that_finished_the_call_by_rest_is_dropped(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    """Found by the soak: the REST answer already showed Stop and Save (the call is final),
    then the hub delivered its own Stop and Save. Announced once each, reconciled; the
    late copies add nothing, and the call is no longer watched."""
    sim = AnywhereNowSimulator()
    await nursery.start(sim.serve)
    async with running_source(sim, tmp_path) as (source, emitter):
        await connected(source, sim)
        await sim.send_state(UCC, "race", "Start")
        await wait_for(lambda: len(emitter.events) == 1)
        await outage(sim, source)
        sim.set_state(UCC, "race", "Stop")
        sim.set_state(UCC, "race", "Save")
        await back(sim, source, 2)
        await wait_for(lambda: len(emitter.events) == 3)
        assert (UCC, "race") not in source.calls  # final: not reconciled again
        for action in ("Stop", "Save"):  # the hub's late copies
            assert await sim.send_state(UCC, "race", action) == 1
        await sim.send_state(UCC, "other", "Start")  # a new call: announced
        await wait_for(lambda: emitter.types("other") == ["recording.started"])
        await outage(sim, source)  # and a later reconnect asks nothing about "race"
        await back(sim, source, 3)
        await trio.sleep(0.2)
    assert emitter.types("race") == ["recording.started", "recording.stopped", "recording.saved"]
    assert reconciled_flags(emitter.events, "race") == [False, True, True]


async def test_a_call_that_starts_and_ends_entirely_during_an_outage_cannot_be_recovered(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    """The REST API answers about a CorrelationId it is asked for; it cannot list calls."""
    sim = AnywhereNowSimulator()
    await nursery.start(sim.serve)
    async with running_source(sim, tmp_path) as (source, emitter):
        await connected(source, sim)
        await sim.send_state(UCC, "known", "Start")
        await wait_for(lambda: len(emitter.events) == 1)
        await outage(sim, source)
        for action in ("Start", "Stop", "Save"):
            assert await sim.send_state(UCC, "ghost", action) == 0  # nobody hears it
        await back(sim, source, 2)
        await sim.send_state(UCC, "known", "Stop")
        await wait_for(lambda: len(emitter.events) == 2)
    assert [e.subject for e in emitter.events] == ["known", "known"]
    assert not any("ghost" in r.path for r in sim.requests)
