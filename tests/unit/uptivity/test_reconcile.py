"""Reconciliation's pure core: last known state per device vs a status answer."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from lxml import etree

from bridge.model import Event
from bridge.sources.uptivity.reconcile import (
    BASELINE_KEY,
    DeviceStatus,
    Known,
    devices_from_answer,
    known_from_state,
    reconciled_events,
    transitions,
)

TZ = ZoneInfo("America/Chicago")
RECEIVED = datetime(2026, 3, 2, 18, 0, tzinfo=UTC)


def status(device: str, state: str, **values: str) -> DeviceStatus:
    base = {"DEVICEID": device, **values}
    return DeviceStatus(device, state, base, dict(base))


@pytest.mark.parametrize(
    ("before", "now", "types"),
    [
        ("idle", "recording", ["recording.started"]),
        ("idle", "paused", ["recording.started", "recording.paused"]),
        ("recording", "paused", ["recording.paused"]),
        ("paused", "recording", ["recording.resumed"]),
        ("recording", "idle", ["recording.stopped"]),
        ("paused", "idle", ["recording.stopped"]),
        ("recording", "recording", []),
        ("paused", "paused", []),
        ("idle", "idle", []),
    ],
)
def test_each_change_is_explained_by_the_events_that_were_missed(
    before: str, now: str, types: list[str]
) -> None:
    known = {"1111": Known(before)} if before != "idle" else {}
    found = transitions(known, [status("1111", now)], complete=True)
    assert [list(t.types) for t in found if t.types] == ([types] if types else [])


def test_another_recording_on_the_same_device_is_a_stop_and_a_start() -> None:
    known = {"1111": Known("recording", "a.wav", "37")}
    (t,) = transitions(
        known, [status("1111", "recording", FILENAME="b.wav", CALLINSTANCE="38")], complete=True
    )
    assert t.types == ("recording.stopped", "recording.started")
    stop, start = reconciled_events(t, source_name="up", reason="reconnect", tz=TZ, received=RECEIVED)
    assert stop.data["filename"] == "a.wav" and stop.data["call_instance"] == "37"  # the one that ended
    assert start.data["filename"] == "b.wav" and start.data["call_instance"] == "38"
    assert stop.time == RECEIVED and stop.data["time_source"] == "reconciled"  # no STOPTIME for it


def test_a_device_missing_from_a_complete_list_has_stopped_but_not_from_a_partial_one() -> None:
    known = {"2222": Known("paused")}
    (t,) = transitions(known, [], complete=True)
    assert (t.device_id, t.types) == ("2222", ("recording.stopped",))
    assert transitions(known, [], complete=False) == []


def test_reconciled_event_carries_the_answers_fields_and_times() -> None:
    (t,) = transitions(
        {},
        [
            status(
                "1111",
                "recording",
                DEVICEALIAS="DESK1",
                GROUP="Sales & Marketing",
                STARTTIME="3/8/2026 1:30:00 AM",
                CALLDIRECTION="I",
                USER2="winners",
            )
        ],
        complete=True,
    )
    (event,) = reconciled_events(t, source_name="up", reason="reconnect", tz=TZ, received=RECEIVED)
    assert event.type == "recording.started" and event.subject == "1111"
    assert event.data["reconciled"] is True and event.data["reconcile_reason"] == "reconnect"
    assert (event.data["last_seen"], event.data["recording_state"]) == ("idle", "recording")
    assert event.data["group"] == "Sales & Marketing" and event.data["direction"] == "inbound"
    assert event.data["user_fields"] == {"USER2": "winners"}
    assert event.time.isoformat() == "2026-03-08T01:30:00-06:00" and event.data["time_source"] == "vendor"
    assert event.data["raw"]["GROUP"] == "Sales & Marketing"
    assert event.ce_source == "/event-bridge/uptivity/up"


def test_a_reconciled_stop_uses_stoptime_when_the_answer_gives_it() -> None:
    (t,) = transitions(
        {"1111": Known("recording")}, [status("1111", "idle", STOPTIME="3/2/2026 11:58:00 AM")], complete=True
    )
    (event,) = reconciled_events(t, source_name="up", reason="reconnect", tz=TZ, received=RECEIVED)
    assert event.type == "recording.stopped"
    assert event.time.isoformat() == "2026-03-02T11:58:00-06:00"


def test_ids_of_reconciled_events_differ_by_transition() -> None:
    a = transitions({}, [status("1111", "recording")], complete=True)[0]
    b = transitions({"1111": Known("paused")}, [status("1111", "recording")], complete=True)[0]
    (ea,) = reconciled_events(a, source_name="up", reason="reconnect", tz=TZ, received=RECEIVED)
    (eb,) = reconciled_events(b, source_name="up", reason="reconnect", tz=TZ, received=RECEIVED)
    assert ea.digest() != eb.digest()
    (again,) = reconciled_events(a, source_name="up", reason="reconnect", tz=TZ, received=datetime.now(UTC))
    assert again.digest() == ea.digest()  # not the time it was reconciled


def test_known_state_round_trips_and_ignores_garbage() -> None:
    state = {
        "device:1111": Known("paused", "f.wav", "3").dump(),
        "device:2222": "not json",
        "device:3333": '{"state": "exploded"}',
        BASELINE_KEY: "1",
    }
    assert known_from_state(state) == {"1111": Known("paused", "f.wav", "3")}


def test_devices_directly_under_result_and_under_devices() -> None:
    xml = (
        b"<RESULT><DEVICE><DEVICEID>1</DEVICEID><RECORDING><ISRECORDING>N</ISRECORDING></RECORDING></DEVICE>"
        b"<DEVICES><COUNT>1</COUNT><DEVICE><DEVICEID>2</DEVICEID>"
        b"<RECORDING><ISRECORDING>Y</ISRECORDING><STATUS>recordpaused</STATUS></RECORDING></DEVICE></DEVICES>"
        b"<DEVICE><DEVICEALIAS>no id</DEVICEALIAS></DEVICE></RESULT>"
    )
    found = {d.device_id: d.state for d in devices_from_answer(etree.fromstring(xml))}
    assert found == {"1": "idle", "2": "paused"}


def test_reconciled_events_conform_to_the_shipped_schemas() -> None:
    """Every field a reconciled Uptivity event carries is one the event contract documents."""
    from bridge.model import event_id
    from tests.unit.contract.conformance import check_structured

    cases = [
        ({}, status("1111", "paused", STARTTIME="3/2/2026 11:00:00 AM", FILENAME="a.wav", CALLINSTANCE="1")),
        ({"1111": Known("recording", "a.wav", "1")}, status("1111", "recording", FILENAME="b.wav")),
        ({"1111": Known("paused")}, status("1111", "idle", STOPTIME="3/2/2026 11:58:00 AM")),
    ]
    seen = set()
    for known, answer in cases:
        for t in transitions(known, [answer], complete=True):
            for event in reconciled_events(t, source_name="up", reason="startup", tz=TZ, received=RECEIVED):
                check_structured(event.to_cloudevent(event_id(event.digest(), 0)))
                seen.add(event.type)
    assert seen == {"recording.started", "recording.paused", "recording.stopped"}


def test_live_events_received_with_the_answer_supersede_what_they_report() -> None:
    from bridge.sources.uptivity.reconcile import supersede

    def live(event_type: str, **data: str) -> Event:
        return Event(
            "up", "uptivity", event_type, "1111", RECEIVED, {"filename": None, "call_instance": None, **data}
        )

    def case(before: Known, now: DeviceStatus, stream: list[Event]) -> list[str]:
        (t,) = transitions({"1111": before} if before.state != "idle" else {}, [now], complete=True)
        missed = reconciled_events(t, source_name="up", reason="reconnect", tz=TZ, received=RECEIVED)
        return [e.type for e in supersede(t, missed, stream)]

    stop = (Known("recording"), status("1111", "idle"))
    assert case(*stop, []) == ["recording.stopped"]
    assert case(*stop, [live("recording.stopped")]) == []  # the live stop is that change
    assert case(*stop, [live("recording.paused"), live("recording.resumed"), live("recording.stopped")]) == []
    # A live start of a new call does not stand for the stop of the old one.
    assert case(*stop, [live("recording.started"), live("recording.stopped")]) == ["recording.stopped"]
    # Another recording: stopped and started while away, the pause of the new one seen live.
    replaced = (Known("recording", "a.wav"), status("1111", "paused", FILENAME="b.wav"))
    assert case(*replaced, []) == ["recording.stopped", "recording.started", "recording.paused"]
    assert case(*replaced, [live("recording.paused", filename="b.wav")]) == [
        "recording.stopped",
        "recording.started",
    ]
    # Live events that only come after the answer's state leave the reconciled ones alone.
    start = (Known("idle"), status("1111", "recording"))
    assert case(*start, [live("recording.paused")]) == ["recording.started"]
