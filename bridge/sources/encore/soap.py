"""A small SOAP 1.1 client for the Encore Web API (a WCF ``ECAPI.svc`` service).

Only what the Encore operations need: flat request parameters, flat response fields.
Answers are parsed with :func:`bridge.xmlsafe.hardened_parser` (no DTD, no entities, no
network), bounded in size, and fields are matched by *local name*, so whatever prefixes
or wrapper elements a WCF data contract produces (``<a:responseCode>``) do not matter.

Every request has a **total** deadline (``timeout``): httpx's timeouts apply per read,
so a server dripping one byte at a time could otherwise hold a request, and with it all
polling, for as long as it likes.

The docs say "for each request there is a response that must be received before the
next request is sent": requests to one server share one :class:`trio.CapacityLimiter`
(one in flight by default) across every source that polls that server URL.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import trio
from lxml import etree

from bridge.errors import BridgeError, EndpointError, VendorInputError
from bridge.netutil import describe, redact_url
from bridge.xmlsafe import hardened_parser

SOAP11_NS = "http://schemas.xmlsoap.org/soap/envelope/"
DEFAULT_NAMESPACE = "http://tempuri.org/"
DEFAULT_SOAP_ACTION = "{namespace}IECAPI/{operation}"
DEFAULT_MAX_RESPONSE_BYTES = 1024 * 1024
EXCERPT_CHARS = 300


class SoapError(BridgeError):
    """Any failed SOAP exchange; ``excerpt`` is a bounded piece of what came back."""

    def __init__(self, operation: str, message: str, *, status: int | None = None, raw: bytes = b"") -> None:
        self.operation = operation
        self.status = status
        self.raw = raw
        self.excerpt = excerpt(raw)
        detail = f"{operation}: {message}"
        if status is not None:
            detail += f" (HTTP {status})"
        if self.excerpt:
            detail += f"; response starts: {self.excerpt!r}"
        Exception.__init__(self, detail)


class SoapParseError(SoapError, VendorInputError):
    """The answer is not XML, not a SOAP envelope, too big, or uses a DTD (quarantined)."""


class SoapEndpointError(SoapError, EndpointError):
    """The server failed: no answer, an HTTP error, or a SOAP fault."""


class SoapTransportError(SoapEndpointError):
    """No (complete) answer at all: connection refused, TLS failure, deadline passed."""


class SoapHttpError(SoapEndpointError):
    """An HTTP error status without a SOAP fault in the body."""


class SoapFault(SoapEndpointError):
    """The service answered with a SOAP fault."""

    def __init__(
        self, operation: str, faultcode: str, faultstring: str, *, status: int | None, raw: bytes
    ) -> None:
        self.faultcode = faultcode
        self.faultstring = faultstring
        super().__init__(operation, f"SOAP fault {faultcode}: {faultstring}", status=status, raw=raw)

    @property
    def action_not_supported(self) -> bool:
        """WCF's answer to an operation the service does not have (e.g. PortStatusEX on 7.0)."""
        code = self.faultcode.rsplit(":", 1)[-1].lower()
        return code == "actionnotsupported" or "contractfilter mismatch" in self.faultstring.lower()


def excerpt(raw: bytes, limit: int = EXCERPT_CHARS) -> str:
    """A printable, bounded piece of a response for error messages and logs."""
    text = raw[: limit * 4].decode("utf-8", "replace")
    text = " ".join(text.split())
    return text[:limit] + ("…" if len(text) > limit else "")


def local_name(element: Any) -> str:
    tag = element.tag
    if not isinstance(tag, str):  # comments, processing instructions
        return ""
    return str(etree.QName(tag).localname)


def parse_xml(raw: bytes, operation: str = "response", *, status: int | None = None) -> Any:
    """Parse untrusted XML; documents with a DOCTYPE are refused outright."""
    try:
        root = etree.fromstring(raw, parser=hardened_parser())
    except etree.XMLSyntaxError as exc:
        raise SoapParseError(operation, f"not XML ({exc})", status=status, raw=raw) from None
    if root is None:
        raise SoapParseError(operation, "empty document", status=status, raw=raw)
    docinfo: Any = root.getroottree().docinfo  # lxml-stubs lack DocInfo.doctype
    if docinfo.doctype:
        raise SoapParseError(operation, "DOCTYPE/DTD is not allowed", status=status, raw=raw)
    return root


def soap_body(root: Any, operation: str, *, status: int | None = None, raw: bytes = b"") -> Any:
    """The first element inside the envelope's Body, whatever the prefixes."""
    if local_name(root) != "Envelope":
        raise SoapParseError(operation, "not a SOAP envelope", status=status, raw=raw)
    for child in root:
        if local_name(child) == "Body":
            for item in child:
                if local_name(item):
                    return item
            raise SoapParseError(operation, "SOAP Body is empty", status=status, raw=raw)
    raise SoapParseError(operation, "SOAP envelope has no Body", status=status, raw=raw)


def leaf_fields(element: Any) -> dict[str, str]:
    """Every leaf element's text *as sent* by local name (first one wins), wrappers flattened."""
    fields: dict[str, str] = {}
    for node in element.iter():
        name = local_name(node)
        if not name or node is element or len(node):
            continue
        fields.setdefault(name, node.text or "")
    return fields


def fault_of(body_item: Any) -> tuple[str, str] | None:
    """(faultcode, faultstring) when the Body holds a SOAP 1.1 (or 1.2) Fault."""
    if local_name(body_item) != "Fault":
        return None
    code = reason = ""
    for node in body_item.iter():
        name = local_name(node)
        if name in ("faultcode", "Value") and not code:
            code = (node.text or "").strip()
        elif name in ("faultstring", "Text") and not reason:
            reason = (node.text or "").strip()
    return code or "unknown", reason


def build_envelope(operation: str, params: Iterable[tuple[str, str]], namespace: str) -> bytes:
    """A SOAP 1.1 request: ``<Operation xmlns=namespace><Param>value</Param>…``."""
    envelope = etree.Element(etree.QName(SOAP11_NS, "Envelope"), nsmap={"s": SOAP11_NS})
    body = etree.SubElement(envelope, etree.QName(SOAP11_NS, "Body"))
    nsmap: Any = {None: namespace}  # the default namespace (lxml-stubs want str keys)
    op = etree.SubElement(body, etree.QName(namespace, operation), nsmap=nsmap)
    for name, value in params:
        etree.SubElement(op, etree.QName(namespace, name)).text = value
    data: bytes = etree.tostring(envelope, xml_declaration=True, encoding="utf-8")
    return data


@dataclass
class SoapResponse:
    """A successful (non-fault) answer: its fields as sent and the bytes it came from."""

    operation: str
    fields: dict[str, str]
    raw: bytes
    status: int = 200
    _folded: dict[str, str] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for name, value in self.fields.items():
            self._folded.setdefault(name.lower(), value.strip())

    def get(self, name: str, default: str | None = None) -> str | None:
        """Field by name, case-insensitively and trimmed (the docs mix ``Port``/``portStatus``)."""
        return self._folded.get(name.lower(), default)

    @property
    def code(self) -> int | None:
        value = self.get("responseCode")
        try:
            return int(value) if value is not None else None
        except ValueError:
            return None

    @property
    def message(self) -> str:
        return self.get("responseMessage") or ""


def parse_response(operation: str, raw: bytes, status: int) -> SoapResponse:
    """Turn an HTTP answer into a :class:`SoapResponse` or the matching :class:`SoapError`."""
    try:
        root = parse_xml(raw, operation, status=status)
        item = soap_body(root, operation, status=status, raw=raw)
    except SoapParseError:
        if status >= 300:
            raise SoapHttpError(operation, _http_problem(status), status=status, raw=raw) from None
        raise
    fault = fault_of(item)
    if fault is not None:
        raise SoapFault(operation, fault[0], fault[1], status=status, raw=raw)
    if status >= 300:
        raise SoapHttpError(operation, _http_problem(status), status=status, raw=raw)
    return SoapResponse(operation, leaf_fields(item), raw, status)


def _http_problem(status: int) -> str:
    if status < 400:
        return "HTTP redirect (redirects are not followed: set url to the final ECAPI.svc address)"
    return "HTTP error"


def server_key(url: str) -> str:
    """One key per server endpoint: scheme, host, port and path (IIS paths are case-blind);
    credentials and query do not make it another server."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme.lower()}://{(parts.hostname or '').lower()}:{port}{parts.path.lower().rstrip('/')}"


class _Budgets:
    """The in-flight budget of each server, shared by every client of this process."""

    def __init__(self) -> None:
        self._limiters: dict[tuple[object, str], tuple[trio.CapacityLimiter, int]] = {}

    def acquire(self, key: str, tokens: int) -> trio.CapacityLimiter:
        """The server's limiter (created with ``tokens``; the smallest budget wins)."""
        slot = (trio.lowlevel.current_trio_token(), key)
        limiter, users = self._limiters.get(slot, (None, 0))
        if limiter is None:
            limiter = trio.CapacityLimiter(tokens)
        elif tokens < limiter.total_tokens:
            limiter.total_tokens = tokens
        self._limiters[slot] = (limiter, users + 1)
        return limiter

    def release(self, key: str) -> None:
        slot = (trio.lowlevel.current_trio_token(), key)
        limiter, users = self._limiters.get(slot, (None, 0))
        if limiter is None:
            return
        if users <= 1:
            del self._limiters[slot]
        else:
            self._limiters[slot] = (limiter, users - 1)


BUDGETS = _Budgets()


class SoapClient:
    """Calls operations on one endpoint, never more than ``max_in_flight`` at a time *per
    server* (shared with any other client of the same server URL in this process)."""

    def __init__(
        self,
        url: str,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        soap_action: str = DEFAULT_SOAP_ACTION,
        timeout: float = 10.0,
        verify: bool | ssl.SSLContext = True,
        auth: tuple[str, str] | None = None,
        max_in_flight: int = 1,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        self.url = url
        self.namespace = namespace
        self.soap_action = soap_action
        self.timeout = timeout
        self.max_response_bytes = max_response_bytes
        self.key = server_key(url)
        self._tokens = max_in_flight
        self._limiter: trio.CapacityLimiter | None = None
        self.requests = 0
        self._http = httpx.AsyncClient(timeout=timeout, verify=verify, auth=auth, follow_redirects=False)

    @property
    def limiter(self) -> trio.CapacityLimiter:
        if self._limiter is None:
            self._limiter = BUDGETS.acquire(self.key, self._tokens)
        return self._limiter

    def action(self, operation: str) -> str:
        return self.soap_action.format(namespace=self.namespace, operation=operation)

    async def aclose(self) -> None:
        if self._limiter is not None:
            BUDGETS.release(self.key)
            self._limiter = None
        await self._http.aclose()

    async def call(self, operation: str, params: Iterable[tuple[str, str]] = ()) -> SoapResponse:
        """One request/response; raises a :class:`SoapError` subclass on any failure."""
        body = build_envelope(operation, params, self.namespace)
        headers = {
            "Content-Type": "text/xml; charset=utf-8",
            "SOAPAction": f'"{self.action(operation)}"',
        }
        async with self.limiter:
            self.requests += 1
            status, raw = await self._post(operation, body, headers)
        return parse_response(operation, raw, status)

    async def _post(self, operation: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        outcome: tuple[int, bytes] | None = None
        with trio.move_on_after(self.timeout):
            outcome = await self._exchange(operation, body, headers)
        if outcome is None:
            raise SoapTransportError(
                operation,
                f"TotalTimeout: no complete answer from {redact_url(self.url)} "
                f"within timeout = {self.timeout:g} s",
            )
        return outcome

    async def _exchange(self, operation: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        try:
            async with self._http.stream("POST", self.url, content=body, headers=headers) as resp:
                chunks: list[bytes] = []
                size = 0
                async for chunk in resp.aiter_bytes():
                    size += len(chunk)
                    chunks.append(chunk)
                    if size > self.max_response_bytes:
                        raise SoapParseError(
                            operation,
                            f"response larger than {self.max_response_bytes} bytes",
                            status=resp.status_code,
                            raw=b"".join(chunks)[: self.max_response_bytes],
                        )
                return resp.status_code, b"".join(chunks)
        except httpx.HTTPError as exc:
            raise SoapTransportError(operation, describe(exc)) from None
