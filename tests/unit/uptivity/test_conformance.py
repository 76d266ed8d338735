"""The bridge's side of the wire against the vendor docs' own examples, byte for byte
(tests/fixtures/uptivity/, see its README), with no simulator involved."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bridge.sources.uptivity.api import (
    answers,
    device_list_request,
    device_request,
    echo_request,
    events_request,
    outcome,
    parse_answer,
)
from bridge.sources.uptivity.mapping import to_event
from bridge.sources.uptivity.reconcile import devices_from_answer
from bridge.sources.uptivity.stream import Document, StreamSplitter, element_fields, parse_document

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "uptivity"
CRLF = b"\r\n"  # "Messages that are sent should end with a carriage return / line feed"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


@pytest.mark.parametrize("doc", ["5.3", "16.2"])
def test_requests_are_the_documented_examples(doc: str) -> None:
    lines = {"5.3": (122, 2753, 664, 764), "16.2": (148, 2887, 696, 799)}[doc]
    assert echo_request(1) == fixture(f"{doc}-request-test-L{lines[0]}.xml") + CRLF
    assert events_request(0, "ALL", "") == fixture(f"{doc}-request-events-L{lines[1]}.xml") + CRLF
    assert (
        device_request("DEVICESTATUS", 24, device_alias="DESK1")
        == fixture(f"{doc}-request-devicestatus-L{lines[2]}.xml") + CRLF
    )
    assert (
        device_request("DEVICERECORDINGSTATUS", 24, device_alias="DESK1")
        == fixture(f"{doc}-request-devicerecordingstatus-L{lines[3]}.xml") + CRLF
    )


def test_devicelist_request_follows_the_documented_message_structure() -> None:
    assert device_list_request(1) == fixture("5.3-request-devicelist-composed.xml") + CRLF
    # By DEVICEID (what the bridge knows from events), same layout as the docs' DESK1 example.
    assert device_request("DEVICERECORDINGSTATUS", 7, device_id="1111") == (
        b"<REQUEST>\n  <TYPE>DEVICERECORDINGSTATUS</TYPE>\n  <DEVICEID>1111</DEVICEID>\n"
        b"  <REQUESTID>7</REQUESTID>\n</REQUEST>\r\n"
    )


# (fixture, REQUESTTYPE, REQUESTID, RESULTTYPE, RESULTCODE, outcome): read off the docs.
RESULTS = [
    ("5.3-result-test-L131.xml", "TEST", "1", "API_OK", 20, "ok"),
    ("16.2-result-test-L159.xml", "TEST", "1", "API_OK", 20, "ok"),
    ("5.3-result-events-L2764.xml", "EVENTS", "0", "API_OK", 20, "ok"),
    ("16.2-result-events-L2898.xml", "EVENTS", "0", "API_OK", 20, "ok"),
    ("5.3-result-generic-L2113.xml", None, "1", "API_OK", 20, "ok"),
    ("16.2-result-generic-L2230.xml", None, "1", "API_OK", 20, "ok"),
    ("5.3-result-generic-L2124.xml", None, "1", "ERROR", 17, "permanent"),
    ("16.2-result-generic-L2241.xml", None, "1", "ERROR", 17, "permanent"),
    ("5.3-result-callstart-L200.xml", "CALLSTART", "1", "API_DEVICE_INVALID", 8, "transient"),
    ("5.3-result-callstart-L218.xml", "CALLSTART", "1", "API_DEVICE_INVALID", 8, "transient"),
    ("16.2-result-callstart-L240.xml", "CALLSTART", "1", "API_DEVICE_INVALID", 8, "transient"),
    ("16.2-result-callstart-L252.xml", "CALLSTART", "1", "API_DEVICE_INVALID", 8, "transient"),
    ("5.3-result-recordstart-L434.xml", "RECORDSTART", "1", "API_DEVICE_INVALID", 8, "transient"),
    ("16.2-result-recordstart-L471.xml", "RECORDSTART", "1", "API_DEVICE_INVALID", 8, "transient"),
    ("5.3-result-recordstart-L463.xml", "RECORDSTART", "2060", "API_OK", 20, "ok"),
    ("16.2-result-recordstart-L483.xml", "RECORDSTART", "2060", "API_OK", 20, "ok"),
    ("5.3-result-recordstop-L516.xml", "RECORDSTOP", "2060", "API_OK", 20, "ok"),
    ("16.2-result-recordstop-L535.xml", "RECORDSTOP", "2060", "API_OK", 20, "ok"),
    ("5.3-result-systemstatus-L888.xml", "SYSTEMSTATUS", "255", "API_OK", 20, "ok"),
    ("16.2-result-systemstatus-L933.xml", "SYSTEMSTATUS", "255", "API_OK", 20, "ok"),
    ("5.3-result-devicelist-L570.xml", "DEVICELIST", "1", "API_OK", 20, "ok"),
    ("16.2-result-devicelist-L596.xml", "DEVICELIST", "1", "API_OK", 20, "ok"),
    ("5.3-result-devicestatus-L664.xml", "DEVICESTATUS", "24", "API_OK", 20, "ok"),
    ("16.2-result-devicestatus-L696.xml", "DEVICESTATUS", "24", "API_OK", 20, "ok"),
    ("5.3-result-devicerecordingstatus-L764.xml", "DEVICERECORDINGSTATUS", "2", "API_OK", 20, "ok"),
    ("16.2-result-devicerecordingstatus-L799.xml", "DEVICERECORDINGSTATUS", "2", "API_OK", 20, "ok"),
]


def test_every_documented_result_is_covered() -> None:
    assert sorted(name for name, *_ in RESULTS) == sorted(p.name for p in FIXTURES.glob("*-result-*.xml"))


@pytest.mark.parametrize(("name", "request_type", "request_id", "result_type", "code", "kind"), RESULTS)
def test_documented_results_are_read(
    name: str, request_type: str | None, request_id: str, result_type: str, code: int, kind: str
) -> None:
    raw = fixture(name)
    answer = parse_answer(raw)
    assert (answer.request_type, answer.request_id, answer.result_type, answer.code) == (
        request_type,
        request_id,
        result_type,
        code,
    )
    assert answer.outcome == kind == outcome(code)
    # It answers the request it names, and no other.
    assert answers(answer, request_type or "ANY", int(request_id))
    assert not answers(answer, request_type or "ANY", int(request_id) + 1)
    if request_type:
        assert not answers(answer, "SOMETHINGELSE", int(request_id))
    # The framer finds it whole in a stream, however it is chopped.
    splitter = StreamSplitter()
    items = [i for chunk in (raw[:7], raw[7:], CRLF) for i in splitter.feed(chunk)]
    assert [(type(i), getattr(i, "raw", None)) for i in items] == [(Document, raw)]


def test_error_message_keeps_the_documented_text() -> None:
    answer = parse_answer(fixture("5.3-result-generic-L2124.xml"))
    assert answer.message == "API_ERROR_NO_DEFAULT_RECORDING_PATH"  # sent with a leading space
    assert "17" in answer.describe() and "API_INVALID_MESSAGE_FORMAT" in answer.describe()


@pytest.mark.parametrize(
    "name",
    [
        "5.3-result-devicelist-L570.xml",
        "16.2-result-devicelist-L596.xml",
        "5.3-result-devicestatus-L664.xml",
        "16.2-result-devicestatus-L696.xml",
    ],
)
def test_devicelist_and_devicestatus_answers_give_the_device(name: str) -> None:
    (device,) = devices_from_answer(parse_answer(fixture(name)).element)
    assert device.device_id == "1111" and device.state == "recording"  # ISRECORDING Y
    values = device.values
    assert values["DEVICEALIAS"] == "DESK1" and values["SYS_USER"] == "gkerber"
    assert values["CRM_USER"] == "CCGKERBER" and values["GROUP"] == "MANAGER" and values["GATE"] == "prize"
    assert values["USER1"] == "E" and values["USER2"] == "winners"
    assert values["STARTTIME"] == "2/1/2011 11:49:32 AM" and "STOPTIME" not in values
    assert values["FILENAME"] == "C:\\Recordings\\20110131\\DESK1\\DESK1-17-03-14.wav"
    assert values["CALLINSTANCE"] == "2001" and values["COREIDENT"] == "2"
    assert device.known().call_instance == "2001"


@pytest.mark.parametrize(
    "name", ["5.3-result-devicerecordingstatus-L764.xml", "16.2-result-devicerecordingstatus-L799.xml"]
)
def test_devicerecordingstatus_answer_with_the_docs_own_structure_errors(name: str) -> None:
    """Not well-formed as printed (a RECORDING after </DEVICE>, then a stray </DEVICE>):
    recovered, and the second instance still belongs to device 7008."""
    raw = fixture(name)
    with pytest.raises(ValueError):
        parse_document(raw, salvage=False)
    answer = parse_answer(raw)
    (device,) = devices_from_answer(answer.element)
    assert device.device_id == "7008"
    assert [(r["CALLINSTANCE"], r["STATUS"].strip()) for r in device.recordings] == [
        ("37", "recordpaused"),
        ("38", "recording"),
    ]
    # One instance records: the device records (the paused one does not outrank it).
    assert device.state == "recording" and device.values["CALLINSTANCE"] == "38"
    assert device.values["ANI"] == "7008" and device.values["DNIS"] == "7007"
    # The docs pair request 24 with answer 2: the bridge would not take it for request 24.
    assert not answers(answer, "DEVICERECORDINGSTATUS", 24)
    assert answers(answer, "DEVICERECORDINGSTATUS", 2)


EVENTS = {
    "CALLSTART": "call.started",
    "CALLSTOP": "call.ended",
    "RECORDINGSTARTED": "recording.started",
    "RECORDINGSTOPPED": "recording.stopped",
    "RECORDINGUPDATE": "recording.saved",
    "RECORDINGPAUSED": "recording.paused",
    "RECORDINGRESUMED": "recording.resumed",
}


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*-callcopyevent-*.xml")), ids=lambda p: p.name)
def test_documented_events_are_read_and_typed(path: Path) -> None:
    raw = path.read_bytes()
    fields = element_fields(parse_document(raw))
    event = to_event(
        fields, source_name="up", tz=ZoneInfo("UTC"), received=datetime(2026, 1, 1, tzinfo=UTC), raw=raw
    )
    vendor_type = path.name.split("-")[2].upper()
    assert event.type == EVENTS[vendor_type]
    assert event.subject == "1111"
    # Every element the docs show is kept in raw with its text as sent.
    for line in raw.decode().splitlines():
        line = line.strip()
        if line.startswith("<") and "</" in line and not line.startswith("</"):
            tag = line[1 : line.index(">")]
            text = line[line.index(">") + 1 : line.index("</")]
            where = fields if tag in fields else fields["EVENTDATA"]
            assert where[tag] == text, tag


def test_the_simulator_sends_the_documented_events_byte_for_byte() -> None:
    """The simulator (tested against the bridge elsewhere) is itself held to the docs."""
    from bridge.simulators.uptivity.examples import EVENTS_RESULT, EXAMPLES

    for path in FIXTURES.glob("5.3-callcopyevent-*.xml"):
        assert EXAMPLES[path.name.split("-")[2].upper()] == path.read_bytes()
    assert fixture("5.3-result-events-L2764.xml") == EVENTS_RESULT
