"""AnywhereNow payloads -> normalized events, kept free of I/O so it is easy to test.

The hub's ``RecordingStateChangedEvent`` carries UccName, CorrelationId and StateAction
(vendor doc "Recording events"). ASP.NET Core serializes camelCase by default, older or
customized hubs PascalCase, and enums may arrive as numbers or names: accept them all.
The REST "Get Recording state" answer is used to reconcile after a reconnect.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bridge.model import Event, utcnow, vendor_type

VENDOR = "anywherenow"

# StateAction (vendor doc "Recording events").
ACTIONS: dict[int, str] = {
    1: "Start",
    2: "Stop",
    3: "Pause",
    4: "Save",
    5: "Delete",
    6: "Mark",
    7: "UnMark",
}
_ACTION_BY_NAME = {name.lower(): number for number, name in ACTIONS.items()}
_ACTION_TYPES = {
    2: "recording.stopped",
    3: "recording.paused",
    4: "recording.saved",
    5: "recording.deleted",
    6: "recording.marked",
    7: "recording.unmarked",
}

# RecordingState (vendor doc "Get Recording state").
REC_UNINITIALIZED, REC_STARTED, REC_STOPPED, REC_PAUSED = 0, 1, 2, 3
RECORDING_STATES = {0: "Uninitialized", 1: "Started", 2: "Stopped", 3: "Paused"}
_STATE_BY_NAME = {name.lower(): number for number, name in RECORDING_STATES.items()}

# What the bridge remembers per call (persisted through ``ctx.emit(state=...)``).
STARTED, PAUSED = "started", "paused"


class PayloadError(ValueError):
    """A hub message the bridge cannot interpret (quarantined, never silently skipped)."""


def field(payload: dict[str, Any], name: str) -> Any:
    """Look a property up as PascalCase, camelCase or any other casing."""
    if name in payload:
        return payload[name]
    camel = name[:1].lower() + name[1:]
    if camel in payload:
        return payload[camel]
    lowered = name.lower()
    for key, value in payload.items():
        if isinstance(key, str) and key.lower() == lowered:
            return value
    return None


@dataclass(frozen=True)
class Action:
    """A StateAction: its number when known, and how it was spelled on the wire."""

    number: int | None
    name: str  # vendor's name (Start, Stop, ...) or the raw value for unknown ones

    @property
    def known(self) -> bool:
        return self.number in ACTIONS


def _whole_number(text: str) -> int | None:
    """A decimal integer in ASCII digits, else None: str.isdigit() also accepts "²" and
    "١", which int() refuses, and a hub must not crash the source with them."""
    digits = text[1:] if text.startswith("-") else text
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 18:
        return None
    return int(text)


def parse_action(value: Any) -> Action:
    """StateAction as a number (1..7), a numeric string or a name; unknown ones pass through."""
    if isinstance(value, bool) or value is None:
        raise PayloadError(f"StateAction must be a number or a name, got {value!r}")
    if isinstance(value, float):
        if not value.is_integer():
            raise PayloadError(f"StateAction must be a whole number, got {value!r}")
        value = int(value)
    if isinstance(value, int):
        return Action(value, ACTIONS.get(value, str(value)))
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise PayloadError("StateAction is an empty string")
        if len(text) > 64:
            raise PayloadError(
                f"StateAction is not a number or a name: {text[:24]!r}… ({len(text)} characters)"
            )
        number = _whole_number(text)
        if number is not None:
            return parse_action(number)
        number = _ACTION_BY_NAME.get(text.lower())
        if number is not None:
            return Action(number, ACTIONS[number])
        return Action(None, text)
    raise PayloadError(f"StateAction must be a number or a name, got {type(value).__name__}")


def parse_recording_state(value: Any) -> int | None:
    """RecordingState as a number or a name; None when absent or unrecognized."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        number = _whole_number(text)
        if number is not None:
            return number
        return _STATE_BY_NAME.get(text.lower())
    return None


@dataclass(frozen=True)
class StateChange:
    """One validated RecordingStateChangedEvent."""

    ucc: str
    correlation_id: str
    action: Action
    time: datetime | None
    raw: dict[str, Any]


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_invocation(arguments: Any) -> StateChange:
    """Validate the arguments of one RecordingStateChangedEvent invocation.

    The hub sends one object argument. A JSON string holding that object is accepted too
    (some hubs serialize the event themselves before sending it).
    """
    if not isinstance(arguments, list) or not arguments:
        raise PayloadError("invocation arguments must be a non-empty list")
    payload = arguments[0]
    if isinstance(payload, str):
        try:
            payload = json.loads(payload)
        except (ValueError, RecursionError):
            raise PayloadError("argument is a string but not JSON") from None
    if not isinstance(payload, dict):
        raise PayloadError(f"argument must be an object, got {type(payload).__name__}")
    try:
        # The payload is stored as the event's data.raw: lone surrogates ("\\ud800") or
        # NaN would make the commit fail (or the webhook body invalid JSON) later.
        json.dumps(payload, ensure_ascii=False, allow_nan=False).encode()
    except (ValueError, RecursionError) as exc:
        raise PayloadError(f"payload cannot be stored as JSON: {exc}") from None
    correlation_id = field(payload, "CorrelationId")
    if not isinstance(correlation_id, str) or not correlation_id.strip():
        raise PayloadError("CorrelationId is missing or not a non-empty string")
    ucc = field(payload, "UccName")
    if ucc is None:
        ucc = field(payload, "UCCName")
    if ucc is not None and not isinstance(ucc, str):
        raise PayloadError("UccName must be a string")
    if field(payload, "StateAction") is None:
        raise PayloadError("StateAction is missing")
    action = parse_action(field(payload, "StateAction"))
    moment = None
    for name in ("Timestamp", "Time", "EventTime", "DateTime"):
        moment = _parse_time(field(payload, name))
        if moment is not None:
            break
    return StateChange(ucc or "", correlation_id.strip(), action, moment, payload)


def state_key(ucc: str, correlation_id: str) -> str:
    """Persisted-state key for one call (JSON so any UCC name or id round-trips)."""
    return "call:" + json.dumps([ucc, correlation_id], separators=(",", ":"))


def parse_state_key(key: str) -> tuple[str, str] | None:
    if not key.startswith("call:"):
        return None
    try:
        ucc, correlation_id = json.loads(key[5:])
    except (ValueError, TypeError):
        return None
    if not isinstance(ucc, str) or not isinstance(correlation_id, str):
        return None
    return ucc, correlation_id


def live_event(
    source_name: str, change: StateChange, last_seen: str | None
) -> tuple[Event, str | None, bool]:
    """The event for one hub message, plus the call's new remembered state.

    Returns ``(event, new_state, changes_state)``; ``new_state`` None means forget the
    call (it stopped), and ``changes_state`` False leaves the remembered state alone.
    """
    number = change.action.number
    new_state: str | None = None
    changes = True
    if number == 1:
        event_type = "recording.resumed" if last_seen == PAUSED else "recording.started"
        new_state = STARTED
    elif number == 2:
        event_type = "recording.stopped"
    elif number == 3:
        event_type = "recording.paused"
        new_state = PAUSED
    elif number in _ACTION_TYPES:
        event_type = _ACTION_TYPES[number]
        changes = False
    else:
        event_type = vendor_type(VENDOR, change.action.name)
        changes = False
    data: dict[str, Any] = {
        "ucc_name": change.ucc,
        "correlation_id": change.correlation_id,
        "action": change.action.name,
        "state_action": number if number is not None else change.action.name,
        "raw": change.raw,
    }
    identity = {
        "ucc": change.ucc,
        "correlation_id": change.correlation_id,
        "action": number if number is not None else change.action.name,
        "type": event_type,
    }
    event = Event(
        source_name=source_name,
        vendor=VENDOR,
        type=event_type,
        subject=change.correlation_id,
        time=change.time or utcnow(),
        data=data,
        identity=identity,
    )
    return event, new_state, changes


def reconcile_transition(last_seen: str, recording_state: int | None) -> tuple[str | None, str | None]:
    """What was missed, given the remembered state and the REST RecordingState.

    Returns ``(event_type or None, new remembered state)``; a new state of None means the
    call is no longer recording and is forgotten.
    """
    if recording_state == REC_STARTED:
        return ("recording.resumed" if last_seen == PAUSED else None), STARTED
    if recording_state == REC_PAUSED:
        return ("recording.paused" if last_seen != PAUSED else None), PAUSED
    if recording_state in (REC_STOPPED, REC_UNINITIALIZED):
        return "recording.stopped", None
    return None, last_seen


def reconciled_event(
    source_name: str,
    ucc: str,
    correlation_id: str,
    event_type: str,
    last_seen: str,
    response: dict[str, Any] | None,
    reason: str,
) -> Event:
    """An event the bridge inferred from the REST state after missing the live one."""
    state = parse_recording_state(field(response, "RecordingState")) if response else None
    data: dict[str, Any] = {
        "ucc_name": ucc,
        "correlation_id": correlation_id,
        "action": None,
        "reconciled": True,
        "reconcile_reason": reason,
        "last_seen": last_seen,
        "recording_state": RECORDING_STATES.get(state, state) if state is not None else None,
        "raw": response,
    }
    return Event(
        source_name=source_name,
        vendor=VENDOR,
        type=event_type,
        subject=correlation_id,
        time=utcnow(),
        data=data,
        identity={
            "ucc": ucc,
            "correlation_id": correlation_id,
            "type": event_type,
            "reconciled": True,
        },
    )
