"""Lenient but safe XML: what the real proxy sends unescaped is recovered as sent;
DTDs, entities, depth and size stay refused; the rest is quarantined."""

from __future__ import annotations

import pytest

from bridge.errors import VendorInputError
from bridge.sources.uptivity.stream import (
    MAX_DEPTH,
    ParseError,
    StreamSplitter,
    element_fields,
    parse_document,
)


def fields(raw: bytes) -> dict:
    return element_fields(parse_document(raw))


@pytest.mark.parametrize(
    "value",
    [
        "Sales & Marketing",  # the docs' own ADDGROUP example
        "AT&T",
        "a && b",
        "x < y",
        "a <b> c",
        "<",
        "R&D <urgent>",
        "&amp; stays an escaped ampersand",
    ],
)
def test_unescaped_text_is_recovered_as_sent(value: str) -> None:
    raw = (
        f"<CALLCOPYEVENT>\n<EVENTDATA>\n<GROUP>{value}</GROUP>\n"
        "<USER1>ok</USER1>\n</EVENTDATA>\n</CALLCOPYEVENT>"
    )
    expected = value.replace("&amp;", "&")
    assert fields(raw.encode())["EVENTDATA"] == {"GROUP": expected, "USER1": "ok"}


def test_recovery_also_works_on_one_line_documents() -> None:
    raw = (
        b"<CALLCOPYEVENT><EVENTDATA><GROUP>Sales & Marketing</GROUP>"
        b"<USER4>a <b> c</USER4></EVENTDATA></CALLCOPYEVENT>"
    )
    assert fields(raw)["EVENTDATA"] == {"GROUP": "Sales & Marketing", "USER4": "a <b> c"}


@pytest.mark.parametrize(
    "raw",
    [
        b"<CALLCOPYEVENT><EVENTTYPE>X</WRONG></CALLCOPYEVENT>",
        b"<CALLCOPYEVENT><A><B>x</A></CALLCOPYEVENT>",
        b"<CALLCOPYEVENT><EVENTTYPE>X</EVENTTYPE>",
        b"<CALLCOPYEVENT><EVENTTYPE>\xff\xfe</EVENTTYPE></CALLCOPYEVENT>",
    ],
)
def test_what_cannot_be_recovered_is_refused_with_the_bytes(raw: bytes) -> None:
    with pytest.raises(ParseError) as caught:
        parse_document(raw)
    assert isinstance(caught.value, VendorInputError) and caught.value.raw == raw
    assert "malformed XML" in str(caught.value)


def test_dtd_and_entity_declarations_stay_refused() -> None:
    for raw in (
        b'<!DOCTYPE x [<!ENTITY e "boom">]><CALLCOPYEVENT><A>&e;</A></CALLCOPYEVENT>',
        b'<CALLCOPYEVENT><!ENTITY e "boom"><A>x</A></CALLCOPYEVENT>',
    ):
        with pytest.raises(ParseError, match="DTD"):
            parse_document(raw)


def test_an_undeclared_reference_is_neither_expanded_nor_guessed_to_be_text() -> None:
    with pytest.raises(ParseError, match="xxe"):
        parse_document(b"<CALLCOPYEVENT><A>Sales & Marketing</A><B>&xxe;</B></CALLCOPYEVENT>")
    assert fields(b"<CALLCOPYEVENT><B>&#65;&#x42; & co</B></CALLCOPYEVENT>") == {"B": "AB & co"}


def test_depth_is_limited() -> None:
    deep = b"<CALLCOPYEVENT>" + b"<a>" * MAX_DEPTH + b"x" + b"</a>" * MAX_DEPTH + b"</CALLCOPYEVENT>"
    with pytest.raises(ParseError, match="deeper"):
        parse_document(deep)
    ok = (
        b"<CALLCOPYEVENT>" + b"<a>" * (MAX_DEPTH - 2) + b"x" + b"</a>" * (MAX_DEPTH - 2) + b"</CALLCOPYEVENT>"
    )
    parse_document(ok)


def test_size_is_limited_by_the_framer() -> None:
    splitter = StreamSplitter(max_document_bytes=2048)
    items = list(splitter.feed(b"<CALLCOPYEVENT><GROUP>" + b"&" * 5000))
    assert len(items) == 1 and "exceeds 2048 bytes" in items[0].reason and splitter.buffered <= 2048 + 5000


def test_salvage_is_only_for_status_answers() -> None:
    broken = (
        b"<RESULT><DEVICE><DEVICEID>1</DEVICEID></DEVICE><RECORDING><X>1</X></RECORDING></DEVICE></RESULT>"
    )
    with pytest.raises(ParseError):
        parse_document(broken)
    assert parse_document(broken, salvage=True).tag == "RESULT"
