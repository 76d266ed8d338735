"""The Uptivity API's request/RESULT protocol: requests, answers, result codes, a client.

Every request is a ``<REQUEST>`` document ended by CRLF, laid out like the docs'
examples; every answer is a ``<RESULT>`` that repeats REQUESTID (and REQUESTTYPE),
which :func:`check_answer` insists on. :func:`outcome` sorts the documented RESULTCODEs
into *ok*, *permanent* (retrying soon cannot help: fix the request, licence or
configuration) and *transient* (the server is busy or a part of it is down).
:class:`ApiSession` is the short-lived second connection used for status requests.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import trio

from bridge.errors import EndpointError
from bridge.sources.uptivity.stream import Document, Junk, ParseError, StreamSplitter, parse_document

API_OK = 20
MAX_REQUEST_ID = 2_147_483_647  # "the maximum REQUESTID that can be sent to the API"

# The docs' "Result Codes/Result Types" table (uptivity-api-5.3, incontact-wfo-api-16.2).
RESULT_TYPES = {
    0: "API_RECORDING_STARTED", 1: "API_ERROR_ALREADY_RECORDING", 2: "API_ERROR_OUT_OF_DISK_SPACE",
    3: "API_ERROR_NO_FREE_CHANNELS", 4: "API_ERROR_UNKNOWN", 5: "API_DEVICE_ALIAS_UNSPECIFIED",
    6: "API_ERROR_SCHEDULER_NOT_RUNNING", 7: "API_DEVICE_NOT_IN_CALL", 8: "API_DEVICE_INVALID",
    9: "API_DID_NOT_MATCH_A_SCHEDULE", 10: "API_UNKNOWN_MESSAGE_TYPE", 11: "API_ERROR_PROCESSING_MESSAGE",
    12: "API_DEVICE_NOT_RECORDING", 13: "API_RECORDING_STOPPED", 14: "API_REQUESTID_INVALID",
    15: "API_INVALID_REQUEST_TYPE", 16: "API_INVALID_MESSAGE_FORMAT", 17: "API_INVALID_MESSAGE_FORMAT",
    18: "API_ERROR_NO_DEFAULT_RECORDING_PATH", 20: "API_OK", 21: "API_ERROR_INVALID_ACTION",
    22: "API_ERROR_KEYS_NOT_UNIQUE", 23: "API_DATABASE_QUERY_ERROR", 24: "API_AGENT_NOT_FOUND",
    25: "API_AGENT_NOT_ACTIVE", 26: "API_BLANK_REQUIRED_VALUE", 27: "API_NO_GROUP",
    28: "API_USER_NOT_FOUND", 29: "API_MODE_INVALID", 30: "API_EVENT_TYPE_INVALID",
    31: "API_ERROR_CLIENT_NOT_FOUND", 32: "API_ERROR_ALREADY_MONITORING", 33: "API_SESSIONID_UNSPECIFIED",
    34: "API_ERROR_RECORDER_NOT_RUNNING", 35: "API_ERROR_BLOCKED_RECORDING_FILTER",
    36: "API_ERROR_LOGGER_NOT_RUNNING", 37: "API_RECORDING_UPDATED", 38: "API_BLACKOUT_INVALID_STATE",
    39: "API_UNLICENSED", 40: "API_RECORDID_INVALID", 41: "API_FILE_NOT_FOUND",
    42: "API_AGENT_ALREADY_EXIST", 43: "API_STREAMING_STARTED", 44: "API_COMMAND_NOT_ALLOWED",
    45: "API_EMAIL_NOT_VALID", 46: "API_PARTIAL_CORE_RESPONSE", 47: "API_COMMAND_QUEUE_FULL",
    48: "API_TOO_MANY_CLIENTS", 49: "API_COMMAND_NOT_SUPPORTED", 50: "API_ROLE_ALREADY_EXISTS",
    51: "API_PERMISSIONIDENT_NOT_FOUND", 52: "API_ROLE_NOT_FOUND", 53: "API_SITEID_NOT_VALID",
    54: "API_USER_ALREADY_EXIST", 55: "API_CONFIG_ERROR", 56: "API_MASKID_NOT_VALID",
    57: "API_PHONEID_IN_USE", 58: "API_STATUS_DEFAULT", 59: "API_PARAMETERS_INVALID",
}  # fmt: skip
# Refusals that repeat until someone changes the request, the licence or the server's
# configuration: the source is marked failed and retries slowly.
PERMANENT = frozenset({5, 10, 14, 15, 16, 17, 21, 26, 29, 30, 39, 44, 49, 53, 55, 59})
# Everything else that is not API_OK (busy, a core or database down, too many clients,
# codes not in the table) is transient: retried with the normal backoff.


def outcome(code: int | None) -> str:
    """``ok``, ``permanent`` or ``transient`` for a RESULTCODE (None: unreadable)."""
    if code == API_OK:
        return "ok"
    return "permanent" if code in PERMANENT else "transient"


def render_request(items: list[tuple[str, str]]) -> bytes:
    """A ``<REQUEST>`` laid out like the docs' examples, ended by CRLF."""
    lines = [b"<REQUEST>"]
    for tag, value in items:
        text = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        lines.append(f"  <{tag}>{text}</{tag}>".encode())
    lines.append(b"</REQUEST>")
    return b"\n".join(lines) + b"\r\n"


def events_request(request_id: int, event_class: str = "ALL", event_value: str = "") -> bytes:
    """The Event Interface's request command (REQUESTID first, as documented)."""
    return render_request(
        [
            ("REQUESTID", str(request_id)),
            ("TYPE", "EVENTS"),
            ("EVENTCLASS", event_class),
            ("EVENTVALUE", event_value),
        ]
    )


def echo_request(request_id: int) -> bytes:
    """The documented echo test."""
    return render_request([("TYPE", "TEST"), ("REQUESTID", str(request_id))])


def device_list_request(request_id: int) -> bytes:
    return render_request([("TYPE", "DEVICELIST"), ("REQUESTID", str(request_id))])


def device_request(kind: str, request_id: int, *, device_id: str = "", device_alias: str = "") -> bytes:
    """DEVICESTATUS or DEVICERECORDINGSTATUS for one device, by DEVICEID or DEVICEALIAS."""
    selector = ("DEVICEID", device_id) if device_id else ("DEVICEALIAS", device_alias)
    return render_request([("TYPE", kind), selector, ("REQUESTID", str(request_id))])


@dataclass(frozen=True)
class Answer:
    """A parsed ``<RESULT>``: the header fields, trimmed, and the element for the body."""

    request_type: str | None
    request_id: str | None
    result_type: str | None
    code: int | None
    message: str | None
    element: Any  # lxml element of the RESULT
    raw: bytes

    @property
    def outcome(self) -> str:
        return outcome(self.code)

    def describe(self) -> str:
        """``ERROR (30) API_EVENT_TYPE_INVALID``: type, code, message, and the code's name
        from the docs' table when the message does not already say it."""
        text = f"{self.result_type or '?'} ({self.code if self.code is not None else 'no code'})"
        if self.message:
            text += f" {self.message}"
        name = RESULT_TYPES.get(self.code) if self.code is not None else None
        if name and name not in text:
            text += f" [{name}]"
        return text


def _child_text(element: Any, tag: str) -> str | None:
    child = element.find(tag)
    if child is None or child.text is None:
        return None
    return child.text.strip() or None


def parse_answer(raw: bytes, *, salvage: bool = True) -> Answer:
    """Read one ``<RESULT>``; a document that is not one is a :class:`ParseError`."""
    root = parse_document(raw, salvage=salvage)
    if root.tag != "RESULT":
        raise ParseError(f"expected a <RESULT>, got <{root.tag}>", raw)
    code_text = _child_text(root, "RESULTCODE")
    try:
        code = int(code_text) if code_text is not None else None
    except ValueError:
        code = None
    return Answer(
        request_type=_child_text(root, "REQUESTTYPE"),
        request_id=_child_text(root, "REQUESTID"),
        result_type=_child_text(root, "RESULTTYPE"),
        code=code,
        message=_child_text(root, "RESULTMSG"),
        element=root,
        raw=raw,
    )


def answers(answer: Answer, request_type: str, request_id: int) -> bool:
    """Whether ``answer`` is the answer to that request: REQUESTID must repeat ours, and
    REQUESTTYPE, when the server sends it (the generic examples omit it), must match."""
    if answer.request_id != str(request_id):
        return False
    return answer.request_type is None or answer.request_type.upper() == request_type


class AnswerTooLarge(EndpointError):
    """An answer larger than ``max_answer_bytes`` (a DEVICELIST of a very large site)."""


class Refused(EndpointError):
    """The server answered a request with something other than API_OK."""

    def __init__(self, request_type: str, answer: Answer) -> None:
        self.answer = answer
        self.permanent = answer.outcome == "permanent"
        super().__init__(
            f"{request_type} refused: {answer.describe()}",
            status=answer.code,
            excerpt=answer.raw[:200].decode("utf-8", "replace"),
        )


def enable_keepalive(sock: Any, idle: int, interval: int, count: int) -> None:
    """TCP keepalive: a peer that vanished without FIN or RST is found by the kernel."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for opt, value in (("TCP_KEEPIDLE", idle), ("TCP_KEEPINTVL", interval), ("TCP_KEEPCNT", count)):
        if hasattr(socket, opt):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, opt), value)


class ApiSession:
    """One short-lived connection to the API server for status requests.

    Every request (connect included) has ``timeout`` seconds; answers are bounded by
    ``max_answer_bytes``. Failures are :class:`EndpointError`; refusals :class:`Refused`.
    """

    def __init__(self, host: str, port: int, *, timeout: float, max_answer_bytes: int) -> None:
        self.host, self.port = host, port
        self.timeout = timeout
        self.max_answer_bytes = max_answer_bytes
        self._stream: trio.SocketStream | None = None
        self._splitter = StreamSplitter(max_answer_bytes)
        self._request_id = 0
        self.unmatched = 0  # answers that did not repeat our REQUESTID/REQUESTTYPE

    async def __aenter__(self) -> ApiSession:
        try:
            with trio.fail_after(self.timeout):
                self._stream = await trio.open_tcp_stream(self.host, self.port)
        except trio.TooSlowError:
            raise EndpointError(f"API server {self.host}:{self.port}: connect timed out") from None
        except OSError as exc:
            raise EndpointError(f"API server {self.host}:{self.port}: {exc.strerror or exc}") from None
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._stream is not None:
            with trio.CancelScope(shield=True):
                await self._stream.aclose()

    def next_id(self) -> int:
        self._request_id = self._request_id % MAX_REQUEST_ID + 1
        return self._request_id

    async def request(self, request_type: str, build: Any) -> Answer:
        """Send ``build(request_id)`` and return the RESULT that answers it."""
        assert self._stream is not None
        request_id = self.next_id()
        try:
            with trio.fail_after(self.timeout):
                await self._stream.send_all(build(request_id))
                return await self._answer(request_type, request_id)
        except trio.TooSlowError:
            raise EndpointError(
                f"API server {self.host}:{self.port}: no answer to {request_type} within {self.timeout}s"
            ) from None
        except (trio.BrokenResourceError, OSError) as exc:
            raise EndpointError(f"API server {self.host}:{self.port}: connection broken ({exc})") from None

    async def _answer(self, request_type: str, request_id: int) -> Answer:
        assert self._stream is not None
        while True:
            data = await self._stream.receive_some(65536)
            if not data:
                raise EndpointError(f"API server {self.host}:{self.port}: closed the connection")
            for item in self._splitter.feed(data):
                if isinstance(item, Junk):
                    if "exceeds" in item.reason:
                        raise AnswerTooLarge(f"{request_type} answer {item.reason}")
                    continue
                if len(item.raw) > self.max_answer_bytes:  # complete, but larger than allowed
                    raise AnswerTooLarge(f"{request_type} answer exceeds {self.max_answer_bytes} bytes")
                answer = self._parse(item)
                if answers(answer, request_type, request_id):
                    return answer
                self.unmatched += 1

    @staticmethod
    def _parse(item: Document) -> Answer:
        try:
            return parse_answer(item.raw)
        except ParseError as exc:
            raise EndpointError(
                f"unreadable answer: {exc}", excerpt=item.raw[:200].decode("utf-8", "replace")
            ) from None

    async def checked(self, request_type: str, build: Any) -> Answer:
        """:meth:`request`, raising :class:`Refused` unless the answer is API_OK."""
        answer = await self.request(request_type, build)
        if answer.outcome != "ok":
            raise Refused(request_type, answer)
        return answer
