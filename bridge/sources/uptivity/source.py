"""Uptivity / inContact WFO (cc: Discover, "CallCopy") Event Proxy source: the I/O shell.

Connects over TCP (default port 5620), sends the ``EVENTS`` request, checks that the
``RESULT`` answers it (REQUESTTYPE, REQUESTID, API_OK) and reads ``<CALLCOPYEVENT>``
documents for as long as the connection lives. After every subscription (the first
one after a start included) it reconciles on a second, short-lived API connection:
the status answer is compared with the per-device state persisted with the events and
the missed transitions are emitted (``data.reconciled = true``).

Liveness: a quiet subscription stays up. A dead peer is found by TCP keepalive and by
the documented ``TEST`` echo on the API connection after ``probe_interval`` quiet
seconds, never by silence alone (``idle_timeout`` is an opt-in).
"""

from __future__ import annotations

from datetime import datetime
from functools import partial

import trio

from bridge.backoff import Backoff
from bridge.components import ComponentBase, Health, SourceContext
from bridge.errors import EndpointError
from bridge.model import Event, utcnow
from bridge.sources.uptivity.api import (
    answers,
    enable_keepalive,
    events_request,
    parse_answer,
)
from bridge.sources.uptivity.mapping import LIVE_STATE, VENDOR, to_event
from bridge.sources.uptivity.reconcile import (
    BASELINE_KEY,
    STATE_PREFIX,
    Known,
    known_from_state,
)
from bridge.sources.uptivity.recovery import ApiSide
from bridge.sources.uptivity.settings import UptivitySettings
from bridge.sources.uptivity.stream import (
    Document,
    Junk,
    ParseError,
    StreamSplitter,
    element_fields,
    parse_document,
)

READ_SIZE = 65536
# After a status answer, what the proxy already sent is read before comparing: until the
# stream has been quiet this long, at most this long in all, at most this many bytes. Live
# events wait uncommitted meanwhile (a kill -9 then takes them, and the proxy has no
# replay), so the drain is kept short: on a busy stream it is never quiet.
DRAIN_QUIET_SECONDS = 0.01
DRAIN_MAX_SECONDS = 0.05
DRAIN_MAX_BYTES = 1024 * 1024


class SessionEnd(EndpointError):
    """Why a subscription ended, and how long to wait before the next one."""

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        self.permanent = permanent
        super().__init__(reason)


class UptivitySource(ApiSide, ComponentBase):
    vendor = VENDOR

    def __init__(self, settings: UptivitySettings) -> None:
        self.settings = settings
        self.name = settings.name
        self.host, self.port = settings.host, settings.port
        self.event_class = settings.event_class
        self.api_host = settings.api_host or settings.host
        self.api_port = settings.api_port or settings.port
        self.timezone = settings.zone
        self.backoff = Backoff(base=settings.reconnect_min, cap=settings.reconnect_max)
        self.health = Health()
        self.request_id = 0
        self.events_read = 0
        self.parse_errors = 0
        self.reconciled = 0
        self.reconciliations = 0  # completed reconcile passes
        self.probes = 0
        self.superseded = 0  # reconciled transitions a live event already reported
        self.bytes_read = 0
        self.known: dict[str, Known] = {}
        self.baseline = False
        self._reconcile_at: float | None = None
        self._loaded = False

    def describe(self) -> str:
        return f"{self.host}:{self.port}"

    def stats(self) -> dict[str, float]:
        return {
            "events_read": float(self.events_read),
            "parse_errors": float(self.parse_errors),
            "reconciled": float(self.reconciled),
        }

    def _zone_note(self) -> str:
        return f"times in {self.timezone.key} ({self.settings.zone_origin})"

    async def run(
        self, ctx: SourceContext, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        if not self._loaded:
            # ctx.state is the state as of start-up: after a crash and restart of run()
            # by the supervisor, what this object learned since is newer.
            self.known = known_from_state(ctx.state)
            self.baseline = BASELINE_KEY in ctx.state
            self._loaded = True
        ctx.log.info(
            "uptivity_starting",
            endpoint=self.describe(),
            api=f"{self.api_host}:{self.api_port}",
            timezone=self.timezone.key,
            timezone_origin=self.settings.zone_origin,
            known_devices=len(self.known),
        )
        if self.settings.timezone is None and self.settings.zone_origin.startswith("default"):
            ctx.log.warning(
                "uptivity_timezone_default",
                timezone="UTC",
                hint='zone-less STARTTIME/STOPTIME are read as UTC; set timezone = "<IANA zone>"',
            )
        task_status.started()
        while True:
            try:
                await self._session(ctx)
                raise SessionEnd("connection closed by the Event Proxy")
            except SessionEnd as end:
                reason = str(end)
                if end.permanent:
                    delay = self.settings.refused_retry
                    self.health.set("error", f"{reason}; retrying every {delay:g}s")
                else:
                    delay = self.backoff.next()
                    self.health.set("disconnected", reason)
            ctx.log.warning(
                "uptivity_disconnected", endpoint=self.describe(), reason=reason, retry_in=round(delay, 2)
            )
            await trio.sleep(delay)

    async def _session(self, ctx: SourceContext) -> None:
        """One subscription's life; raises :class:`SessionEnd` saying why it ended."""
        timeout = self.settings.timeout
        try:
            with trio.fail_after(timeout):
                stream = await trio.open_tcp_stream(self.host, self.port)
        except trio.TooSlowError:
            raise SessionEnd(f"connect timed out after {timeout}s") from None
        except OSError as exc:
            raise SessionEnd(f"connect failed: {exc.strerror or exc}") from None
        async with stream:
            s = self.settings
            enable_keepalive(stream.socket, s.keepalive_idle, s.keepalive_interval, s.keepalive_count)
            self.request_id = self.request_id % 2_147_483_647 + 1
            try:
                await stream.send_all(events_request(self.request_id, s.event_class, s.event_value))
                await self._read(ctx, stream)
            except trio.BrokenResourceError as exc:
                raise SessionEnd(f"connection broken: {exc.__cause__ or exc}") from None
            except OSError as exc:
                raise SessionEnd(f"connection error: {exc.strerror or exc}") from None

    async def _read(self, ctx: SourceContext, stream: trio.SocketStream) -> None:
        s = self.settings
        splitter = StreamSplitter(s.max_document_bytes)
        subscribed = False
        result_deadline = trio.current_time() + s.timeout
        last_data = last_probe = trio.current_time()
        failures = 0
        while True:
            if not subscribed:
                wake = result_deadline
            else:
                wakes = [float("inf")]
                if s.idle_timeout:
                    wakes.append(last_data + s.idle_timeout)
                if s.probe_interval:
                    wakes.append(max(last_data, last_probe) + s.probe_interval)
                if self._reconcile_at is not None:
                    wakes.append(self._reconcile_at)
                wake = min(wakes)
            with trio.move_on_at(wake) as scope:
                data = await stream.receive_some(READ_SIZE)
            if scope.cancelled_caught:
                now = trio.current_time()
                if not subscribed:
                    raise SessionEnd(f"no RESULT to the EVENTS request within {s.timeout}s")
                if s.idle_timeout and now >= last_data + s.idle_timeout:
                    raise SessionEnd(f"no data for {s.idle_timeout}s (idle timeout: idle_timeout is set)")
                if self._reconcile_at is not None and now >= self._reconcile_at:
                    await self._reconcile(ctx, partial(self._drain, ctx, stream, splitter, []))
                if s.probe_interval and now >= max(last_data, last_probe) + s.probe_interval:
                    failures = 0 if await self._probe(ctx) else failures + 1
                    last_probe = trio.current_time()
                    if failures >= s.probe_failures:
                        raise SessionEnd(
                            f"peer presumed dead: {failures} TEST requests to "
                            f"{self.api_host}:{self.api_port} "
                            "unanswered while the subscription was silent"
                        )
                continue
            if not data:
                raise SessionEnd("connection closed by the Event Proxy")
            last_data, failures = trio.current_time(), 0
            self.bytes_read += len(data)
            received = utcnow()
            batch: list[Event] = []
            items = list(splitter.feed(data))
            for i, item in enumerate(items):
                if isinstance(item, Junk):
                    self._quarantine(ctx, item.raw, item.reason)
                elif item.root == "RESULT":
                    if not subscribed and self._check_result(ctx, item):
                        subscribed = True
                        await self._flush(ctx, batch)
                        batch = []
                        rest = self._events(ctx, items[i + 1 :], received)
                        await self._reconcile(ctx, partial(self._drain, ctx, stream, splitter, rest))
                        break
                elif (event := self._to_event(ctx, item, received)) is not None:
                    batch.append(event)
            await self._flush(ctx, batch)

    def _events(self, ctx: SourceContext, items: list[Document | Junk], received: datetime) -> list[Event]:
        """Live events of ``items`` (junk quarantined; a RESULT here answers nothing of ours)."""
        out: list[Event] = []
        for item in items:
            if isinstance(item, Junk):
                self._quarantine(ctx, item.raw, item.reason)
            elif item.root != "RESULT" and (event := self._to_event(ctx, item, received)) is not None:
                out.append(event)
        return out

    async def _drain(
        self, ctx: SourceContext, stream: trio.SocketStream, splitter: StreamSplitter, first: list[Event]
    ) -> list[Event]:
        """What the proxy has already sent, read without waiting for more (bounded).

        Called once a status answer is in: a live event among these may report a change
        the answer also shows, which must then not be announced twice.
        """
        out, taken = list(first), 0
        deadline = trio.current_time() + DRAIN_MAX_SECONDS
        while taken < DRAIN_MAX_BYTES and trio.current_time() < deadline:
            with trio.move_on_after(DRAIN_QUIET_SECONDS):
                try:
                    data = await stream.receive_some(READ_SIZE)
                except (trio.BrokenResourceError, OSError):
                    break  # keep what was read; the read loop meets the error next
                if not data:
                    break  # the read loop sees the end of the connection next
                taken += len(data)
                self.bytes_read += len(data)
                out += self._events(ctx, list(splitter.feed(data)), utcnow())
                continue
            break
        return out

    async def _flush(self, ctx: SourceContext, batch: list[Event]) -> None:
        """Emit live events with the device states they leave behind (same transaction)."""
        if not batch:
            return
        state: dict[str, str | None] = {}
        for event in batch:
            new = LIVE_STATE.get(event.type)
            if new is None or not event.subject:
                continue
            known = None
            if new != "idle":
                # A pause or resume belongs to the recording already known: keep what it
                # said when the event does not say it again.
                same = self.known.get(event.subject) if event.type != "recording.started" else None
                known = Known(
                    new,
                    event.data.get("filename") or (same.filename if same else None),
                    event.data.get("call_instance") or (same.call_instance if same else None),
                )
            if known is None:
                self.known.pop(event.subject, None)
            else:
                self.known[event.subject] = known
            state[STATE_PREFIX + event.subject] = known.dump() if known else None
        self._bound(ctx, state)
        self.events_read += len(batch)
        await ctx.emit(batch, state=state or None)

    def _bound(self, ctx: SourceContext, state: dict[str, str | None]) -> None:
        """Keep at most ``max_tracked_devices`` recording devices (a hostile stream of new
        DEVICEIDs must not grow memory and state without limit): the oldest are dropped."""
        excess = len(self.known) - self.settings.max_tracked_devices
        if excess <= 0:
            return
        for device_id in list(self.known)[:excess]:
            del self.known[device_id]
            state[STATE_PREFIX + device_id] = None
        ctx.log.warning(
            "uptivity_device_state_dropped",
            devices=excess,
            limit=self.settings.max_tracked_devices,
            note="their missed stops cannot be reconciled; raise max_tracked_devices if this is a real site",
        )

    def _check_result(self, ctx: SourceContext, doc: Document) -> bool:
        try:
            answer = parse_answer(doc.raw, salvage=False)
        except ParseError as exc:
            self._quarantine(ctx, doc.raw, f"unreadable RESULT: {exc}")
            raise SessionEnd(f"unreadable RESULT to the EVENTS request: {exc}") from None
        if not answers(answer, "EVENTS", self.request_id):
            ctx.log.warning(
                "uptivity_unmatched_result",
                endpoint=self.describe(),
                expected_request_id=self.request_id,
                request_type=answer.request_type,
                request_id=answer.request_id,
                note="not the answer to our EVENTS request; ignored",
            )
            return False
        if answer.outcome == "ok":
            self.backoff.reset()
            if self.health.set(
                "connected", f"subscribed to {self.settings.event_class} events; {self._zone_note()}"
            ):
                ctx.log.info(
                    "uptivity_subscribed",
                    endpoint=self.describe(),
                    event_class=self.settings.event_class,
                    request_id=self.request_id,
                )
            return True
        permanent = answer.outcome == "permanent"
        ctx.log.error(
            "uptivity_events_refused",
            endpoint=self.describe(),
            result_type=answer.result_type,
            result_code=str(answer.code) if answer.code is not None else None,
            result_msg=answer.message,
            permanent=permanent,
            hint="fix the EVENTS request or the API server's settings (see RESULTMSG)"
            if permanent
            else "the server is busy or part of it is down; retrying with backoff",
        )
        raise SessionEnd(f"EVENTS refused: {answer.describe()}", permanent=permanent)

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
