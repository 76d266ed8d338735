"""Framing and parsing of the Uptivity Event Proxy's XML stream.

The proxy writes one XML document after another on a TCP connection: first the
``<RESULT>`` answering our ``EVENTS`` request, then ``<CALLCOPYEVENT>`` documents, with
CRLF or nothing between them. TCP chops them anywhere. :class:`StreamSplitter` finds
document boundaries in the byte stream (cheap ``bytes.find`` scans, no parser state to
poison), and each complete document is parsed on its own by a hardened lxml parser:
no DTD, no entity expansion, no network, bounded size. Anything that is not a
well-formed document comes out as :class:`Junk` so the caller can quarantine it, and
the splitter resyncs at the next ``<CALLCOPYEVENT``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from lxml import etree

from bridge.errors import VendorInputError
from bridge.xmlsafe import hardened_parser

ROOTS = (b"CALLCOPYEVENT", b"RESULT")
MAX_DOCUMENT_BYTES = 1024 * 1024
_AFTER_NAME = (b">", b" ", b"\t", b"\r", b"\n", b"/")


@dataclass(slots=True)
class Document:
    root: str
    raw: bytes


@dataclass(slots=True)
class Junk:
    raw: bytes
    reason: str


class ParseError(VendorInputError):
    """A document that cannot be read even leniently: it is quarantined, never fatal."""


MAX_DEPTH = 32  # CALLCOPYEVENT > EVENTDATA > field, RESULT > DEVICES > DEVICE > RECORDING > field
# A "&" that does not start something shaped like a reference. "&name;" stays as it is:
# without a DTD it is an undefined entity, and guessing it meant text could hide an attack.
_BARE_AMP = re.compile(rb"&(?!(?:[A-Za-z_][A-Za-z0-9_.-]*|#[0-9]+|#x[0-9A-Fa-f]+);)")
_BARE_LT = re.compile(rb"<(?![A-Za-z_/!?])")
# A leaf element on one line whose text holds a "<" that starts neither a closing tag nor
# a vendor-style tag (<USER1>a <b> c</USER1>); a parent element never matches.
_LEAF = re.compile(rb"<([A-Za-z_][A-Za-z0-9_.-]*)>((?:[^<\r\n]|<(?!/|[A-Z_][A-Z0-9_]*>))*)</\1>")


def _repair(raw: bytes) -> bytes:
    """Escape what the proxy sends unescaped in values: a bare ``&`` or ``<`` in text.

    The docs' own examples carry ``<GROUPNAME>Sales & Marketing</GROUPNAME>`` and warn
    that USER fields may hold special characters. The value parsed from the repaired
    document is exactly the text that was sent.
    """
    fixed = _BARE_AMP.sub(b"&amp;", raw)
    fixed = _BARE_LT.sub(b"&lt;", fixed)

    def leaf(match: re.Match[bytes]) -> bytes:
        tag, text = match.group(1), match.group(2)
        if b"<" not in text:
            return match.group(0)
        return b"<" + tag + b">" + text.replace(b"<", b"&lt;").replace(b">", b"&gt;") + b"</" + tag + b">"

    return _LEAF.sub(leaf, fixed)


def _depth(element: etree._Element, limit: int) -> int:
    deepest, stack = 1, [(element, 1)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        if deepest > limit:
            return deepest
        stack.extend((child, level + 1) for child in node)
    return deepest


def _message(exc: etree.XMLSyntaxError) -> str:
    return exc.msg if "line" in exc.msg else f"{exc.msg} (line {exc.lineno}, column {exc.offset})"


def parse_document(raw: bytes, *, lenient: bool = True, salvage: bool = False) -> etree._Element:
    """Parse one complete document with the hardened parser; refuse DTDs and entities.

    ``lenient``: a document that is not well-formed only because of unescaped ``&``/``<``
    in values is repaired (see :func:`_repair`). ``salvage``: as a last resort let
    libxml2 recover the tree (used for status answers, whose documented examples are
    themselves not well-formed); never for events, where a guess could misreport.
    """
    if b"<!DOCTYPE" in raw or b"<!ENTITY" in raw:
        raise ParseError("document declares a DTD or entities (refused: no DTD processing)", raw)
    root: etree._Element | None
    try:
        root = etree.fromstring(raw, hardened_parser())
    except etree.XMLSyntaxError as exc:
        first, second = exc, None
        root = None
        if lenient:
            repaired = _repair(raw)
            if repaired != raw:
                try:
                    root = etree.fromstring(repaired, hardened_parser())
                except etree.XMLSyntaxError as again:
                    second = again  # what is left once bare "&" and "<" are escaped
                    root = None
        if root is None and salvage:
            try:
                root = etree.fromstring(_repair(raw), hardened_parser(recover=True))
            except etree.XMLSyntaxError:
                root = None
        if root is None:
            reason = f"malformed XML: {_message(first)}"
            if second is not None and second.msg != first.msg:
                reason += f"; with bare & and < escaped: {_message(second)}"
            raise ParseError(reason, raw) from None
    if root is None:  # lxml returns None for an empty document in recover mode
        raise ParseError("empty document", raw)
    if _depth(root, MAX_DEPTH) > MAX_DEPTH:
        raise ParseError(f"document nested deeper than {MAX_DEPTH} levels (refused)", raw)
    # No DTD means no entity can be declared: libxml2 rejects any reference other than
    # the five predefined ones as a well-formedness error above.
    return root


def element_fields(element: etree._Element) -> dict[str, object]:
    """Child elements as a dict: text as sent (no stripping), nested elements as dicts.

    A tag that repeats becomes a list so nothing the vendor sent is dropped.
    (Comments and processing instructions are removed by the parser.)
    """
    out: dict[str, object] = {}
    for child in element:
        tag = child.tag
        value: object = element_fields(child) if len(child) else (child.text or "")
        if tag in out:
            existing = out[tag]
            if isinstance(existing, list):
                existing.append(value)
            else:
                out[tag] = [existing, value]
        else:
            out[tag] = value
    return out


class StreamSplitter:
    """Incremental splitter: ``feed(bytes)`` yields Documents and Junk in stream order."""

    def __init__(self, max_document_bytes: int = MAX_DOCUMENT_BYTES) -> None:
        self.max_document_bytes = max_document_bytes
        self._buf = bytearray()
        self._discarding = False  # inside an oversized document: drop until a new start tag
        self.discarded_bytes = 0

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> Iterator[Document | Junk]:
        self._buf += data
        while True:
            item = self._next()
            if item is None:
                return
            yield item

    def _find_start(self, start: int = 0, stop: int | None = None) -> tuple[int, bytes] | None:
        """Earliest ``<ROOT`` (followed by '>' or whitespace) in buf[start:stop]."""
        best: tuple[int, bytes] | None = None
        limit = len(self._buf) if stop is None else stop
        for root in ROOTS:
            pos = start
            while True:
                pos = self._buf.find(b"<" + root, pos, limit)
                if pos < 0:
                    break
                after = pos + 1 + len(root)
                if after >= len(self._buf) or self._buf[after : after + 1] in _AFTER_NAME:
                    break  # at the very end we can't tell yet: treat it as a start
                pos = after
            if pos >= 0:
                best = (pos, root)
                limit = pos  # another root only matters if it comes earlier
        return best

    def _next(self) -> Document | Junk | None:
        buf = self._buf
        if self._discarding:
            found = self._find_start(1)
            if found is None:
                keep = 32  # a start tag may straddle reads
                if len(buf) > keep:
                    self.discarded_bytes += len(buf) - keep
                    del buf[: len(buf) - keep]
                return None
            self.discarded_bytes += found[0]
            del buf[: found[0]]
            self._discarding = False
        found = self._find_start()
        if found is None:
            stripped = bytes(buf).strip()
            if not stripped:
                buf.clear()
                return None
            if len(buf) > self.max_document_bytes:
                junk = bytes(buf)
                buf.clear()
                return Junk(junk, f"{len(junk)} bytes of data that is not an event document")
            return None  # maybe the start of a tag arrives with the next read
        pos, root = found
        if pos:
            prefix = bytes(buf[:pos])
            del buf[:pos]
            if prefix.strip() and not _is_xml_declaration(prefix):
                return Junk(prefix, "data between documents that is not an event document")
        end_tag = b"</" + root + b">"
        end_len = len(end_tag)
        end = buf.find(end_tag)
        if end < 0:
            # Another document starting before this one ends means this one was cut off
            # (a stray "<RESULT>" would otherwise hold every later event until a full
            # max_document_bytes had arrived).
            nxt = self._find_start(1)
            if nxt is not None and nxt[0] + 1 + len(nxt[1]) < len(buf):  # not a name cut by the read
                junk = bytes(buf[: nxt[0]])
                del buf[: nxt[0]]
                return Junk(junk, "document cut off by the start of another document")
            if len(buf) > self.max_document_bytes:
                junk = bytes(buf[: self.max_document_bytes])
                self._discarding = True
                return Junk(junk, f"document exceeds {self.max_document_bytes} bytes without its closing tag")
            return None
        # A new start tag before our end tag means the earlier document was cut off.
        nxt = self._find_start(1, end)
        if nxt is not None:
            junk = bytes(buf[: nxt[0]])
            del buf[: nxt[0]]
            return Junk(junk, "document cut off by the start of another document")
        raw = bytes(buf[: end + end_len])
        del buf[: end + end_len]
        return Document(root.decode(), raw)


def _is_xml_declaration(prefix: bytes) -> bool:
    text = prefix.strip()
    return text.startswith(b"<?xml") and text.endswith(b"?>") and text.count(b"<") == 1
