"""The bridge's parsers against the hand-written fixtures in tests/fixtures/anywherenow/.

Expected values are read off the vendor doc and the SignalR specs (see the fixtures'
README), not produced by the code; no simulator is involved, except in the last test,
which checks the *simulator* accepts the doc's request bodies.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bridge.simulators.anywherenow import AnywhereNowSimulator
from bridge.sources.anywherenow.calls import CallState
from bridge.sources.anywherenow.hub import RECORD_SEPARATOR, TolerantJsonHubProtocol
from bridge.sources.anywherenow.mapping import field, parse_invocation
from bridge.sources.anywherenow.negotiate import HubConnectError, read_answer
from bridge.sources.anywherenow.reconciler import reconcile
from bridge.sources.anywherenow.rest import read_capabilities, read_state_answer

FIXTURES = Path(__file__).parents[2] / "fixtures" / "anywherenow"
CID = "1d6c6a58-6739-4f0c-98ff-0968292c8c30"


def raw(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


@pytest.mark.parametrize("name", ["state-found.json", "state-found.camel.json"])
def test_session_found(name: str) -> None:
    answer = read_state_answer(200, raw(name), "v2", CID)
    assert answer.kind == "state" and answer.error is None
    assert answer.state is not None
    # RecordingState 0 Uninitialized, MarkingState 1 Mark, SavingState 1 Save.
    assert (answer.state.recording, answer.state.marking, answer.state.saving) == (0, 1, 1)
    # A call the bridge saw start: RecordingState 0 does not end it; the Mark and the
    # Save it missed are announced, in that order.
    outcome = reconcile(CallState(recording=1, marking=0, saving=0), answer.state, 0.0)
    assert [t.type for t in outcome.transitions] == ["recording.marked", "recording.saved"]
    assert outcome.state.recording == 1 and not outcome.forget


@pytest.mark.parametrize("name", ["state-found.json", "state-found.camel.json"])
def test_an_answer_about_another_call_is_not_used(name: str) -> None:
    assert read_state_answer(200, raw(name), "v2", "some-other-call").kind == "unreadable"


@pytest.mark.parametrize("name", ["error-message.json", "error-message.camel.json"])
@pytest.mark.parametrize("status", [200, 400, 404, 500])
def test_any_status_with_an_error_message_is_an_error_answer(name: str, status: int) -> None:
    answer = read_state_answer(status, raw(name), "v2", CID)
    assert answer.error is not None
    assert (answer.error.error_type, answer.error.message) == (1, "string")
    # ErrorType 1 (Configuration, in doc order) is the UCC's problem: asked again;
    # with HTTP 404 the server says it looked and found no session.
    assert answer.kind == ("not_found" if status == 404 else "error")


@pytest.mark.parametrize("name", ["capabilities.json", "capabilities.camel.json"])
def test_capabilities(name: str) -> None:
    answer = read_capabilities(200, raw(name), "v2")
    assert answer.kind == "state" and field(answer.body, "AgentCanEditRecordings") is True


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("hub-event.pascal.txt", [("ucc-demo-name", CID, 6, "Mark")]),
        ("hub-event.camel.txt", [("ucc-demo-name", CID, 4, "Save")]),
        ("hub-event.names.txt", [("ucc-demo-name", CID, 5, "Delete")]),
    ],
)
def test_hub_records(name: str, expected: list[tuple[str, str, int, str]]) -> None:
    bad: list[str] = []
    protocol = TolerantJsonHubProtocol(lambda record, reason: bad.append(reason), lambda error: None)
    text = raw(name).decode()
    assert text.endswith(RECORD_SEPARATOR)
    messages = protocol.parse_messages(text)
    assert bad == []
    invocations = [m for m in messages if getattr(m, "target", None) == "RecordingStateChangedEvent"]
    got = []
    for message in invocations:
        change = parse_invocation(message.arguments)
        got.append((change.ucc, change.correlation_id, change.action.number, change.action.name))
    assert got == expected


def test_negotiate_v1_uses_the_connection_token() -> None:
    answer = read_answer(raw("negotiate-v1.json"))
    assert answer.redirect is None
    assert answer.ident == "05265228-1e2c-46c5-82a1-6a5bcc3f0143"
    assert answer.connection_id == "807809a5-31bf-470d-9e23-afaee35d8a0d"


def test_negotiate_v0_uses_the_connection_id() -> None:
    answer = read_answer(raw("negotiate-v0.json"))
    assert answer.ident == answer.connection_id == "807809a5-31bf-470d-9e23-afaee35d8a0d"


def test_negotiate_redirect_and_error() -> None:
    answer = read_answer(raw("negotiate-redirect.json"))
    assert answer.redirect == "https://myapp.service.signalr.net/client/?hub=recordinghub"
    assert answer.token == "<a JWT issued by the service>"
    with pytest.raises(HubConnectError, match="This connection is not allowed"):
        read_answer(raw("negotiate-error.json"))


@pytest.mark.parametrize("name", ["set-action-id.json", "set-action-name.json"])
def test_the_simulator_accepts_the_documented_set_requests(name: str) -> None:
    sim = AnywhereNowSimulator()
    status, body = sim._set(raw(name))
    assert status == 200 and body["ErrorMessage"] is None
    assert body["CorrelationId"] == CID
    request = json.loads(raw(name))
    number = {1: 1, "Mark": 6}[request["Action"]]
    call = sim.calls[("ucc-demo-name", CID)]
    assert (call.recording, call.marking) == ((1, 0) if number == 1 else (0, 1))
