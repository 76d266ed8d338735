"""Property-based fuzzing of the AnywhereNow frame path, exactly as the source runs it.

A WebSocket text frame goes through :class:`TolerantJsonHubProtocol.parse_messages`
(what signalrcore's receive thread calls), :meth:`HubLink._on_messages` (classification
and the hop into trio), :meth:`AnywhereNowSource._process` (``parse_invocation`` and
``live_event``) and finally a real SQLite outbox. Whatever the frame holds, nothing may
raise, every committed CloudEvent must be strict JSON, and every record is accounted
for: an event, a quarantined file, an "unhandled target" log line, or a hub protocol
message (ping, completion, close...).
"""

from __future__ import annotations

import json
import math
import ssl
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from bridge.components import SourceContext
from bridge.sources.anywherenow import AnywhereNowSettings, AnywhereNowSource
from bridge.sources.anywherenow.hub import RECORD_SEPARATOR, HubLink, HubMessage, TolerantJsonHubProtocol
from tests.support.fuzzing import FUZZ, OutboxProbe, RecordingLog

pytestmark = [pytest.mark.slow]

TARGET = "RecordingStateChangedEvent"
TLS = ssl.create_default_context()
PROTOCOL_TYPES = {2, 3, 4, 5, 6, 7, 8, 9}  # 8 ack, 9 sequence (stateful reconnect)

# Any text, lone surrogates included (a JSON "\ud800" escape decodes to one).
ANY_TEXT = st.text(
    st.characters() | st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, categories=["Cs"]),
    max_size=40,
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | ANY_TEXT
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ANY_TEXT, inner, max_size=4),
    max_leaves=12,
)
KEY_SPELLINGS = {
    "CorrelationId": ["CorrelationId", "correlationId", "CORRELATIONID", "correlationid"],
    "UccName": ["UccName", "uccName", "UCCName", "uccname"],
    "StateAction": ["StateAction", "stateAction", "STATEACTION"],
    "Timestamp": ["Timestamp", "timestamp", "Time", "EventTime"],
}
ACTION_VALUES = (
    st.integers(min_value=-3, max_value=12)
    | st.sampled_from(["Start", "stop", "PAUSE", "Save", "Delete", "Mark", "UnMark", "1", " 2 ", "-4"])
    | st.sampled_from(["²", "١", "٣", "9" * 5000, "", "  ", "1.5", "Ⅳ"])
    | st.floats(allow_nan=True)
    | SCALARS
)


@st.composite
def payloads(draw: st.DrawFn) -> Any:
    """Mostly RecordingStateChangedEvent-shaped objects with hostile values, sometimes anything."""
    if draw(st.integers(0, 9)) == 0:
        return draw(JSON_VALUES)
    obj: dict[str, Any] = {}
    for name, spellings in KEY_SPELLINGS.items():
        if draw(st.integers(0, 5)):
            value = {
                "CorrelationId": st.text(max_size=20) | SCALARS,
                "UccName": st.text(max_size=20) | SCALARS,
                "StateAction": ACTION_VALUES,
                "Timestamp": st.sampled_from(["2026-11-22T10:00:00Z", "2026-11-22T10:00:00", "yesterday"])
                | SCALARS,
            }[name]
            obj[draw(st.sampled_from(spellings))] = draw(value)
    if draw(st.booleans()):
        obj.update(draw(st.dictionaries(ANY_TEXT, JSON_VALUES, max_size=3)))
    if draw(st.integers(0, 7)) == 0:
        return json.dumps(obj)  # some hubs serialize the event themselves
    return obj


@st.composite
def records(draw: st.DrawFn) -> str:
    """One record (without the separator): an invocation, another hub message, or junk."""
    kind = draw(st.integers(0, 9))
    if kind <= 5:
        target = draw(st.sampled_from([TARGET, TARGET.lower(), "SomethingElse", ""]) | ANY_TEXT)
        message: dict[str, Any] = {"type": 1, "target": target}
        if draw(st.integers(0, 9)):
            message["arguments"] = draw(st.lists(payloads(), min_size=0, max_size=2) | JSON_VALUES)
        if draw(st.booleans()):
            message["invocationId"] = draw(ANY_TEXT)
        return json.dumps(message, allow_nan=True)
    if kind == 6:
        return json.dumps(
            {"type": draw(st.integers(-1, 12)), **draw(st.dictionaries(ANY_TEXT, JSON_VALUES, max_size=2))}
        )
    if kind == 7:
        nested = "[" * draw(st.integers(1, 5000)) + "]" * draw(st.integers(0, 5000))
        return draw(
            st.sampled_from([nested, '{"type":1,"target":"' + TARGET + '","arguments":' + nested + "}"])
        )
    if kind == 8:
        return json.dumps(draw(JSON_VALUES))
    return draw(st.text(max_size=80)).replace(RECORD_SEPARATOR, "")


def _is_protocol_message(record: str) -> bool:
    """Records the hub protocol defines as something other than an invocation."""
    try:
        data = json.loads(record)
    except (ValueError, RecursionError):
        return False
    return isinstance(data, dict) and (not data or "type" not in data or data.get("type") in PROTOCOL_TYPES)


class _Emitter:
    def __init__(self, probe: OutboxProbe) -> None:
        self.probe = probe
        self.events: list[dict] = []

    async def emit(self, events: Any, *, state: Any = None, durable: bool = False) -> None:
        self.events.extend(self.probe.commit("anw", events, state))


async def _run_frame(raw: str | bytes, probe: OutboxProbe) -> tuple[list[dict], RecordingLog, int]:
    log = RecordingLog()
    emitter = _Emitter(probe)
    ctx = SourceContext(emitter=emitter, quarantine=probe.quarantine, state={}, log=log)
    source = AnywhereNowSource(AnywhereNowSettings(name="anw", hub_url="http://127.0.0.1:1/hub"))
    send, receive = trio.open_memory_channel[HubMessage](math.inf)
    link = HubLink(target=TARGET, ssl_context=TLS, send_channel=send, log=log)
    protocol = TolerantJsonHubProtocol(link._on_bad, link._on_handshake_error)

    def receive_thread() -> None:  # what signalrcore's thread does with one frame
        link._on_messages(protocol.parse_messages(raw))

    await trio.to_thread.run_sync(receive_thread)
    send.close()
    items = [item async for item in receive]
    await source._process(ctx, items)
    assert link.dropped == 0
    quarantined = log.named("anywherenow_malformed_message")
    for line in quarantined:  # a clear reason, and the bytes kept where the line says
        assert line["reason"]
        assert Path(line["quarantined"]).exists() and Path(line["quarantined"]).with_suffix(".txt").exists()
    return emitter.events, log, len(quarantined)


PROBE = OutboxProbe()


@FUZZ
@given(st.lists(records(), min_size=1, max_size=6), st.sampled_from([RECORD_SEPARATOR, RECORD_SEPARATOR * 2]))
def test_any_frame_is_parsed_or_quarantined_never_crashes(parts: list[str], separator: str) -> None:
    raw = separator.join(parts) + RECORD_SEPARATOR
    events, log, quarantined = trio.run(_run_frame, raw, PROBE)
    nonblank = [p for p in parts if p.strip()]
    unhandled = len(log.named("anywherenow_unhandled_target"))
    must_account = [p for p in nonblank if not _is_protocol_message(p)]
    # Every record is accounted for, none twice.
    assert len(events) + quarantined + unhandled >= len(must_account)
    assert len(events) + quarantined + unhandled <= len(nonblank)
    for event in events:
        assert event["source"] == "/event-bridge/anywherenow/anw"
        assert event["type"].startswith(("recording.", "vendor.anywherenow."))


@FUZZ
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash_the_receive_path(raw: bytes) -> None:
    events, log, quarantined = trio.run(_run_frame, raw, PROBE)
    unhandled = len(log.named("anywherenow_unhandled_target"))
    assert len(events) + quarantined + unhandled <= raw.count(RECORD_SEPARATOR.encode()) + 1
    assert all(e["source"].endswith("/anw") for e in events)


@FUZZ
@given(
    st.lists(records(), max_size=4),
    st.lists(
        st.tuples(
            st.text(min_size=1, max_size=12).filter(str.strip), st.sampled_from(["Start", "Stop", 3, "4", 6])
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_valid_invocations_survive_hostile_neighbours(junk: list[str], valid: list[tuple[str, Any]]) -> None:
    good = [
        json.dumps(
            {
                "type": 1,
                "target": TARGET,
                "arguments": [{"uccName": "u", "correlationId": cid, "stateAction": a}],
            }
        )
        for cid, a in valid
    ]
    parts = [x for pair in zip(junk + [""] * len(good), good, strict=False) for x in pair] + junk[len(good) :]
    raw = RECORD_SEPARATOR.join(parts) + RECORD_SEPARATOR
    events, _, _ = trio.run(_run_frame, raw, PROBE)
    got = [e["data"]["correlation_id"] for e in events if e["data"].get("ucc_name") == "u"]
    for cid, _ in valid:
        assert cid.strip() in got


@pytest.mark.parametrize(
    ("argument", "expected"),
    [
        # lone surrogate: cannot be stored as UTF-8
        ('{"correlationId": "c\\ud800", "stateAction": 1}', "quarantined"),
        # NaN: not JSON for any other reader
        ('{"correlationId": "c", "stateAction": 1, "extra": NaN}', "quarantined"),
        # "²".isdigit() but int("²") fails: an unknown name, passed through
        ('{"correlationId": "c", "stateAction": "\\u00b2"}', "vendor.anywherenow.²"),
        # beyond int()'s digit limit, and longer than any StateAction name
        ('{"correlationId": "c", "stateAction": "' + "9" * 5000 + '"}', "quarantined"),
        # a JSON string holding nesting deeper than the recursion limit
        ('"' + "[" * 3000 + '"', "quarantined"),
    ],
)
def test_values_found_by_the_fuzzer_are_quarantined_not_crashing(argument: str, expected: str) -> None:
    frame = f'{{"type": 1, "target": "{TARGET}", "arguments": [{argument}]}}' + RECORD_SEPARATOR
    events, log, quarantined = trio.run(_run_frame, frame, PROBE)
    assert len(log.named("anywherenow_malformed_message")) == quarantined
    if expected == "quarantined":
        assert (len(events), quarantined) == (0, 1)
    else:
        assert quarantined == 0
        assert [e["type"] for e in events] == [expected]
        assert events[0]["data"]["raw"] == {"correlationId": "c", "stateAction": "²"}
