"""Each documented Uptivity example maps to the expected CloudEvent.

The golden files (tests/golden/uptivity/) are written by hand from the docs' examples,
field by field; they are never regenerated from the code. The id is a content hash and
is checked for determinism below instead; ``raw`` is checked against the docs' text in
tests/unit/uptivity/test_conformance.py.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bridge.model import NORMALIZED_TYPES, event_id
from bridge.simulators.uptivity.examples import EXAMPLES
from bridge.sources.uptivity.mapping import parse_vendor_time, to_event
from bridge.sources.uptivity.stream import element_fields, parse_document

GOLDEN = Path(__file__).parents[2] / "golden" / "uptivity"
RECEIVED = datetime(2026, 11, 22, 9, 0, 0, tzinfo=UTC)
TZ = ZoneInfo("America/Chicago")


def cloudevent_for(name: str) -> dict:
    fields = element_fields(parse_document(EXAMPLES[name]))
    event = to_event(fields, source_name="uptivity-main", tz=TZ, received=RECEIVED, raw=EXAMPLES[name])
    return event.to_cloudevent(event_id(event.digest(), 0))


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_documented_example_matches_golden(name: str) -> None:
    actual = cloudevent_for(name)
    expected = json.loads((GOLDEN / f"{name}.json").read_text())
    for attribute in ("specversion", "source", "type", "subject", "time", "datacontenttype"):
        assert actual[attribute] == expected[attribute], attribute
    data = dict(actual["data"])
    assert isinstance(data.pop("raw"), dict)
    assert data == expected["data"]


def test_all_seven_types_map_to_normalized_types() -> None:
    types = {name: cloudevent_for(name)["type"] for name in EXAMPLES}
    assert set(types.values()) <= NORMALIZED_TYPES
    assert types == {
        "CALLSTART": "call.started",
        "CALLSTOP": "call.ended",
        "RECORDINGSTARTED": "recording.started",
        "RECORDINGSTOPPED": "recording.stopped",
        "RECORDINGPAUSED": "recording.paused",
        "RECORDINGRESUMED": "recording.resumed",
        "RECORDINGUPDATE": "recording.saved",
    }


def test_starttime_without_zone_is_read_in_the_source_time_zone() -> None:
    event = cloudevent_for("CALLSTART")
    assert event["time"] == "2011-01-31T14:39:49.000-06:00"
    assert parse_vendor_time("7/4/2020 2:00:00 AM", TZ).isoformat() == "2020-07-04T02:00:00-05:00"


def test_event_without_vendor_time_uses_receive_time() -> None:
    assert cloudevent_for("RECORDINGUPDATE")["time"] == "2026-11-22T09:00:00.000+00:00"


def test_unknown_event_type_passes_through_with_all_fields() -> None:
    doc = (
        b"<CALLCOPYEVENT><EVENTCLASS>CALL</EVENTCLASS><EVENTTYPE> CALLUPDATE </EVENTTYPE>"
        b"<EVENTDATA><DEVICEID>42</DEVICEID><USER3>vip</USER3></EVENTDATA></CALLCOPYEVENT>"
    )
    event = to_event(element_fields(parse_document(doc)), source_name="s", tz=TZ, received=RECEIVED)
    assert event.type == "vendor.uptivity.callupdate"
    assert event.subject == "42"
    assert event.data["user_fields"] == {"USER3": "vip"}
    assert event.data["raw"]["EVENTTYPE"] == " CALLUPDATE "


def test_ids_are_deterministic_and_differ_by_content_and_ordinal() -> None:
    a = cloudevent_for("RECORDINGPAUSED")
    b = cloudevent_for("RECORDINGPAUSED")
    c = cloudevent_for("RECORDINGRESUMED")
    assert a["id"] == b["id"] != c["id"]
    raw = EXAMPLES["RECORDINGPAUSED"]
    fields = element_fields(parse_document(raw))
    event = to_event(fields, source_name="uptivity-main", tz=TZ, received=RECEIVED, raw=raw)
    assert event_id(event.digest(), 1) != a["id"]
    other_source = to_event(fields, source_name="other", tz=TZ, received=RECEIVED, raw=raw)
    assert event_id(other_source.digest(), 0) != a["id"]
    # The id depends on what was sent, not on when it was received.
    later = to_event(
        fields, source_name="uptivity-main", tz=TZ, received=datetime(2030, 1, 1, tzinfo=UTC), raw=raw
    )
    assert event_id(later.digest(), 0) == a["id"]
