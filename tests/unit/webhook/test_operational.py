"""Operational events: one per state change, a minimum interval, opt-in by type glob, and
data that conforms to the published schemas (bridge/schemas/bridge.*/v1.json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import trio

from bridge.model import Event
from bridge.operational import TYPES, Operational, _Watcher, asks_for_operational, type_wanted

SCHEMAS = Path(__file__).resolve().parents[3] / "bridge" / "schemas"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def drained(op: Operational) -> list[Event]:
    out = []
    while True:
        try:
            out.append(op._receive.receive_nowait())
        except trio.WouldBlock:
            return out


def make(min_interval: float = 60.0) -> tuple[Operational, Clock]:
    clock = Clock()
    return Operational(None, enabled=True, min_interval=min_interval, clock=clock), clock


def fail(op: Operational, n: int = 5) -> None:
    op.sink_failing("hook", "webhook", failures=n, error="HTTP 503: busy", status=503, since=1.7e9)


def test_one_event_per_state_change() -> None:
    op, clock = make()
    fail(op)
    fail(op, 6)
    fail(op, 7)
    clock.now += 120
    op.sink_recovered("hook", "webhook", since=1.7e9, now=1.7e9 + 30)
    op.sink_recovered("hook", "webhook", since=1.7e9, now=1.7e9 + 31)
    events = drained(op)
    assert [e.type for e in events] == ["bridge.sink.failing", "bridge.sink.recovered"]
    assert events[0].subject == "hook" and events[0].data["failures"] == 5
    assert events[1].data["down_seconds"] == 30


def test_a_flapping_sink_is_held_to_the_interval_and_the_last_state_wins() -> None:
    op, clock = make(60)
    fail(op)
    clock.now += 1
    op.sink_recovered("hook", "webhook", since=1.7e9, now=1.7e9 + 1)  # a new type: goes out
    clock.now += 1
    fail(op)  # failing again within 60 s of the last failing: held
    op.tick()
    assert [e.type for e in drained(op)] == ["bridge.sink.failing", "bridge.sink.recovered"]
    clock.now += 59
    op.tick()
    assert [e.type for e in drained(op)] == ["bridge.sink.failing"]
    clock.now += 1
    op.sink_recovered("hook", "webhook", since=1.7e9, now=1.7e9 + 70)  # recovered's interval is over
    assert [e.type for e in drained(op)] == ["bridge.sink.recovered"]
    clock.now += 1
    fail(op)  # held (failing went out 2 s ago)…
    op.sink_recovered("hook", "webhook", since=1.7e9, now=1.7e9 + 72)  # …and undone before it ended
    clock.now += 120
    op.tick()
    assert drained(op) == []  # the receiver's last word (recovered) is still true


def test_healthy_from_the_start_announces_nothing() -> None:
    op, _ = make()
    op.sink_recovered("hook", "webhook", since=None, now=0.0)
    op.sink_enabled("hook")
    assert drained(op) == []


def test_dead_letters_fold_within_the_interval() -> None:
    op, clock = make(60)
    for i in range(5):
        op.dead_lettered(
            "hook", event_id=f"e{i}", event_type="call.started", status=400, error="no", attempts=1
        )
    op.dead_lettered(
        "hook", event_id="x", event_type="bridge.sink.failing", status=400, error="no", attempts=1
    )
    first = drained(op)
    assert [(e.data["event_id"], e.data["suppressed"]) for e in first] == [("e0", 0)]
    clock.now += 61
    op.tick()
    (second,) = drained(op)
    assert second.data["event_id"] == "e1" and second.data["suppressed"] == 3


def test_disabled_reporter_commits_nothing() -> None:
    op = Operational(None, enabled=False)
    fail(op)
    op.sink_disabled("hook", "webhook", reason="gone", error="HTTP 410")
    assert drained(op) == []


class FakeHealth:
    def __init__(self, state: str, detail: str = "", reconnects: int = 0) -> None:
        self.state, self.detail, self.reconnects = state, detail, reconnects


class FakeSource:
    vendor = "uptivity"

    def __init__(self) -> None:
        self.health = FakeHealth("starting")


def test_sources_are_watched_for_connection_changes() -> None:
    op, _ = make(0)
    watcher, source = _Watcher(op), FakeSource()
    for state, detail in [("starting", ""), ("connected", ""), ("connected", ""),
                          ("disconnected", "connection refused"), ("disconnected", "refused again"),
                          ("connected", "")]:  # fmt: skip
        source.health = FakeHealth(state, detail)
        watcher.look({"up": source}, None, None)
    events = drained(op)
    assert [e.type for e in events] == [
        "bridge.source.connected", "bridge.source.disconnected", "bridge.source.connected",
    ]  # fmt: skip
    assert events[0].data["down_seconds"] is None
    assert events[1].data["reason"] == "connection refused"
    assert events[2].data["down_seconds"] >= 0


def test_a_flap_between_two_looks_is_still_told() -> None:
    op, _ = make(0)
    watcher, source = _Watcher(op), FakeSource()
    source.health = FakeHealth("connected", reconnects=0)
    watcher.look({"up": source}, None, None)
    source.health = FakeHealth("connected", reconnects=1)  # it dropped and came back meanwhile
    watcher.look({"up": source}, None, None)
    watcher.look({"up": source}, None, None)
    assert [e.type for e in drained(op)] == [
        "bridge.source.connected", "bridge.source.disconnected", "bridge.source.connected",
    ]  # fmt: skip


class FakeSink:
    kind = "nats"

    def __init__(self, state: str, detail: str = "") -> None:
        self.health = FakeHealth(state, detail)
        self.health.failed = 3  # type: ignore[attr-defined]


def test_sinks_without_their_own_reports_are_watched_by_health() -> None:
    op, _ = make(0)
    watcher = _Watcher(op)
    for state in ("starting", "ok", "retrying", "retrying", "open", "ok", "ok"):
        watcher.look_at_sinks({"jetstream": FakeSink(state, "no responders")})
    watcher.look_at_sinks(
        {"hook": type("Webhook", (), {"controls": object(), "health": FakeHealth("open")})()}
    )
    events = drained(op)
    assert [(e.type, e.subject) for e in events] == [
        ("bridge.sink.failing", "jetstream"), ("bridge.sink.recovered", "jetstream"),
    ]  # fmt: skip
    assert events[0].data["kind"] == "nats" and events[0].data["error"] == "no responders"


def test_outbox_refusing_writes_is_announced_once() -> None:
    op, _ = make(0)
    watcher = _Watcher(op)
    for problem in [None, "disk full", "disk full", None, None]:
        watcher.look({}, problem, None)
    assert [e.type for e in drained(op)] == ["bridge.outbox.full"]


@pytest.mark.parametrize(
    ("patterns", "event_type", "wanted"),
    [(["*"], "call.started", True), (["*"], "bridge.sink.failing", False),
     (["bridge.*"], "bridge.sink.failing", True), (["bridge.*"], "call.started", False),
     (["*", "bridge.*"], "bridge.source.connected", True),
     (["bridge.sink.*"], "bridge.source.connected", False),
     (["recording.*"], "bridge.sink.disabled", False), (["*.failing"], "bridge.sink.failing", False)],
)  # fmt: skip
def test_only_sinks_that_name_them_get_operational_events(
    patterns: list[str], event_type: str, wanted: bool
) -> None:
    assert type_wanted(patterns, event_type) is wanted


def test_asking() -> None:
    assert asks_for_operational(["bridge.*"]) and asks_for_operational(["bridge.sink.disabled"])
    assert not asks_for_operational(["*"]) and not asks_for_operational(["recording.*"])


def _schema(event_type: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / event_type / "v1.json").read_text())


def test_every_emitted_type_has_a_schema_and_conforms() -> None:
    op, _ = make(0)
    fail(op)
    op.sink_recovered("hook", "webhook", since=1.7e9, now=1.7e9 + 30)
    op.sink_disabled("hook", "webhook", reason="disable_after", error="HTTP 503: busy")
    op.dead_lettered(
        "hook", event_id="e", event_type="call.started", status=None, error="timeout", attempts=11
    )
    watcher, source = _Watcher(op), FakeSource()
    for state in ("connected", "disconnected", "connected"):
        source.health = FakeHealth(state, "refused")
        watcher.look({"up": source}, None, None)
    watcher.look({}, "disk full", None)
    events = drained(op)
    assert {e.type for e in events} == set(TYPES)
    for event in events:
        envelope = event.to_cloudevent("id-1")
        assert envelope["source"] == "/event-bridge/bridge/bridge"
        assert envelope["dataschema"] == f"urn:event-bridge:schema:{event.type}:v1"
        jsonschema.validate(envelope["data"], _schema(event.type))
