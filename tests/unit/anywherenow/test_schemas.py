"""Every event data the AnywhereNow source builds conforms to the published (closed) schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

import bridge
from bridge.sources.anywherenow.calls import CallState
from bridge.sources.anywherenow.mapping import action_type, live_event, parse_invocation
from bridge.sources.anywherenow.reconciler import StateAnswer, reconcile, reconciled_event, session_gone

SCHEMAS = Path(bridge.__file__).parent / "schemas"


def check(event_type: str, data: dict[str, object]) -> None:
    family = "vendor" if event_type.startswith("vendor.") else event_type
    schema = json.loads((SCHEMAS / family / "v1.json").read_text())
    Draft202012Validator(schema).validate(data)


@pytest.mark.parametrize("action", [1, 2, 3, 4, 5, 6, 7, 42, "Whisper"])
def test_live_events(action: object) -> None:
    change = parse_invocation([{"uccName": "u", "correlationId": "c", "stateAction": action}])
    event = live_event("s", change, action_type(change.action))
    check(event.type, event.data)


def test_reconciled_events() -> None:
    body = {
        "CorrelationId": "c",
        "RecordingState": 2,
        "MarkingState": 2,
        "SavingState": 9,
        "ErrorMessage": None,
    }
    answer = StateAnswer(2, 2, 9, body)
    outcome = reconcile(CallState(recording=3, marking=1, saving=0), answer, 0.0)
    assert len(outcome.transitions) == 3
    gone_body = {"ErrorMessage": {"ErrorType": 2, "Message": "No recording session found"}}
    gone = session_gone(CallState(recording=1), 0.0)
    for transitions, raw, reason in (
        (outcome.transitions, body, "state"),
        (gone.transitions, gone_body, "gone"),
    ):
        for t in transitions:
            event = reconciled_event("s", "u", "c", t, raw, reason)
            check(event.type, event.data)
