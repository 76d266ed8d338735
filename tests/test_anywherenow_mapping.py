"""AnywhereNow payload parsing and the mapping/reconciliation rules (no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bridge.sources.anywherenow_mapping import (
    PAUSED,
    STARTED,
    PayloadError,
    live_event,
    parse_action,
    parse_invocation,
    parse_state_key,
    reconcile_transition,
    reconciled_event,
    state_key,
)
from bridge.sources.anywherenow_rest import error_message

NAMES = ["Start", "Stop", "Pause", "Save", "Delete", "Mark", "UnMark"]


@pytest.mark.parametrize("number", range(1, 8))
def test_state_action_numbers_names_and_numeric_strings(number: int) -> None:
    name = NAMES[number - 1]
    for value in (number, float(number), str(number), name, name.upper(), name.lower(), f" {name} "):
        action = parse_action(value)
        assert (action.number, action.name, action.known) == (number, name, True)


def test_unknown_and_invalid_state_actions() -> None:
    assert parse_action(9).number == 9 and not parse_action(9).known
    assert parse_action("Redact").number is None and parse_action("Redact").name == "Redact"
    for bad in (None, True, 1.5, "", [], {}):
        with pytest.raises(PayloadError):
            parse_action(bad)


@pytest.mark.parametrize(
    "payload",
    [
        {"UccName": "u", "CorrelationId": "c", "StateAction": 3},
        {"uccName": "u", "correlationId": "c", "stateAction": "Pause"},
        {"UCCName": "u", "correlationid": "c", "STATEACTION": "3"},
    ],
)
def test_any_property_casing_is_accepted(payload: dict) -> None:
    change = parse_invocation([payload])
    assert (change.ucc, change.correlation_id, change.action.number) == ("u", "c", 3)
    assert change.raw == payload


def test_a_json_string_argument_and_a_payload_time() -> None:
    change = parse_invocation(
        ['{"CorrelationId": "c", "StateAction": 1, "Timestamp": "2026-01-02T03:04:05Z"}']
    )
    assert change.time == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert change.ucc == ""
    event, _, _ = live_event("s", change, None)
    assert event.time == change.time


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        (None, "list"),
        ([], "list"),
        ([42], "object"),
        (["{not json"], "JSON"),
        ([{"StateAction": 1}], "CorrelationId"),
        ([{"CorrelationId": "  ", "StateAction": 1}], "CorrelationId"),
        ([{"CorrelationId": "c"}], "StateAction"),
        ([{"CorrelationId": "c", "StateAction": 1, "UccName": 5}], "UccName"),
    ],
)
def test_malformed_invocations_say_what_is_wrong(arguments: object, problem: str) -> None:
    with pytest.raises(PayloadError, match=problem):
        parse_invocation(arguments)


def test_live_events_track_the_call_state() -> None:
    def step(action: object, last: str | None) -> tuple[str, str | None, bool]:
        event, new_state, changes = live_event(
            "s", parse_invocation([{"CorrelationId": "c", "StateAction": action}]), last
        )
        return event.type, new_state, changes

    assert step(1, None) == ("recording.started", STARTED, True)
    assert step(1, STARTED) == ("recording.started", STARTED, True)
    assert step(1, PAUSED) == ("recording.resumed", STARTED, True)
    assert step(3, STARTED) == ("recording.paused", PAUSED, True)
    assert step(2, PAUSED) == ("recording.stopped", None, True)
    assert step(6, STARTED) == ("recording.marked", None, False)
    assert step(0, STARTED) == ("vendor.anywherenow.0", None, False)
    assert step("Whisper Mode", None) == ("vendor.anywherenow.whispermode", None, False)


def test_identity_is_deterministic_per_message() -> None:
    change = parse_invocation([{"UccName": "u", "CorrelationId": "c", "StateAction": 4}])
    first, _, _ = live_event("s", change, None)
    again, _, _ = live_event(
        "s", parse_invocation([{"uccName": "u", "correlationId": "c", "stateAction": "Save"}]), None
    )
    assert first.digest() == again.digest()
    other, _, _ = live_event(
        "s", parse_invocation([{"UccName": "u", "CorrelationId": "c", "StateAction": 5}]), None
    )
    assert other.digest() != first.digest()
    reconciled = reconciled_event("s", "u", "c", "recording.saved", STARTED, None, "x")
    assert reconciled.digest() != first.digest() and reconciled.identity["reconciled"] is True


@pytest.mark.parametrize(
    ("last", "rest_state", "expected"),
    [
        (STARTED, 1, (None, STARTED)),
        (STARTED, 3, ("recording.paused", PAUSED)),
        (STARTED, 2, ("recording.stopped", None)),
        (STARTED, 0, ("recording.stopped", None)),
        (PAUSED, 1, ("recording.resumed", STARTED)),
        (PAUSED, 3, (None, PAUSED)),
        (PAUSED, 2, ("recording.stopped", None)),
        (STARTED, 17, (None, STARTED)),
    ],
)
def test_reconcile_transitions(last: str, rest_state: int, expected: tuple) -> None:
    assert reconcile_transition(last, rest_state) == expected


def test_reconciled_event_carries_the_rest_answer() -> None:
    body = {
        "CorrelationId": "c",
        "RecordingState": 2,
        "MarkingState": 0,
        "SavingState": 1,
        "ErrorMessage": None,
        "UCCName": "u",
    }
    event = reconciled_event(
        "s", "u", "c", "recording.stopped", STARTED, body, "state_changed_while_disconnected"
    )
    assert event.data["reconciled"] is True
    assert event.data["raw"] == body
    assert event.data["recording_state"] == "Stopped"
    assert event.subject == "c" and event.vendor == "anywherenow"


def test_state_keys_round_trip_any_names() -> None:
    for ucc, cid in [("u", "c"), ('ucc/with:odd"chars', "1d6c6a58-6739-4f0c-98ff-0968292c8c30"), ("", "x")]:
        assert parse_state_key(state_key(ucc, cid)) == (ucc, cid)
    assert parse_state_key("other") is None
    assert parse_state_key("call:[1,2]") is None


def test_rest_error_messages_in_every_documented_shape() -> None:
    assert error_message({"ErrorMessage": None}) is None
    assert error_message({"ErrorMessage": {"ErrorType": 1, "Message": "m"}}) == {
        "ErrorType": 1,
        "Message": "m",
    }
    nested = {"ErrorMessage": {"ErrorMessage": {"ErrorType": 2, "Message": "n"}}}
    assert error_message(nested) == {"ErrorType": 2, "Message": "n"}
    assert error_message({"errorMessage": {"errorType": 3, "message": "camel"}}) == {
        "ErrorType": 3,
        "Message": "camel",
    }
    assert error_message({"ErrorMessage": "plain"}) == {"ErrorType": None, "Message": "plain"}
