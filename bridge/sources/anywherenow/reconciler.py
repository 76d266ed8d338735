"""The pure core: what a hub message or a REST answer means for a remembered call.

:func:`apply_action` turns one live StateAction into its event type and the call's new
state. :func:`reconcile` compares what the bridge remembers with a "Get Recording state"
answer and lists every transition it missed, in the order they can have happened:
recording (stopped, paused, resumed, started), then marking (marked/unmarked), then
saving (saved/deleted). :func:`session_gone` is the answer for a session the API no
longer knows. Nothing here does I/O; tests/unit/anywherenow/ checks it without sockets.

The REST API reports states, not history: a Mark followed by an UnMark while the bridge
was away shows as Unmark only, and a call that started and ended entirely during an
outage is never seen (the API cannot list calls).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bridge.model import Event, utcnow
from bridge.sources.anywherenow.calls import CallState, Enum
from bridge.sources.anywherenow.mapping import (
    MARKING_STATES,
    REC_PAUSED,
    REC_STARTED,
    REC_STOPPED,
    REC_UNINITIALIZED,
    RECORDING_STATES,
    SAVING_STATES,
    VENDOR,
    Action,
    action_type,
    enum_name,
    field,
    parse_enum,
    unknown_type,
)

# StateAction number -> (dimension it changes, value it leads to).
_ACTION_EFFECT: dict[int, tuple[str, int]] = {
    1: ("recording", REC_STARTED),
    2: ("recording", REC_STOPPED),
    3: ("recording", REC_PAUSED),
    4: ("saving", 1),
    5: ("saving", 2),
    6: ("marking", 1),
    7: ("marking", 2),
}


@dataclass(frozen=True)
class LiveOutcome:
    """``event_type`` None: the message repeats a change reconciliation already announced."""

    event_type: str | None
    state: CallState | None  # the call's new state; None: not a call worth remembering
    changed: bool  # the remembered state changed (and must be committed)
    inferred_kind: str | None = None  # set: the type is inferred from the state, not the action


def apply_action(state: CallState | None, action: Action, now: float) -> LiveOutcome:
    effect = _ACTION_EFFECT.get(action.number or 0)
    if effect is None:  # unknown StateAction: passed through, the call's state unchanged
        return LiveOutcome(action_type(action), state, False)
    dimension, value = effect
    before = state.value(dimension) if state is not None else None
    event_type = action_type(action)
    if action.number == 1 and before == REC_PAUSED:
        event_type = "recording.resumed"
    inferred_kind = None
    if action.number == 1 and before == REC_STARTED and not (state and dimension in state.from_reconcile):
        # A Start for a call already recording: it was paused in between, and the bridge
        # did not see the pause (a message lost with a connection). "Started" would claim
        # a second recording; it is a resume.
        event_type, inferred_kind = "recording.resumed", "start_while_recording"
    if state is not None and before == value and dimension in state.from_reconcile:
        # Reconciliation announced exactly this change; this is the hub's late copy.
        return LiveOutcome(None, state.with_(dimension, value, state.since, reconciled=False), False)
    base = state if state is not None else CallState(since=now)
    return LiveOutcome(event_type, base.with_(dimension, value, now, reconciled=False), True, inferred_kind)


@dataclass(frozen=True)
class Transition:
    type: str
    dimension: str
    before: Enum
    after: Enum


@dataclass(frozen=True)
class StateAnswer:
    """The three states of a "Get Recording state" answer (None: not in the answer)."""

    recording: Enum
    marking: Enum
    saving: Enum
    body: dict[str, Any]


@dataclass(frozen=True)
class Reconciled:
    transitions: list[Transition]
    state: CallState
    forget: bool  # nothing more can happen to the call (finished, or the session is gone)
    unconfirmed: bool = False  # forgotten without a final saving state


def _recording(before: Enum, after: Enum) -> str | None:
    if after in (before, REC_UNINITIALIZED):
        return None  # 0 is "not started yet / unknown", never "stopped"
    if after == REC_STARTED:
        if before == REC_PAUSED:
            return "recording.resumed"
        # A start is missed only when the bridge knew the call without a recording.
        return "recording.started" if before in (REC_UNINITIALIZED, REC_STOPPED) else None
    if after == REC_STOPPED:
        return None if before == REC_UNINITIALIZED else "recording.stopped"
    if after == REC_PAUSED:
        return "recording.paused"
    return unknown_type("recordingstate", after)


def _flag(before: Enum, after: Enum, kind: str, names: tuple[str, str]) -> str | None:
    if after == before or after == 0:
        return None  # None (0) after a Mark or a Save: the API forgot, nothing happened
    if after == 1:
        return names[0]
    if after == 2:
        return names[1]
    return unknown_type(kind, after)


def reconcile(state: CallState, answer: StateAnswer, now: float) -> Reconciled:
    transitions: list[Transition] = []
    new = state
    rules = (
        ("recording", answer.recording, _recording),
        (
            "marking",
            answer.marking,
            lambda b, a: _flag(b, a, "markingstate", ("recording.marked", "recording.unmarked")),
        ),
        (
            "saving",
            answer.saving,
            lambda b, a: _flag(b, a, "savingstate", ("recording.saved", "recording.deleted")),
        ),
    )
    for dimension, after, rule in rules:
        if after is None:
            continue
        before = state.value(dimension)
        event_type = rule(before, after)
        if event_type is not None:
            transitions.append(Transition(event_type, dimension, before, after))
            new = new.with_(dimension, after, now, reconciled=True)
        elif before is None or (after != before and after != 0):
            new = new.with_(dimension, after, new.since, reconciled=False)  # a baseline, no event
    return Reconciled(transitions, new, new.finished)


def session_gone(state: CallState, now: float) -> Reconciled:
    """The API says it has no such session: the call ended (inferred), once."""
    transitions: list[Transition] = []
    if not state.stopped:
        transitions.append(Transition("recording.stopped", "recording", state.recording, REC_STOPPED))
    new = state.with_("recording", REC_STOPPED, now, reconciled=True)
    return Reconciled(transitions, new, True, unconfirmed=not new.finished)


def reconciled_event(
    source_name: str,
    ucc: str,
    correlation_id: str,
    transition: Transition,
    body: dict[str, Any] | None,
    reason: str,
) -> Event:
    """An event the bridge inferred from the REST answer after missing the live one."""
    names = {"recording": RECORDING_STATES, "marking": MARKING_STATES, "saving": SAVING_STATES}[
        transition.dimension
    ]
    recording = parse_enum(field(body, "RecordingState"), RECORDING_STATES) if body else None
    # Only the fields the event schemas declare (bridge/schemas, closed): the REST answer
    # itself, ErrorMessage included, is data.raw.
    data: dict[str, Any] = {
        "ucc_name": ucc,
        "correlation_id": correlation_id,
        "action": None,
        "reconciled": True,
        "reconcile_reason": reason,
        "last_seen": enum_name(transition.before, names),
        "recording_state": enum_name(recording, RECORDING_STATES),
        "raw": body,
    }
    return Event(
        source_name=source_name,
        vendor=VENDOR,
        type=transition.type,
        subject=correlation_id,
        time=utcnow(),
        data=data,
        identity={"ucc": ucc, "correlation_id": correlation_id, "type": transition.type, "reconciled": True},
    )
