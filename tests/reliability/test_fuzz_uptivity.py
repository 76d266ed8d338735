"""Property-based fuzzing of the Uptivity stream path: StreamSplitter -> parse_document ->
element_fields -> to_event -> a real SQLite outbox.

Properties: nothing raises but ParseError (which the source quarantines); the splitter's
buffer stays bounded; and a well-formed event that follows hostile bytes comes out as
soon as its own bytes have arrived: garbage before it may be quarantined, but it may
neither swallow nor hold back the next good document.
"""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.simulators.uptivity import numbered_event
from bridge.simulators.uptivity.examples import EVENTS_RESULT, EXAMPLES
from bridge.sources.uptivity.mapping import to_event
from bridge.sources.uptivity.stream import (
    Document,
    Junk,
    ParseError,
    StreamSplitter,
    element_fields,
    parse_document,
)
from tests.support.fuzzing import FUZZ, OutboxProbe

pytestmark = [pytest.mark.slow]

LIMIT = 16 * 1024
FIXTURES_DIR = Path(__file__).parents[1] / "fixtures" / "uptivity"
TZ = ZoneInfo("America/Chicago")
PROBE = OutboxProbe()

HOSTILE_SNIPPETS = [
    b'<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>',
    b'<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">',
    b"&xxe;",
    b"&lol2;",
    b"<![CDATA[",
    b"]]>",
    b"<!--",
    b"-->",
    b"<?xml version='1.0' encoding='bogus'?>",
    b'<?xml version="1.0" encoding="UTF-16"?>',
    b"<CALLCOPYEVENT>",
    b"<CALLCOPYEVENT ",
    b"</CALLCOPYEVENT>",
    b"<RESULT>",
    b"</RESULT>",
    b"<RESULT",
    b"\xff\xfe",
    b"\xc3\x28",
    b"\xed\xa0\x80",  # an encoded surrogate: invalid UTF-8
    b"\x00",
    b"<a>" * 300,
    b"</a>" * 300,
    b"<EVENTDATA>",
    b"</EVENTDATA>",
    b"<EVENTTYPE>CALLSTART</EVENTTYPE>",
    b"<USER1>" + b"x" * 2000 + b"</USER1>",
]


@st.composite
def mutated_documents(draw: st.DrawFn) -> bytes:
    """A documented event with random edits: bytes deleted, replaced or hostile snippets inserted."""
    doc = bytearray(draw(st.sampled_from(list(EXAMPLES.values()))))
    for _ in range(draw(st.integers(1, 6))):
        pos = draw(st.integers(0, len(doc)))
        action = draw(st.integers(0, 3))
        if action == 0:
            doc[pos : pos + draw(st.integers(1, 40))] = b""
        elif action == 1:
            doc[pos:pos] = draw(st.sampled_from(HOSTILE_SNIPPETS))
        elif action == 2:
            doc[pos:pos] = draw(st.binary(min_size=1, max_size=20))
        else:
            doc[pos : pos + 1] = draw(st.binary(min_size=1, max_size=1))
    return bytes(doc)


def split(data: bytes, seed: int, max_chunk: int) -> list[bytes]:
    rng = random.Random(seed)
    chunks, pos = [], 0
    while pos < len(data):
        size = rng.randint(1, max_chunk)
        chunks.append(data[pos : pos + size])
        pos += size
    return chunks


def run_stream(chunks: list[bytes]) -> tuple[list[dict], list[Junk], int, StreamSplitter]:
    """What UptivitySource._read does with each read, minus the socket."""
    splitter = StreamSplitter(LIMIT)
    events: list[dict] = []
    junk: list[Junk] = []
    refused = 0
    received = datetime.now(UTC)
    for chunk in chunks:
        batch = []
        for item in splitter.feed(chunk):
            if isinstance(item, Junk):
                assert item.reason
                junk.append(item)
                continue
            assert isinstance(item, Document)
            try:
                root = parse_document(item.raw)
            except ParseError as exc:
                assert str(exc)
                refused += 1
                continue
            if item.root == "RESULT":
                continue
            batch.append(to_event(element_fields(root), source_name="up", tz=TZ, received=received))
        events.extend(PROBE.commit("up", batch))
        assert splitter.buffered <= LIMIT + len(chunk)
    return events, junk, refused, splitter


def numbers(events: list[dict]) -> list[int]:
    out = []
    for event in events:
        raw = event["data"]["raw"]
        try:
            out.append(int(str(raw.get("EVENTXREF", "")).strip()))
        except ValueError:
            continue
    return out


@FUZZ
@given(st.binary(max_size=2000), st.integers(0, 2**32), st.integers(1, 600))
def test_arbitrary_bytes_never_crash(data: bytes, seed: int, max_chunk: int) -> None:
    events, _junk, _refused, _ = run_stream(split(data, seed, max_chunk))
    assert all(e["source"] == "/event-bridge/uptivity/up" for e in events)


@FUZZ
@given(
    st.lists(mutated_documents(), min_size=1, max_size=4),
    st.integers(0, 2**32),
    st.integers(1, 300),
    st.sampled_from([b"", b"\r\n", b"\n"]),
)
def test_good_event_after_hostile_document_comes_out_at_once(
    hostile: list[bytes], seed: int, max_chunk: int, separator: bytes
) -> None:
    sentinel_number = 987654
    sentinel = numbered_event(sentinel_number)
    stream = EVENTS_RESULT + b"\r\n" + separator.join(hostile) + separator + sentinel
    events, _junk, _refused, _ = run_stream(split(stream, seed, max_chunk))
    assert sentinel_number in numbers(events), "the good event after hostile input did not come out"


@FUZZ
@given(
    st.lists(
        st.tuples(st.integers(1, 10**6), st.binary(max_size=200).map(lambda b: b.replace(b"<", b""))),
        min_size=1,
        max_size=8,
    ),
    st.integers(0, 2**32),
    st.integers(1, 500),
)
def test_garbage_between_documents_never_costs_an_event(
    docs: list[tuple[int, bytes]], seed: int, max_chunk: int
) -> None:
    stream = b"".join(garbage + numbered_event(n, devices=7) for n, garbage in docs)
    events, junk, refused, _ = run_stream(split(stream, seed, max_chunk))
    assert numbers(events) == [n for n, _ in docs]
    assert refused == 0
    # Junk is exactly the garbage that was not whitespace.
    assert len(junk) == sum(1 for _, g in docs if g.strip())


@FUZZ
@given(st.integers(1, 40), st.integers(0, 2**32))
def test_oversized_and_deeply_nested_documents_are_refused_and_bounded(depth_kb: int, seed: int) -> None:
    nested = b"<CALLCOPYEVENT>" + b"<a>" * (depth_kb * 100) + b"</a>" * (depth_kb * 100) + b"</CALLCOPYEVENT>"
    huge = (
        b"<CALLCOPYEVENT><EVENTDATA><USER1>"
        + b"x" * (depth_kb * 1024)
        + b"</USER1></EVENTDATA></CALLCOPYEVENT>"
    )
    stream = nested + huge + numbered_event(5)
    events, junk, refused, splitter = run_stream(split(stream, seed, 4096))
    assert numbers(events)[-1:] == [5]
    assert splitter.buffered == 0
    # Deep nesting beyond libxml2's limit is refused; anything over LIMIT is junk.
    if len(nested) > LIMIT:
        assert any("exceeds" in j.reason for j in junk)
    assert refused + len(junk) >= 1 or depth_kb * 100 <= 255


def test_stray_result_tag_does_not_hold_back_later_events() -> None:
    """Found by the fuzzer: "<RESULT>" with no "</RESULT>" made the splitter wait for a
    full max_document_bytes before it looked at the events behind it."""
    stream = b"<RESULT><CALLCOPYEVENT>garbled" + numbered_event(1) + b"\r\n" + numbered_event(2)
    events, junk, _refused, splitter = run_stream([stream])
    assert numbers(events) == [1, 2]
    assert [j.reason for j in junk] == ["document cut off by the start of another document"] * 2
    assert splitter.buffered == 0


VALUE_TEXT = st.lists(
    st.sampled_from([*"abcXYZ019 &<>;#/!?-_.:'\"", "&amp;", "&lt;", "&#65;", "é", "€"]), max_size=40
).map("".join)


@FUZZ
@given(VALUE_TEXT, st.sampled_from([b"GROUP", b"USER1", b"USER15", b"DEVICEALIAS"]), st.booleans())
def test_a_value_as_the_proxy_sends_it_comes_out_as_sent_or_is_quarantined(
    value: str, tag: bytes, one_line: bool
) -> None:
    """Lenient recovery never invents a value: the field is what was on the wire (with
    the XML escapes the sender did use decoded), or the document is refused whole."""
    sep = b"" if one_line else b"\n"
    raw = (
        b"<CALLCOPYEVENT>" + sep + b"<EVENTTYPE>CALLSTART</EVENTTYPE>" + sep + b"<EVENTDATA>" + sep
        + b"<DEVICEID>1111</DEVICEID>" + sep + b"<" + tag + b">" + value.encode() + b"</" + tag + b">"
        + sep + b"</EVENTDATA>" + sep + b"</CALLCOPYEVENT>"
    )  # fmt: skip
    try:
        fields = element_fields(parse_document(raw))
    except ParseError:
        return
    got = fields["EVENTDATA"]
    assert got["DEVICEID"] == "1111" and set(got) == {"DEVICEID", tag.decode()}
    assert got[tag.decode()] == xml_decoded(value)


def xml_char(code: int) -> bool:
    """XML 1.0, production [2] Char."""
    return code in (0x9, 0xA, 0xD) or any(
        low <= code <= high for low, high in ((0x20, 0xD7FF), (0xE000, 0xFFFD), (0x10000, 0x10FFFF))
    )


def xml_decoded(value: str) -> str:
    """The text as XML defines it: the escapes the sender used decoded (``&amp;``,
    ``&lt;`` and every decimal character reference to a legal Char), the rest literal.
    Found by the fuzzer: the sender's ``&#9;`` is a tab, as the XML spec says."""

    def reference(match: re.Match[str]) -> str:
        code = int(match.group(1))
        return chr(code) if xml_char(code) else match.group(0)

    text = value.replace("&amp;", "\0").replace("&lt;", "<")
    return re.sub(r"&#([0-9]+);", reference, text).replace("\0", "&")


@pytest.mark.parametrize(
    ("value", "expected"),
    [("&#9;", "\t"), ("a&#10;b", "a\nb"), ("&#099;", "c"), ("&amp;#65;", "&#65;"), ("&#9", "&#9")],
)
def test_character_references_found_by_the_fuzzer_come_out_as_xml_defines_them(
    value: str, expected: str
) -> None:
    raw = b"<CALLCOPYEVENT><EVENTDATA><DEVICEID>1111</DEVICEID><GROUP>" + value.encode() + b"</GROUP>"
    fields = element_fields(parse_document(raw + b"</EVENTDATA></CALLCOPYEVENT>"))
    assert xml_decoded(value) == expected == fields["EVENTDATA"]["GROUP"]


@FUZZ
@given(st.binary(max_size=300), st.integers(0, 2**32))
def test_status_answers_never_crash_the_reconciler(noise: bytes, seed: int) -> None:
    """A hostile or broken status answer is an error the bridge reports, never a crash."""
    from bridge.sources.uptivity.api import parse_answer
    from bridge.sources.uptivity.reconcile import devices_from_answer, transitions

    base = (FIXTURES_DIR / "5.3-result-devicerecordingstatus-L764.xml").read_bytes()
    rng = random.Random(seed)
    pos = rng.randint(0, len(base))
    raw = base[:pos] + noise + base[pos + rng.randint(0, 40) :]
    try:
        answer = parse_answer(raw)
    except ParseError:
        return
    devices = devices_from_answer(answer.element)
    transitions({}, devices, complete=True)
