"""The pure core: live StateActions and REST answers against what a call remembers.

Expected values come from the vendor doc's enums ("Get Recording state": RecordingState
Uninitialized 0 / Started 1 / Stopped 2 / Paused 3, MarkingState None 0 / Mark 1 /
Unmark 2, SavingState None 0 / Save 1 / Delete 2), not from the code.
"""

from __future__ import annotations

import json

import pytest

from bridge.sources.anywherenow.calls import CallBook, CallState
from bridge.sources.anywherenow.mapping import parse_action
from bridge.sources.anywherenow.reconciler import StateAnswer, apply_action, reconcile, session_gone

NOW = 1_000.0


def answer(recording: object = None, marking: object = None, saving: object = None) -> StateAnswer:
    body = {"CorrelationId": "c", "RecordingState": recording, "MarkingState": marking, "SavingState": saving}
    return StateAnswer(recording, marking, saving, body)  # type: ignore[arg-type]


def types(state: CallState, got: StateAnswer) -> list[str]:
    return [t.type for t in reconcile(state, got, NOW).transitions]


def test_every_missed_transition_in_order() -> None:
    started = CallState(recording=1, marking=0, saving=0)
    assert types(started, answer(2, 1, 1)) == ["recording.stopped", "recording.marked", "recording.saved"]
    assert types(started, answer(2, 2, 2)) == ["recording.stopped", "recording.unmarked", "recording.deleted"]
    assert types(started, answer(1, 0, 0)) == []
    assert types(CallState(recording=3), answer(1)) == ["recording.resumed"]
    assert types(started, answer(3)) == ["recording.paused"]


def test_recording_state_zero_is_not_stopped() -> None:
    # The doc's own "session found" example answers RecordingState 0 for a live session.
    assert types(CallState(recording=1), answer(0, 1, 1)) == ["recording.marked", "recording.saved"]
    outcome = reconcile(CallState(recording=1), answer(0), NOW)
    assert outcome.state.recording == 1 and not outcome.forget
    # A call first known as "not started" that is now recording: its start was missed.
    baseline = reconcile(CallState(marking=1), answer(0), NOW).state
    assert baseline.recording == 0
    assert types(baseline, answer(1)) == ["recording.started"]


def test_unknown_enum_values_pass_through() -> None:
    assert types(CallState(recording=1), answer(9)) == ["vendor.anywherenow.recordingstate.9"]
    assert types(CallState(recording=1, marking=0), answer(1, 5)) == ["vendor.anywherenow.markingstate.5"]
    assert types(CallState(saving=0), answer(None, None, "Archive")) == [
        "vendor.anywherenow.savingstate.archive"
    ]
    # The same unknown value again is no new transition.
    again = reconcile(CallState(recording=1), answer(9), NOW).state
    assert types(again, answer(9)) == []


def test_a_call_is_forgotten_when_stopped_and_saved_or_deleted() -> None:
    assert reconcile(CallState(recording=1), answer(2, 0, 1), NOW).forget
    assert reconcile(CallState(recording=1), answer(2, 0, 2), NOW).forget
    assert not reconcile(CallState(recording=1), answer(2, 0, 0), NOW).forget
    assert not reconcile(CallState(recording=1), answer(1, 0, 1), NOW).forget  # saved while recording


def test_an_unknown_session_ends_the_call_once() -> None:
    gone = session_gone(CallState(recording=1), NOW)
    assert [t.type for t in gone.transitions] == ["recording.stopped"]
    assert gone.forget and gone.unconfirmed
    already = session_gone(CallState(recording=2), NOW)
    assert already.transitions == [] and already.forget and already.unconfirmed
    done = session_gone(CallState(recording=2, saving=1), NOW)
    assert not done.unconfirmed


@pytest.mark.parametrize(
    ("before", "action", "expected", "dimension", "value"),
    [
        (None, 1, "recording.started", "recording", 1),
        (CallState(recording=3), 1, "recording.resumed", "recording", 1),
        (CallState(recording=1), 3, "recording.paused", "recording", 3),
        (CallState(recording=1), 2, "recording.stopped", "recording", 2),
        (CallState(recording=2), 4, "recording.saved", "saving", 1),
        (CallState(recording=2), 5, "recording.deleted", "saving", 2),
        (None, 6, "recording.marked", "marking", 1),
        (CallState(marking=1), 7, "recording.unmarked", "marking", 2),
    ],
)
def test_live_actions(
    before: CallState | None, action: int, expected: str, dimension: str, value: int
) -> None:
    outcome = apply_action(before, parse_action(action), NOW)
    assert outcome.event_type == expected and outcome.changed
    assert outcome.state is not None and outcome.state.value(dimension) == value


def test_unknown_live_actions_change_nothing() -> None:
    outcome = apply_action(CallState(recording=1), parse_action(42), NOW)
    assert outcome.event_type == "vendor.anywherenow.42" and not outcome.changed
    assert outcome.state == CallState(recording=1)


def test_the_live_copy_of_a_reconciled_change_is_dropped_once() -> None:
    reconciled = reconcile(CallState(recording=1), answer(2, 0, 0), NOW).state
    late = apply_action(reconciled, parse_action(2), NOW + 1)
    assert late.event_type is None and not late.changed
    # Only once: a second Stop after that is the hub's own repeat, announced.
    assert late.state is not None
    assert apply_action(late.state, parse_action(2), NOW + 2).event_type == "recording.stopped"
    # A different change after reconciliation is announced.
    assert apply_action(reconciled, parse_action(4), NOW + 1).event_type == "recording.saved"


def test_persisted_state_round_trips_and_old_form_is_read() -> None:
    state = CallState(recording=3, marking=1, saving=0, since=12.5)
    assert CallState.decode(state.encode(), NOW) == state
    assert CallState.decode(json.dumps({"state": "paused", "since": 7.0}), NOW) == CallState(
        recording=3, since=7.0
    )
    assert CallState.decode("started", NOW) == CallState(recording=1, since=NOW)
    for junk in ("[]", "{}", '{"state": "stopped"}', "null"):
        assert CallState.decode(junk, NOW) is None


def test_call_book_is_bounded_and_evicts_the_oldest_stopped_first() -> None:
    book = CallBook(max_calls=3)
    book.put(("u", "a"), CallState(recording=1))
    book.put(("u", "b"), CallState(recording=2))  # stopped, waiting for Save/Delete
    book.put(("u", "c"), CallState(recording=1))
    assert book.put(("u", "d"), CallState(recording=1)) == [("u", "b")]
    assert book.put(("u", "e"), CallState(recording=1)) == [("u", "a")]  # no stopped one left: oldest
    assert book.keys() == {("u", "c"), ("u", "d"), ("u", "e")} and book.evicted == 2
    for i in range(10_000):
        book.put(("u", f"x{i}"), CallState(recording=1))
    assert len(book) == 3


def test_expired_calls() -> None:
    book = CallBook(max_calls=10)
    book.put(("u", "old"), CallState(recording=2, since=0.0))
    book.put(("u", "new"), CallState(recording=2, since=NOW))
    assert book.expired(NOW + 10, forget_after=100) == [("u", "old")]


def test_a_call_finished_by_reconciliation_is_kept_only_for_its_late_copy() -> None:
    """Stop and Save found over REST: kept (memory) so the hub's own Stop and Save, read
    later, are recognised; a sweep lets it go once the grace has passed, never as
    "unconfirmed" (its saving state is final)."""
    final = reconcile(CallState(recording=1, since=NOW), answer(2, 0, 1), NOW).state
    assert final.finished and final.from_reconcile == {"recording", "saving"}
    book = CallBook(max_calls=10)
    book.put(("u", "done"), final)
    book.put(("u", "open"), CallState(recording=1, since=NOW))
    assert book.settled(NOW + 30, grace=60) == [] and book.settled(NOW + 61, grace=60) == [("u", "done")]
    assert book.expired(NOW + 10**6, forget_after=100) == [("u", "open")]
    copy = apply_action(final, parse_action(2), NOW + 1)
    assert copy.event_type is None and copy.state is not None
    last = apply_action(copy.state, parse_action(4), NOW + 1)
    assert last.event_type is None and last.state is not None and not last.state.from_reconcile


def test_the_api_reports_states_not_history() -> None:
    # Mark then UnMark while away: only the UnMark shows; Pause then resume: nothing.
    assert types(CallState(recording=1, marking=0), answer(1, 2)) == ["recording.unmarked"]
    assert types(CallState(recording=1), answer(1)) == []


def test_capability_checks_are_bounded() -> None:
    from bridge.sources.anywherenow import capabilities

    checks = capabilities.CapabilityChecks(0.1, 1.0)
    for i in range(capabilities.QUEUE + 50):
        checks.want(f"ucc-{i}")
    checks.want("ucc-0")  # already queued: not asked twice
    assert checks.skipped == 50
    assert checks._receive.statistics().current_buffer_used == capabilities.QUEUE


def test_a_start_for_a_call_already_recording_is_an_inferred_resume_not_a_second_start() -> None:
    """Found by the soak: a Pause lost with a dropped hub connection, then the live Start of
    the resume, was announced as a second recording.started (a recording that never began)."""
    outcome = apply_action(CallState(recording=1), parse_action(1), NOW)
    assert outcome.event_type == "recording.resumed"
    assert outcome.inferred_kind == "start_while_recording"
    first = apply_action(None, parse_action(1), NOW)
    assert first.event_type == "recording.started" and first.inferred_kind is None
    stopped_then_started = apply_action(CallState(recording=2), parse_action(1), NOW)
    assert stopped_then_started.event_type == "recording.started"
