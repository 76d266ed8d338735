"""Framing and hardening of the Uptivity XML stream parser (pure, no sockets)."""

from __future__ import annotations

import random

import pytest

from bridge.simulators.uptivity.examples import EVENTS_RESULT, EXAMPLES
from bridge.sources.uptivity.stream import (
    Document,
    Junk,
    ParseError,
    StreamSplitter,
    element_fields,
    parse_document,
)

ALL_DOCS = list(EXAMPLES.values())


def feed_all(splitter: StreamSplitter, chunks: list[bytes]) -> list[Document | Junk]:
    out: list[Document | Junk] = []
    for chunk in chunks:
        out.extend(splitter.feed(chunk))
    return out


def chunked(data: bytes, rng: random.Random, max_size: int) -> list[bytes]:
    chunks, pos = [], 0
    while pos < len(data):
        size = rng.randint(1, max_size)
        chunks.append(data[pos : pos + size])
        pos += size
    return chunks


@pytest.mark.parametrize("separator", [b"\r\n", b"", b"\n", b"\r\n\r\n  "])
@pytest.mark.parametrize("max_chunk", [1, 7, 4096])
def test_every_document_comes_out_whole_however_tcp_splits_it(separator: bytes, max_chunk: int) -> None:
    stream = EVENTS_RESULT + b"\r\n" + separator.join(ALL_DOCS) + separator
    chunks = chunked(stream, random.Random(max_chunk), max_chunk)
    items = feed_all(StreamSplitter(), chunks)
    assert all(isinstance(i, Document) for i in items), [i for i in items if isinstance(i, Junk)]
    assert [i.root for i in items] == ["RESULT"] + ["CALLCOPYEVENT"] * len(ALL_DOCS)
    assert [i.raw for i in items[1:]] == ALL_DOCS


def test_several_documents_in_one_read() -> None:
    items = list(StreamSplitter().feed(b"".join(ALL_DOCS)))
    assert len(items) == len(ALL_DOCS)


def test_values_keep_raw_whitespace_and_empty_elements() -> None:
    fields = element_fields(parse_document(EXAMPLES["RECORDINGPAUSED"]))
    assert fields["EVENTTYPE"] == " RECORDINGPAUSED"
    assert fields["EVENTDATA"]["GLOBALCALLID"] == ""
    assert fields["EVENTDATA"]["FILENAME"] == "C:\\Recordings\\20110131\\1111\\1111-14-39-50.au"


def test_fields_in_any_order_and_repeated_tags_are_all_kept() -> None:
    doc = (
        b"<CALLCOPYEVENT><EVENTDATA><B>2</B><A>1</A><A>3</A></EVENTDATA>"
        b"<EVENTTYPE>X</EVENTTYPE></CALLCOPYEVENT>"
    )
    fields = element_fields(parse_document(doc))
    assert fields == {"EVENTDATA": {"B": "2", "A": ["1", "3"]}, "EVENTTYPE": "X"}


def test_xml_declaration_between_documents_is_tolerated() -> None:
    items = list(StreamSplitter().feed(b'<?xml version="1.0"?>\r\n' + ALL_DOCS[0]))
    assert [type(i) for i in items] == [Document]


def test_garbage_between_documents_is_junk_and_the_next_document_survives() -> None:
    items = list(StreamSplitter().feed(ALL_DOCS[0] + b"\r\nNOT XML AT ALL\r\n" + ALL_DOCS[1]))
    assert [type(i) for i in items] == [Document, Junk, Document]
    assert b"NOT XML" in items[1].raw


def test_document_cut_off_by_the_next_one_is_junk() -> None:
    broken = ALL_DOCS[0][:120]
    items = list(StreamSplitter().feed(broken + ALL_DOCS[1]))
    assert [type(i) for i in items] == [Junk, Document]
    assert items[0].raw == broken
    assert items[1].raw == ALL_DOCS[1]


def test_billion_laughs_is_refused_without_expansion() -> None:
    lol = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        + b"".join(
            b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
            for i in range(1, 10)
        )
        + b"]><CALLCOPYEVENT><EVENTTYPE>&lol9;</EVENTTYPE></CALLCOPYEVENT>"
    )
    items = list(StreamSplitter().feed(lol + ALL_DOCS[0]))
    # The DTD is junk before the document; the document's entity reference is refused.
    assert isinstance(items[0], Junk)
    doc = items[1]
    assert isinstance(doc, Document)
    with pytest.raises(ParseError, match="lol9"):
        parse_document(doc.raw)
    with pytest.raises(ParseError, match="DTD"):
        parse_document(lol)
    assert items[2].raw == ALL_DOCS[0]


def test_external_entity_is_never_resolved(tmp_path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    xxe = (
        f'<!DOCTYPE x [<!ENTITY xxe SYSTEM "file://{secret}">]>'
        "<CALLCOPYEVENT><EVENTTYPE>&xxe;</EVENTTYPE></CALLCOPYEVENT>"
    ).encode()
    with pytest.raises(ParseError):
        parse_document(xxe)
    # Even with the DTD split off by the framer, the reference is not resolved, and not
    # taken for text either (lenient recovery leaves "&name;" alone).
    with pytest.raises(ParseError, match="xxe"):
        parse_document(b"<CALLCOPYEVENT><EVENTTYPE>&xxe;</EVENTTYPE></CALLCOPYEVENT>")


def test_oversized_document_without_closing_tag_is_bounded_and_resyncs() -> None:
    limit = 64 * 1024
    splitter = StreamSplitter(max_document_bytes=limit)
    items: list[Document | Junk] = list(splitter.feed(b"<CALLCOPYEVENT><EVENTDATA>"))
    peak = 0
    block = b"A" * 65536
    for _ in range(20 * 1024 * 1024 // len(block)):  # 20 MB without a closing tag
        items.extend(splitter.feed(block))
        peak = max(peak, splitter.buffered)
    items.extend(splitter.feed(b"</EVENTDATA></CALLCOPYEVENT>" + ALL_DOCS[2]))
    assert peak <= limit + len(block)
    junk = [i for i in items if isinstance(i, Junk)]
    assert len(junk) == 1 and "exceeds" in junk[0].reason and len(junk[0].raw) == limit
    assert [i.raw for i in items if isinstance(i, Document)] == [ALL_DOCS[2]]
    assert splitter.discarded_bytes > 19 * 1024 * 1024


def test_malformed_document_raises_a_precise_error() -> None:
    with pytest.raises(ParseError, match="malformed XML"):
        parse_document(b"<CALLCOPYEVENT><EVENTTYPE>X</EVENTCLASS></CALLCOPYEVENT>")


def test_invalid_utf8_is_refused_not_crashing() -> None:
    with pytest.raises(ParseError):
        parse_document(b"<CALLCOPYEVENT><EVENTTYPE>\xff\xfe</EVENTTYPE></CALLCOPYEVENT>")
