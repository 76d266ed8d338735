"""Uptivity / inContact WFO (cc: Discover, "CallCopy") Event Proxy source.

Connects over TCP (default port 5620), sends the ``EVENTS`` request terminated by CRLF,
checks the ``RESULT`` (API_OK, code 20) and then reads ``<CALLCOPYEVENT>`` documents
for as long as the connection lives. Reconnects forever with capped, jittered backoff.

What "nothing lost" can mean here: the Event Proxy has no acknowledgements and no
replay. Bytes still in the kernel's socket buffer when the bridge is killed are gone
for every subscriber, as are events the proxy emits while no connection is up. The
source therefore reads eagerly and hands every event to the outbox as soon as its
closing tag arrives; loss is measured against what the bridge had read.
"""

from __future__ import annotations

import socket
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import trio
from lxml import etree

from bridge.backoff import Backoff
from bridge.components import ComponentBase
from bridge.config import Table
from bridge.model import Event, utcnow, vendor_type
from bridge.sources.base import Health, SourceContext
from bridge.sources.uptivity_stream import (
    MAX_DOCUMENT_BYTES,
    Document,
    Junk,
    ParseError,
    StreamSplitter,
    element_fields,
    parse_document,
)

VENDOR = "uptivity"
DEFAULT_PORT = 5620
API_OK = 20

TYPE_MAP = {
    "CALLSTART": "call.started",
    "CALLSTOP": "call.ended",
    "RECORDINGSTARTED": "recording.started",
    "RECORDINGSTOPPED": "recording.stopped",
    "RECORDINGPAUSED": "recording.paused",
    "RECORDINGRESUMED": "recording.resumed",
    "RECORDINGUPDATE": "recording.saved",
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
READ_SIZE = 65536
USER_FIELDS = tuple(f"USER{i}" for i in range(1, 16))


def _text(value: object) -> str | None:
    """A vendor value with surrounding whitespace removed; empty means absent."""
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return None


def parse_vendor_time(value: str | None, tz: ZoneInfo) -> datetime | None:
    """Read a zone-less vendor timestamp ("1/31/2011 2:39:49 PM") in the source's zone."""
    if not value:
        return None
    for fmt in TIME_FORMATS:
        try:
            return datetime.strptime(value, fmt).replace(tzinfo=tz)
        except ValueError:
            continue
    return None


def _stripped(fields: dict[str, Any]) -> dict[str, str]:
    """Values with surrounding whitespace removed, empty ones left out (one pass)."""
    return {k: t for k, v in fields.items() if isinstance(v, str) and (t := v.strip())}


def to_event(
    fields: dict[str, Any], *, source_name: str, tz: ZoneInfo, received: datetime, raw: bytes | None = None
) -> Event:
    """Map one parsed ``CALLCOPYEVENT`` to the common model; unknown types pass through.

    ``raw`` (the document's bytes, when known) is the event's identity for its id.
    """
    top = _stripped(fields)
    event_type_raw = top.get("EVENTTYPE", "")
    event_type = TYPE_MAP.get(event_type_raw.upper()) or vendor_type(VENDOR, event_type_raw or "unknown")
    data_raw = fields.get("EVENTDATA")
    values = _stripped(data_raw) if isinstance(data_raw, dict) else {}
    data: dict[str, Any] = {"vendor": VENDOR, "source_name": source_name}
    for name, vendor_field in FIELD_MAP.items():
        data[name] = values.get(vendor_field)
    direction = values.get("CALLDIRECTION")
    data["direction"] = DIRECTIONS.get(direction.upper(), direction) if direction else None
    data["event_class"] = top.get("EVENTCLASS")
    data["vendor_event_type"] = event_type_raw or None
    data["module"] = top.get("MODULE")
    data["user_fields"] = {key: values[key] for key in USER_FIELDS if key in values}
    start = parse_vendor_time(values.get("STARTTIME"), tz)
    stop = parse_vendor_time(values.get("STOPTIME"), tz)
    data["start_time"] = start.isoformat() if start else None
    data["stop_time"] = stop.isoformat() if stop else None
    when = (stop if event_type in ("call.ended", "recording.stopped") else None) or start or received
    data["time_source"] = "vendor" if when is not received else "received"
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


def events_request(request_id: int, event_class: str, event_value: str = "") -> bytes:
    """The documented EVENTS request, terminated by CRLF."""
    req = etree.Element("REQUEST")
    for tag, text in (
        ("REQUESTID", str(request_id)),
        ("TYPE", "EVENTS"),
        ("EVENTCLASS", event_class),
        ("EVENTVALUE", event_value),
    ):
        etree.SubElement(req, tag).text = text
    return etree.tostring(req) + b"\r\n"


class SubscriptionRefused(Exception):
    """The proxy answered the EVENTS request with something other than API_OK."""


class UptivitySource(ComponentBase):
    vendor = VENDOR

    def __init__(
        self,
        name: str,
        *,
        host: str,
        port: int = DEFAULT_PORT,
        event_class: str = "ALL",
        event_value: str = "",
        timezone: ZoneInfo,
        idle_timeout: float = 300.0,
        connect_timeout: float = 10.0,
        result_timeout: float = 15.0,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        max_document_bytes: int = MAX_DOCUMENT_BYTES,
    ) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.event_class = event_class
        self.event_value = event_value
        self.timezone = timezone
        self.idle_timeout = idle_timeout
        self.connect_timeout = connect_timeout
        self.result_timeout = result_timeout
        self.backoff = Backoff(base=backoff_base, cap=backoff_cap)
        self.max_document_bytes = max_document_bytes
        self.health = Health()
        self.request_id = 0
        self.parse_errors = 0
        self.bytes_read = 0
        self.events_read = 0

    def describe(self) -> str:
        return f"{self.host}:{self.port}"

    def stats(self) -> dict[str, float]:
        return {"events_read": float(self.events_read), "parse_errors": float(self.parse_errors)}

    async def run(
        self, ctx: SourceContext, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        while True:
            reason = await self._session(ctx)
            self.health.set("disconnected", reason)
            delay = self.backoff.next()
            ctx.log.warning(
                "uptivity_disconnected", endpoint=self.describe(), reason=reason, retry_in=round(delay, 2)
            )
            await trio.sleep(delay)

    async def _session(self, ctx: SourceContext) -> str:
        """One connection's life; returns why it ended."""
        try:
            with trio.fail_after(self.connect_timeout):
                stream = await trio.open_tcp_stream(self.host, self.port)
        except trio.TooSlowError:
            return f"connect timed out after {self.connect_timeout}s"
        except OSError as exc:
            return f"connect failed: {exc.strerror or exc}"
        async with stream:
            _enable_keepalive(stream.socket)
            self.request_id = self.request_id % 2_147_483_647 + 1
            try:
                await stream.send_all(events_request(self.request_id, self.event_class, self.event_value))
                return await self._read(ctx, stream)
            except trio.BrokenResourceError as exc:
                return f"connection broken: {exc.__cause__ or exc}"
            except OSError as exc:
                return f"connection error: {exc.strerror or exc}"
            except SubscriptionRefused as exc:
                return str(exc)

    async def _read(self, ctx: SourceContext, stream: trio.SocketStream) -> str:
        splitter = StreamSplitter(self.max_document_bytes)
        subscribed = False
        deadline = self.result_timeout
        while True:
            timeout = deadline if not subscribed else (self.idle_timeout or float("inf"))
            with trio.move_on_after(timeout) as scope:
                data = await stream.receive_some(READ_SIZE)
            if scope.cancelled_caught:
                if not subscribed:
                    return f"no RESULT to the EVENTS request within {self.result_timeout}s"
                return f"no data for {self.idle_timeout}s (idle timeout; peer may be gone)"
            if not data:
                return "connection closed by the Event Proxy"
            self.bytes_read += len(data)
            received = utcnow()
            batch: list[Event] = []
            for item in splitter.feed(data):
                if isinstance(item, Junk):
                    self._quarantine(ctx, item.raw, item.reason)
                    continue
                if item.root == "RESULT":
                    subscribed = self._check_result(ctx, item) or subscribed
                    continue
                event = self._to_event(ctx, item, received)
                if event is not None:
                    batch.append(event)
            if batch:
                self.events_read += len(batch)
                await ctx.emit(batch)

    def _check_result(self, ctx: SourceContext, doc: Document) -> bool:
        try:
            fields = element_fields(parse_document(doc.raw))
        except ParseError as exc:
            self._quarantine(ctx, doc.raw, f"unreadable RESULT: {exc}")
            raise SubscriptionRefused(f"unreadable RESULT to the EVENTS request: {exc}") from None
        code = _text(fields.get("RESULTCODE"))
        result_type = _text(fields.get("RESULTTYPE"))
        message = _text(fields.get("RESULTMSG"))
        if code == str(API_OK) or result_type == "API_OK":
            self.backoff.reset()
            if self.health.set("connected", f"subscribed to {self.event_class} events"):
                ctx.log.info(
                    "uptivity_subscribed",
                    endpoint=self.describe(),
                    event_class=self.event_class,
                    request_id=self.request_id,
                )
            return True
        self.health.set("error", f"EVENTS refused: {result_type} ({code}) {message or ''}".strip())
        ctx.log.error(
            "uptivity_events_refused",
            endpoint=self.describe(),
            result_type=result_type,
            result_code=code,
            result_msg=message,
            hint="check the Event Proxy / API server settings; retrying with backoff",
        )
        raise SubscriptionRefused(f"EVENTS request refused: {result_type} ({code}) {message or ''}".strip())

    def _to_event(self, ctx: SourceContext, doc: Document, received: datetime) -> Event | None:
        try:
            root = parse_document(doc.raw)
        except ParseError as exc:
            self._quarantine(ctx, doc.raw, str(exc))
            return None
        return to_event(
            element_fields(root), source_name=self.name, tz=self.timezone, received=received, raw=doc.raw
        )

    def _quarantine(self, ctx: SourceContext, raw: bytes, reason: str) -> None:
        self.parse_errors += 1
        path = ctx.quarantine.keep(self.name, reason, raw)
        ctx.log.warning(
            "uptivity_bad_input",
            endpoint=self.describe(),
            reason=reason,
            bytes=len(raw),
            excerpt=raw[:200].decode("utf-8", "replace"),
            quarantined=str(path),
        )


def _enable_keepalive(sock: Any) -> None:
    """TCP keepalive so a peer that vanished without FIN is noticed within about a minute."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for opt, value in (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 3)):
        if hasattr(socket, opt):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, opt), value)


def from_config(table: Table) -> UptivitySource:
    return UptivitySource(
        table.name(),
        host=table.str("host"),
        port=table.int("port", DEFAULT_PORT, min=1, max=65535),
        event_class=table.str("event_class", "ALL"),
        event_value=table.str("event_value", ""),
        timezone=table.timezone("timezone"),
        idle_timeout=table.float("idle_timeout", 300.0, min=0.0),
        connect_timeout=table.float("connect_timeout", 10.0, min=0.1),
        result_timeout=table.float("result_timeout", 15.0, min=0.1),
        backoff_base=table.float("reconnect_min", 0.5, min=0.01),
        backoff_cap=table.float("reconnect_max", 30.0, min=0.01),
        max_document_bytes=table.int("max_document_bytes", MAX_DOCUMENT_BYTES, min=1024),
    )
