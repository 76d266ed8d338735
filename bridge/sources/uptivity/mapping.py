"""Pure mapping of Uptivity documents to the common event model (no I/O).

``to_event`` maps one ``CALLCOPYEVENT``; :func:`parse_vendor_time` reads the proxy's
zone-less local times in the source's zone, resolving daylight-saving edges as the
README says; :data:`LIVE_STATE` is what each event type says about a device's
recording state (the state reconciliation compares with the API's answer).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bridge.model import Event, vendor_type

VENDOR = "uptivity"

TYPE_MAP = {
    "CALLSTART": "call.started",
    "CALLSTOP": "call.ended",
    "RECORDINGSTARTED": "recording.started",
    "RECORDINGSTOPPED": "recording.stopped",
    "RECORDINGPAUSED": "recording.paused",
    "RECORDINGRESUMED": "recording.resumed",
    "RECORDINGUPDATE": "recording.saved",
}

# The recording state of a device after an event of this type (types not listed leave it).
LIVE_STATE = {
    "recording.started": "recording",
    "recording.resumed": "recording",
    "recording.paused": "paused",
    "recording.stopped": "idle",
    "call.ended": "idle",
}

# normalized field -> vendor field in EVENTDATA
FIELD_MAP = {
    "device_id": "DEVICEID",
    "device_alias": "DEVICEALIAS",
    "agent_id": "AGENTID",
    "sys_user": "SYS_USER",
    "crm_user": "CRM_USER",
    "global_call_id": "GLOBALCALLID",
    "call_instance": "CALLINSTANCE",
    "ani": "ANI",
    "dnis": "DNIS",
    "gate": "GATE",
    "group": "GROUP",
    "recording_id": "RECORDID",
    "filename": "FILENAME",
    "channel": "CHANNEL",
    "keepdays": "KEEPDAYS",
    "core": "COREIDENT",
    "station": "STATION",
    "error_reason": "ERRORREASON",
}
DIRECTIONS = {"I": "inbound", "O": "outbound", "?": "unknown"}
TIME_FORMATS = ("%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S")
USER_FIELDS = tuple(f"USER{i}" for i in range(1, 16))
# An ambiguous local time (the repeated hour when clocks go back) is resolved to the
# occurrence nearer to when the bridge received it, if one is this close; else the first.
NEAR_RECEIPT = timedelta(hours=6)


def stripped(fields: dict[str, Any]) -> dict[str, str]:
    """Values with surrounding whitespace removed, empty ones left out (one pass)."""
    return {k: t for k, v in fields.items() if isinstance(v, str) and (t := v.strip())}


def parse_vendor_time(value: str | None, tz: ZoneInfo, received: datetime | None = None) -> datetime | None:
    """Read a zone-less vendor timestamp ("1/31/2011 2:39:49 PM") in the source's zone.

    Daylight-saving edges: a time that occurs twice (clocks go back) is the occurrence
    nearer to ``received`` when one is within :data:`NEAR_RECEIPT`, otherwise the first
    (daylight) one; a time that does not exist (clocks go forward) is read with the
    offset before the change, i.e. it lands that many minutes after the gap.
    """
    if not value:
        return None
    for fmt in TIME_FORMATS:
        try:
            naive = datetime.strptime(value, fmt)
        except ValueError:
            continue
        first = naive.replace(tzinfo=tz, fold=0)
        second = naive.replace(tzinfo=tz, fold=1)
        if first.utcoffset() == second.utcoffset() or received is None:
            return first
        # Ambiguous, or in a gap: fold=0 and fold=1 give different instants.
        if _exists(first) and _exists(second) and received is not None:
            a, b = abs(first - received), abs(second.astimezone(UTC) - received)
            if min(a, b) <= NEAR_RECEIPT and b < a:
                return second
        return first
    return None


def _exists(moment: datetime) -> bool:
    """False for a wall time inside a spring-forward gap (it does not survive a round trip)."""
    back = moment.astimezone(UTC).astimezone(moment.tzinfo)
    return back.replace(tzinfo=None) == moment.replace(tzinfo=None)


def common_fields(values: dict[str, str], tz: ZoneInfo, received: datetime) -> dict[str, Any]:
    """The normalized fields every Uptivity event carries, from trimmed vendor values."""
    data: dict[str, Any] = {name: values.get(vendor_field) for name, vendor_field in FIELD_MAP.items()}
    direction = values.get("CALLDIRECTION") or values.get("CALLTYPE")
    data["direction"] = DIRECTIONS.get(direction.upper(), direction) if direction else None
    data["user_fields"] = {key: values[key] for key in USER_FIELDS if key in values}
    start = parse_vendor_time(values.get("STARTTIME"), tz, received)
    stop = parse_vendor_time(values.get("STOPTIME"), tz, received)
    data["start_time"] = start.isoformat() if start else None
    data["stop_time"] = stop.isoformat() if stop else None
    return data


def event_time(event_type: str, data: dict[str, Any], received: datetime) -> tuple[datetime, str]:
    """When it happened: STOPTIME for an end, else STARTTIME, else when it was received."""
    stop, start = data.get("stop_time"), data.get("start_time")
    if event_type in ("call.ended", "recording.stopped") and stop:
        return datetime.fromisoformat(stop), "vendor"
    if start:
        return datetime.fromisoformat(start), "vendor"
    return received, "received"


def to_event(
    fields: dict[str, Any], *, source_name: str, tz: ZoneInfo, received: datetime, raw: bytes | None = None
) -> Event:
    """Map one parsed ``CALLCOPYEVENT`` to the common model; unknown types pass through.

    ``raw`` (the document's bytes, when known) is the event's identity for its id.
    """
    top = stripped(fields)
    event_type_raw = top.get("EVENTTYPE", "")
    event_type = TYPE_MAP.get(event_type_raw.upper()) or vendor_type(VENDOR, event_type_raw or "unknown")
    data_raw = fields.get("EVENTDATA")
    values = stripped(data_raw) if isinstance(data_raw, dict) else {}
    data: dict[str, Any] = {"vendor": VENDOR, "source_name": source_name}
    data.update(common_fields(values, tz, received))
    data["event_class"] = top.get("EVENTCLASS")
    data["vendor_event_type"] = event_type_raw or None
    data["module"] = top.get("MODULE")
    when, data["time_source"] = event_time(event_type, data, received)
    data["raw"] = fields
    subject = data["device_id"] or data["device_alias"] or data["global_call_id"]
    return Event(
        source_name=source_name,
        vendor=VENDOR,
        type=event_type,
        subject=subject,
        time=when,
        data=data,
        identity=raw if raw is not None else {"raw": fields},
    )
