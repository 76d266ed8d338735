"""AnywhereNow payload parsing and the mapping/reconciliation rules (no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bridge.errors import VendorInputError
from bridge.sources.anywherenow.mapping import (
    RECORDING_STATES,
    PayloadError,
    action_type,
    live_event,
    parse_action,
    parse_enum,
    parse_invocation,
    parse_state_key,
    state_key,
)
from bridge.sources.anywherenow.reconciler import Transition, reconciled_event
from bridge.sources.anywherenow.rest import ErrorInfo, error_message

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
    event = live_event("s", change, action_type(change.action))
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


def test_payload_errors_are_vendor_input_errors() -> None:
    with pytest.raises(VendorInputError):
        parse_invocation([{"StateAction": 1}])


def test_action_types_and_unknown_actions_pass_through() -> None:
    assert [action_type(parse_action(n)) for n in range(1, 8)] == [
        "recording.started",
        "recording.stopped",
        "recording.paused",
        "recording.saved",
        "recording.deleted",
        "recording.marked",
        "recording.unmarked",
    ]
    assert action_type(parse_action(0)) == "vendor.anywherenow.0"
    assert action_type(parse_action("Whisper Mode")) == "vendor.anywherenow.whispermode"


def test_rest_enums_as_numbers_names_and_unknown_values() -> None:
    assert parse_enum(2, RECORDING_STATES) == 2
    assert parse_enum("Paused", RECORDING_STATES) == 3
    assert parse_enum("paused", RECORDING_STATES) == 3
    assert parse_enum("3", RECORDING_STATES) == 3
    assert parse_enum(3.0, RECORDING_STATES) == 3
    assert parse_enum(17, RECORDING_STATES) == 17  # unknown: passed through, not refused
    assert parse_enum("Archived", RECORDING_STATES) == "Archived"
    for absent in (None, True, [], {}):
        assert parse_enum(absent, RECORDING_STATES) is None


def test_identity_is_deterministic_per_message() -> None:
    change = parse_invocation([{"UccName": "u", "CorrelationId": "c", "StateAction": 4}])
    first = live_event("s", change, "recording.saved")
    again_change = parse_invocation([{"uccName": "u", "correlationId": "c", "stateAction": "Save"}])
    again = live_event("s", again_change, "recording.saved")
    assert first.digest() == again.digest()
    other = live_event(
        "s", parse_invocation([{"UccName": "u", "CorrelationId": "c", "StateAction": 5}]), "recording.deleted"
    )
    assert other.digest() != first.digest()
    reconciled = reconciled_event("s", "u", "c", Transition("recording.saved", "saving", 0, 1), None, "x")
    assert reconciled.digest() != first.digest() and reconciled.identity["reconciled"] is True


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
        "s",
        "u",
        "c",
        Transition("recording.stopped", "recording", 1, 2),
        body,
        "state_changed_while_disconnected",
    )
    assert event.data["reconciled"] is True
    assert event.data["raw"] == body
    assert (event.data["last_seen"], event.data["recording_state"]) == ("Started", "Stopped")
    assert event.subject == "c" and event.vendor == "anywherenow" and event.type == "recording.stopped"


def test_state_keys_round_trip_any_names() -> None:
    for ucc, cid in [("u", "c"), ('ucc/with:odd"chars', "1d6c6a58-6739-4f0c-98ff-0968292c8c30"), ("", "x")]:
        assert parse_state_key(state_key(ucc, cid)) == (ucc, cid)
    assert parse_state_key("other") is None
    assert parse_state_key("call:[1,2]") is None


def test_rest_error_messages_in_every_documented_shape() -> None:
    assert error_message({"ErrorMessage": None}) is None
    assert error_message({"ErrorMessage": {"ErrorType": 1, "Message": "m"}}) == ErrorInfo(1, "m")
    nested = {"ErrorMessage": {"ErrorMessage": {"ErrorType": 2, "Message": "n"}}}
    assert error_message(nested) == ErrorInfo(2, "n")
    assert error_message({"errorMessage": {"errorType": 3, "message": "camel"}}) == ErrorInfo(3, "camel")
    assert error_message({"ErrorMessage": "plain"}) == ErrorInfo(None, "plain")
    assert error_message({"ErrorMessage": {"ErrorType": "Configuration"}}) == ErrorInfo("Configuration", None)
    assert error_message({"ErrorMessage": {"ErrorType": "Configuration"}}).configuration  # type: ignore[union-attr]
