"""AnywhereNow payloads -> normalized events; pure (no I/O), tested without sockets.

The hub's ``RecordingStateChangedEvent`` carries UccName, CorrelationId and StateAction
(vendor doc "Recording events"). ASP.NET Core serializes camelCase by default, older or
customized hubs PascalCase, and enums may arrive as numbers or names: accept them all.
Unknown enum values are kept as they came and pass through as ``vendor.anywherenow.*``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bridge.errors import VendorInputError
from bridge.model import Event, utcnow, vendor_type

VENDOR = "anywherenow"

# StateAction (vendor doc "Recording events").
ACTIONS: dict[int, str] = {1: "Start", 2: "Stop", 3: "Pause", 4: "Save", 5: "Delete", 6: "Mark", 7: "UnMark"}
_ACTION_BY_NAME = {name.lower(): number for number, name in ACTIONS.items()}

# The three enums of "Get Recording state" (vendor doc).
RECORDING_STATES = {0: "Uninitialized", 1: "Started", 2: "Stopped", 3: "Paused"}
MARKING_STATES = {0: "None", 1: "Mark", 2: "Unmark"}
SAVING_STATES = {0: "None", 1: "Save", 2: "Delete"}
REC_UNINITIALIZED, REC_STARTED, REC_STOPPED, REC_PAUSED = 0, 1, 2, 3


class PayloadError(VendorInputError):
    """A hub message or REST answer the bridge cannot interpret (quarantined, never skipped)."""


def field(payload: Any, name: str) -> Any:
    """Look a property up as PascalCase, camelCase or any other casing."""
    if not isinstance(payload, dict):
        return None
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


def whole_number(text: str) -> int | None:
    """A decimal integer in ASCII digits, else None: str.isdigit() also accepts "²" and
    "١", which int() refuses, and a hub must not crash the source with them."""
    digits = text[1:] if text.startswith("-") else text
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 18:
        return None
    return int(text)


@dataclass(frozen=True)
class Action:
    """A StateAction: its number when known, and how it was spelled on the wire."""

    number: int | None
    name: str  # vendor's name (Start, Stop, ...) or the raw value for unknown ones

    @property
    def known(self) -> bool:
        return self.number in ACTIONS


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
            raise PayloadError(f"StateAction is not a number or a name ({len(text)} characters)")
        number = whole_number(text)
        if number is not None:
            return parse_action(number)
        known = _ACTION_BY_NAME.get(text.lower())
        if known is not None:
            return Action(known, ACTIONS[known])
        return Action(None, text)
    raise PayloadError(f"StateAction must be a number or a name, got {type(value).__name__}")


def parse_enum(value: Any, names: dict[int, str]) -> int | str | None:
    """One of the REST enums as a number or a name (any casing).

    Returns the number when it is one, the trimmed text for an unknown name, None when
    absent or not a scalar. Unknown numbers are returned as they are (pass-through).
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()[:64]
        number = whole_number(text)
        if number is not None:
            return number
        for known, name in names.items():
            if name.lower() == text.lower():
                return known
        return text or None
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


def storable(payload: Any, what: str) -> None:
    """Refuse what cannot be stored as data.raw (lone surrogates, NaN, absurd depth)."""
    try:
        json.dumps(payload, ensure_ascii=False, allow_nan=False).encode()
    except (ValueError, RecursionError) as exc:
        raise PayloadError(f"{what} cannot be stored as JSON: {exc}") from None


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
    storable(payload, "payload")
    correlation_id = field(payload, "CorrelationId")
    if not isinstance(correlation_id, str) or not correlation_id.strip():
        raise PayloadError("CorrelationId is missing or not a non-empty string")
    if len(correlation_id) > 256:
        raise PayloadError(f"CorrelationId is {len(correlation_id)} characters long (at most 256)")
    ucc = field(payload, "UccName")
    if ucc is None:
        ucc = field(payload, "UCCName")
    if ucc is not None and not isinstance(ucc, str):
        raise PayloadError("UccName must be a string")
    if ucc is not None and len(ucc) > 256:
        raise PayloadError(f"UccName is {len(ucc)} characters long (at most 256)")
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


def enum_name(value: int | str | None, names: dict[int, str]) -> str | None:
    if value is None:
        return None
    if isinstance(value, int):
        return names.get(value, str(value))
    return value


def unknown_type(kind: str, value: int | str | None) -> str:
    """``vendor.anywherenow.<kind>.<value>`` for an enum value the doc does not list."""
    return vendor_type(VENDOR, f"{kind}.{value}")


def live_event(source_name: str, change: StateChange, event_type: str) -> Event:
    """The event for one hub message (the type is decided by :mod:`.reconciler`)."""
    number = change.action.number
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
    return Event(
        source_name=source_name,
        vendor=VENDOR,
        type=event_type,
        subject=change.correlation_id,
        time=change.time or utcnow(),
        data=data,
        identity=identity,
    )


def action_type(action: Action) -> str:
    """The event type of a StateAction that does not depend on the call (all but Start)."""
    return {
        1: "recording.started",
        2: "recording.stopped",
        3: "recording.paused",
        4: "recording.saved",
        5: "recording.deleted",
        6: "recording.marked",
        7: "recording.unmarked",
    }.get(action.number or 0, vendor_type(VENDOR, action.name))
