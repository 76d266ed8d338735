"""Pure reconciliation: last known recording state per device vs a status answer.

The Event Proxy has no replay, but the API server knows each device's current state
(DEVICELIST, DEVICESTATUS, DEVICERECORDINGSTATUS). Comparing that with the state the
bridge last recorded (persisted with the events) gives the transitions it missed; they
are emitted with ``data.reconciled = true``. What no answer can show is a whole
recording that began and ended while the bridge was away.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from bridge.model import Event
from bridge.sources.uptivity.mapping import LIVE_STATE, VENDOR, common_fields, stripped
from bridge.sources.uptivity.stream import element_fields

STATES = ("idle", "paused", "recording")  # in rank order
STATE_PREFIX = "device:"
BASELINE_KEY = "baseline"  # set once the first reconciliation recorded every device's state

# (last known, now) -> the events that explain the change.
PATHS: dict[tuple[str, str], tuple[str, ...]] = {
    ("idle", "recording"): ("recording.started",),
    ("idle", "paused"): ("recording.started", "recording.paused"),
    ("recording", "paused"): ("recording.paused",),
    ("paused", "recording"): ("recording.resumed",),
    ("recording", "idle"): ("recording.stopped",),
    ("paused", "idle"): ("recording.stopped",),
}
# The same state but another recording (another FILENAME or CALLINSTANCE): one ended
# and the next began while the bridge was away.
REPLACED = {
    "recording": ("recording.stopped", "recording.started"),
    "paused": ("recording.stopped", "recording.started", "recording.paused"),
}


@dataclass(frozen=True)
class Known:
    """What the bridge last recorded about one device."""

    state: str = "idle"
    filename: str | None = None
    call_instance: str | None = None

    def dump(self) -> str:
        return json.dumps(
            {"state": self.state, "filename": self.filename, "call_instance": self.call_instance}
        )

    @classmethod
    def load(cls, text: str) -> Known | None:
        try:
            value = json.loads(text)
            state = value["state"]
        except (ValueError, KeyError, TypeError):
            return None
        if state not in STATES:
            return None
        return cls(state, value.get("filename"), value.get("call_instance"))


def known_from_state(state: dict[str, str]) -> dict[str, Known]:
    out: dict[str, Known] = {}
    for key, value in state.items():
        if key.startswith(STATE_PREFIX):
            known = Known.load(value)
            if known is not None:
                out[key[len(STATE_PREFIX) :]] = known
    return out


@dataclass
class DeviceStatus:
    """One device as a status answer describes it."""

    device_id: str
    state: str
    values: dict[str, str]  # trimmed device fields plus those of the deciding RECORDING
    raw: dict[str, Any]  # everything the answer said about the device, as sent
    recordings: list[dict[str, Any]] = field(default_factory=list)

    def known(self) -> Known:
        if self.state == "idle":
            return Known("idle")
        return Known(self.state, self.values.get("FILENAME"), self.values.get("CALLINSTANCE"))


def _recording_state(rec: dict[str, str]) -> str:
    status = rec.get("STATUS", "").lower()
    if status == "recordpaused":
        return "paused"
    if status == "recording":
        return "recording"
    return "recording" if rec.get("ISRECORDING", "").upper() in ("Y", "YES", "TRUE", "1") else "idle"


def _device(element: Any, extra: list[Any]) -> DeviceStatus | None:
    raw = element_fields(element)
    recordings = [element_fields(r) for r in element.findall("RECORDING")]
    recordings += [element_fields(r) for r in extra]
    base = stripped(raw)
    device_id = base.get("DEVICEID")
    if not device_id:
        return None
    chosen: dict[str, str] = {}
    state = "idle"
    for rec in (stripped(r) for r in recordings):
        rec_state = _recording_state(rec)
        # A recording instance outranks a paused one, a paused one an idle one.
        if not chosen or STATES.index(rec_state) > STATES.index(state):
            state, chosen = rec_state, rec
    if extra:
        raw = {**raw, "RECORDING": recordings}
    return DeviceStatus(device_id, state, {**base, **chosen}, raw, recordings)


def devices_from_answer(result: Any) -> list[DeviceStatus]:
    """Every DEVICE of a status answer (under DEVICES or directly under RESULT).

    A RECORDING that follows a DEVICE as its sibling (as in the docs' own
    DEVICERECORDINGSTATUS example) belongs to that device.
    """
    containers = [result, *result.findall("DEVICES")]
    out: list[DeviceStatus] = []
    for container in containers:
        current: Any = None
        extra: list[Any] = []
        for child in container:
            if child.tag == "DEVICE":
                if current is not None and (found := _device(current, extra)) is not None:
                    out.append(found)
                current, extra = child, []
            elif child.tag == "RECORDING" and current is not None:
                extra.append(child)
        if current is not None and (found := _device(current, extra)) is not None:
            out.append(found)
    return out


@dataclass(frozen=True)
class Transition:
    device_id: str
    previous: Known
    now: Known
    types: tuple[str, ...]
    status: DeviceStatus | None


def transitions(known: dict[str, Known], statuses: list[DeviceStatus], *, complete: bool) -> list[Transition]:
    """What changed per device. ``complete``: the answer lists every device (DEVICELIST),
    so a device the bridge knew as recording that is missing from it has stopped."""
    out: list[Transition] = []
    seen: set[str] = set()
    for status in statuses:
        seen.add(status.device_id)
        before = known.get(status.device_id, Known("idle"))
        now = status.known()
        types = PATHS.get((before.state, now.state), ())
        if "idle" not in (before.state, now.state) and _other_recording(before, now):
            types = REPLACED[now.state]
        if types or before != now:
            out.append(Transition(status.device_id, before, now, types, status))
    if complete:
        for device_id, before in known.items():
            if device_id not in seen and before.state != "idle":
                out.append(Transition(device_id, before, Known("idle"), ("recording.stopped",), None))
    return out


def _other_recording(before: Known, now: Known) -> bool:
    for a, b in ((before.filename, now.filename), (before.call_instance, now.call_instance)):
        if a and b and a != b:
            return True
    return False


def reconciled_events(
    transition: Transition,
    *,
    source_name: str,
    reason: str,
    tz: ZoneInfo,
    received: datetime,
) -> list[Event]:
    """The events of one transition, with the answer's fields and ``reconciled = true``.

    ``reason``: why reconciliation ran (``startup`` or ``reconnect``). ``last_seen`` is the
    state the bridge last recorded, ``recording_state`` the one the answer reports
    (``idle``, ``recording`` or ``paused``); the answer itself is ``raw``.
    """
    status = transition.status
    values = status.values if status else {"DEVICEID": transition.device_id}
    raw: dict[str, Any] = status.raw if status else {"DEVICEID": transition.device_id}
    events = []
    for event_type in transition.types:
        data: dict[str, Any] = {"vendor": VENDOR, "source_name": source_name}
        data.update(common_fields(values, tz, received))
        data["reconciled"] = True
        data["reconcile_reason"] = reason
        data["last_seen"] = transition.previous.state
        data["recording_state"] = transition.now.state
        if event_type == "recording.stopped" and transition.now.state != "idle":
            # The recording that ended is the one the bridge knew, not the current one.
            data["filename"] = transition.previous.filename
            data["call_instance"] = transition.previous.call_instance
        when, data["time_source"] = _when(event_type, data, transition, received)
        data["raw"] = raw
        identity = {
            "reconciled": event_type,
            "device": transition.device_id,
            "previous": transition.previous.dump(),
            "raw": raw,
        }
        events.append(
            Event(
                source_name=source_name,
                vendor=VENDOR,
                type=event_type,
                subject=transition.device_id,
                time=when,
                data=data,
                identity=identity,
            )
        )
    return events


def _when(event_type: str, data: dict[str, Any], t: Transition, received: datetime) -> tuple[datetime, str]:
    """STARTTIME for a start of the answer's recording, STOPTIME for a stop of it; a
    pause, a resume and the end of an earlier recording carry no time: when reconciled."""
    if event_type == "recording.started" and data.get("start_time"):
        return datetime.fromisoformat(data["start_time"]), "vendor"
    if event_type == "recording.stopped" and t.now.state == "idle" and data.get("stop_time"):
        return datetime.fromisoformat(data["stop_time"]), "vendor"
    return received, "reconciled"


def after_live(before: Known, event: Event) -> Known | None:
    """The device's state after a live event, or None when the event cannot follow
    ``before`` (something happened in between that the bridge did not see)."""
    new = LIVE_STATE.get(event.type)
    if new is None:
        return before
    filename, instance = event.data.get("filename"), event.data.get("call_instance")
    if event.type == "recording.started":
        return Known(new, filename, instance) if before.state == "idle" else None
    if before.state == "idle" and event.type != "call.ended":
        return None  # a pause, resume or stop of a recording the bridge never saw start
    if new == "idle":
        return Known("idle")
    now = Known(new, filename or before.filename, instance or before.call_instance)
    return None if _other_recording(before, now) else now


def supersede(t: Transition, missed: list[Event], live: list[Event]) -> list[Event]:
    """The reconciled events of ``t`` that the live events received with the answer do
    not already report.

    The live events came after the subscription; the answer was taken somewhere among
    them. If they lead from the last known state to the answer's, nothing else happened
    while the bridge was away: they are the report, all of ``missed`` goes. Otherwise
    only the latest reconciled changes that the first live events repeat go (a live
    start of a new call does not stand for the stop of the old one).
    """
    state: Known | None = t.previous
    for event in live:
        if state is None:
            break
        state = after_live(state, event)
        if state is not None and state.state == t.now.state and not _other_recording(state, t.now):
            return []
    live_types = [e.type for e in live if e.type in LIVE_STATE]
    for k in range(min(len(missed), len(live_types)), 0, -1):
        if [e.type for e in missed[-k:]] == live_types[:k]:
            return missed[:-k]
    return missed
