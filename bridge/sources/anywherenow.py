"""AnywhereNow source: SignalR ``RecordingStateChangedEvent`` plus REST reconciliation.

A SignalR hub does not replay what a disconnected client missed, so the bridge keeps,
per call, the recording state it last saw (committed with the events themselves via
``ctx.emit(state=...)``). After every (re)connect, including the first one after a
restart, it asks the REST Recording API for each call it last saw started or paused and
emits the transitions it missed, marked ``data["reconciled"] = True``.

The helpers live next to this module: ``anywherenow_mapping`` (payload -> Event),
``anywherenow_hub`` (signalrcore threads <-> trio) and ``anywherenow_rest`` (REST API).
"""

from __future__ import annotations

import json
import math
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import trio

from bridge.backoff import Backoff
from bridge.components import ComponentBase
from bridge.config import Table
from bridge.model import Event
from bridge.sources.anywherenow_hub import HubConnectError, HubLink, HubMessage, negotiate
from bridge.sources.anywherenow_mapping import (
    PAUSED,
    STARTED,
    PayloadError,
    live_event,
    parse_invocation,
    parse_recording_state,
    parse_state_key,
    reconcile_transition,
    reconciled_event,
    state_key,
)
from bridge.sources.anywherenow_mapping import field as payload_field
from bridge.sources.anywherenow_rest import RecordingApi, RestError, RestResult
from bridge.sources.base import Health, SourceContext

DEFAULT_TARGET = "RecordingStateChangedEvent"
# Seconds after a reconcile during which a live copy of the same change is not announced again.
RECONCILED_REPEAT_WINDOW = 30.0


@dataclass
class AnywhereNowSettings:
    """Everything ``[[sources.anywherenow]]`` configures (see config/anywherenow-only.example.toml)."""

    name: str
    hub_url: str
    target: str = DEFAULT_TARGET
    access_token: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    verify_tls: bool = True
    ca_file: Path | None = None
    rest_url: str | None = None
    rest_api: str = "auto"
    ucc_names: list[str] = field(default_factory=list)
    connect_timeout: float = 10.0
    request_timeout: float = 10.0
    ping_interval: float = 15.0
    server_timeout: float = 30.0
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    queue_size: int = 1000
    forget_after: float = 86400.0
    drain_timeout: float = 5.0

    def request_headers(self) -> dict[str, str]:
        headers = dict(self.headers)
        if self.access_token:
            headers["Authorization"] = f"Bearer {self.access_token}"
        return headers

    def ssl_context(self) -> ssl.SSLContext:
        if not self.verify_tls:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            return context
        return ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)


def _check_url(table: Table, key: str, value: str, schemes: tuple[str, ...]) -> str:
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.hostname:
        raise table.error(
            key, f"must be a URL starting with {' or '.join(s + '://' for s in schemes)}; got {value!r}"
        )
    return value


def from_config(table: Table) -> AnywhereNowSource:
    """Build the source from one ``[[sources.anywherenow]]`` table."""
    name = table.name()
    hub_url = _check_url(table, "hub_url", table.str("hub_url"), ("https", "http", "wss", "ws"))
    rest_url = table.str("rest_url", None)
    if rest_url is not None:
        _check_url(table, "rest_url", rest_url, ("https", "http"))
    ca_file = table.path_value("ca_file", None)
    if ca_file is not None and not Path(ca_file).is_file():
        raise table.error("ca_file", f"{ca_file} does not exist or is not a file")
    ucc_names = table.str_list("ucc_names", [])
    settings = AnywhereNowSettings(
        name=name,
        hub_url=hub_url,
        target=table.str("target", DEFAULT_TARGET),
        access_token=table.str("access_token", None, secret=True),
        headers=table.str_map("headers", {}, secret=True),
        verify_tls=table.bool("verify_tls", True),
        ca_file=ca_file,
        rest_url=rest_url,
        rest_api=table.str("rest_api", "auto", choices=("auto", "v2", "v1")),
        ucc_names=list(ucc_names),
        connect_timeout=table.float("connect_timeout", 10.0, min=0.1, max=300.0),
        request_timeout=table.float("request_timeout", 10.0, min=0.1, max=300.0),
        ping_interval=table.float("ping_interval", 15.0, min=0.05, max=300.0),
        server_timeout=table.float("server_timeout", 30.0, min=0.1, max=3600.0),
        backoff_base=table.float("backoff_base", 0.5, min=0.001, max=60.0),
        backoff_cap=table.float("backoff_cap", 30.0, min=0.01, max=3600.0),
        queue_size=table.int("queue_size", 1000, min=1, max=1_000_000),
        forget_after=table.float("forget_after", 86400.0, min=60.0),
    )
    if settings.server_timeout <= settings.ping_interval:
        raise table.error(
            "server_timeout", "must be larger than ping_interval (the hub pings about every 15 s)"
        )
    if not settings.target.strip():
        raise table.error("target", "must not be empty")
    return AnywhereNowSource(settings)


@dataclass
class CallState:
    state: str  # STARTED or PAUSED
    since: float  # wall-clock seconds when the bridge saw it enter this state

    def encode(self) -> str:
        return json.dumps({"state": self.state, "since": round(self.since, 3)}, separators=(",", ":"))

    @staticmethod
    def decode(value: str) -> CallState | None:
        try:
            data = json.loads(value)
        except ValueError:
            data = {"state": value, "since": time.time()}
        if not isinstance(data, dict) or data.get("state") not in (STARTED, PAUSED):
            return None
        since = data.get("since")
        return CallState(data["state"], float(since) if isinstance(since, int | float) else time.time())


class AnywhereNowSource(ComponentBase):
    vendor = "anywherenow"

    def __init__(self, settings: AnywhereNowSettings) -> None:
        self.settings = settings
        self.name = settings.name
        self.health = Health()
        self.calls: dict[tuple[str, str], CallState] = {}
        self.connections = 0  # successful hub connections so far (tests and metrics)
        self.reconciliations = 0  # completed reconcile passes
        self._capability_send: trio.MemorySendChannel[str] | None = None
        self._checked_uccs: set[str] = set()
        self._inflight: trio.CancelScope | None = None
        self._state_loaded = False
        self._reconciled: dict[tuple[str, str], tuple[str | None, float]] = {}

    # ---- lifecycle ---------------------------------------------------------------------

    async def run(
        self, ctx: SourceContext, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Connect, reconcile and forward events forever; reconnects with backoff."""
        s = self.settings
        self._load_state(ctx)
        task_status.started()
        if not s.verify_tls:
            ctx.log.warning("anywherenow_tls_verification_disabled", hub_url=s.hub_url)
        tls = s.ssl_context()
        timeout = httpx.Timeout(s.request_timeout, connect=s.connect_timeout)
        async with httpx.AsyncClient(verify=tls, timeout=timeout, headers=s.request_headers()) as http:
            api = RecordingApi(http, s.rest_url, s.rest_api) if s.rest_url else None
            if api is None:
                ctx.log.warning(
                    "anywherenow_reconcile_disabled",
                    reason="rest_url is not set: transitions missed while disconnected cannot be recovered",
                )
            async with trio.open_nursery() as nursery:
                send, receive = trio.open_memory_channel[str](math.inf)
                self._capability_send = send
                if api is not None:
                    nursery.start_soon(self._capabilities, ctx, api, receive)
                    for ucc in s.ucc_names:
                        self._want_capabilities(ucc)
                await self._connect_forever(ctx, http, api, tls)

    def _load_state(self, ctx: SourceContext) -> None:
        # Only on the first run: after a crash the runner restarts run() with the same
        # start-up snapshot, while self.calls already holds everything emitted since.
        if self._state_loaded:
            return
        self._state_loaded = True
        for key, value in (ctx.state or {}).items():
            parsed = parse_state_key(key)
            call = CallState.decode(value) if parsed else None
            if parsed is None or call is None:
                ctx.log.warning("anywherenow_state_ignored", key=key, value=value)
                continue
            self.calls[parsed] = call
        if self.calls:
            ctx.log.info("anywherenow_state_loaded", open_calls=len(self.calls))

    async def _connect_forever(
        self, ctx: SourceContext, http: httpx.AsyncClient, api: RecordingApi | None, tls: ssl.SSLContext
    ) -> None:
        s = self.settings
        backoff = Backoff(base=s.backoff_base, cap=s.backoff_cap)
        while True:
            ctx.log.info("anywherenow_connecting", hub_url=s.hub_url, attempt=backoff.attempt + 1)
            connected_at: float | None = None
            try:
                connected_at, reason = await self._session(ctx, http, api, tls)
                state = "disconnected"
            except HubConnectError as exc:
                reason, state = str(exc), "error"
            except trio.TooSlowError:
                reason, state = f"negotiate timed out after {s.connect_timeout * 2:g}s", "error"
            except (OSError, httpx.HTTPError, ssl.SSLError) as exc:
                reason, state = f"{type(exc).__name__}: {exc}", "error"
            if connected_at is not None and trio.current_time() - connected_at >= min(5.0, s.backoff_cap):
                backoff.reset()  # it was up for a while: this is a fresh failure, not a flapping hub
            delay = backoff.next()
            self.health.set(state, reason)
            log = ctx.log.warning if state == "disconnected" else ctx.log.error
            log(
                "anywherenow_disconnected" if state == "disconnected" else "anywherenow_connect_failed",
                reason=reason,
                retry_in=round(delay, 3),
                attempt=backoff.attempt,
            )
            await trio.sleep(delay)

    async def _session(
        self, ctx: SourceContext, http: httpx.AsyncClient, api: RecordingApi | None, tls: ssl.SSLContext
    ) -> tuple[float | None, str]:
        """One connection from negotiate to close; returns (connected at, why it ended)."""
        s = self.settings
        with trio.fail_after(s.connect_timeout * 2):
            ws_url, headers, connection_id = await negotiate(http, s.hub_url, s.request_headers())
        send, receive = trio.open_memory_channel[HubMessage](s.queue_size)
        link = HubLink(target=s.target, ssl_context=tls, send_channel=send, log=ctx.log)
        connected_at: float | None = None
        try:
            await link.connect(ws_url, headers, s.connect_timeout)
            connected_at = trio.current_time()
            self.connections += 1
            self.health.set("connected", s.hub_url)
            ctx.log.info(
                "anywherenow_connected", hub_url=s.hub_url, connection_id=connection_id, target=s.target
            )
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._watch, link, nursery.cancel_scope)
                nursery.start_soon(self._consume, ctx, api, receive)
                try:
                    await trio.sleep_forever()
                finally:
                    if not nursery.cancel_scope.cancel_called:
                        # Cancelled from outside: the bridge is shutting down. Bound the
                        # emit in flight so shutdown cannot hang on a stuck outbox.
                        self._bound_inflight()
        finally:
            # Outside cancellation shows as an already-expired deadline here.
            shutting_down = trio.current_effective_deadline() == -math.inf
            await self._shutdown_link(ctx, link, send, receive, bounded=shutting_down)
        return connected_at, link.close_reason or "connection closed"

    def _bound_inflight(self) -> None:
        scope = self._inflight
        if scope is not None:
            scope.deadline = min(scope.deadline, trio.current_time() + self.settings.drain_timeout)

    async def _watch(self, link: HubLink, scope: trio.CancelScope) -> None:
        """Liveness: keep pinging the hub and end the session as soon as the link is dead."""
        s = self.settings
        step = min(0.25, s.ping_interval / 2)
        next_ping = trio.current_time() + s.ping_interval
        while True:
            with trio.move_on_after(step):
                await link.closed.wait()
            problem = link.alive_problem(s.server_timeout)
            if problem is None and trio.current_time() >= next_ping:
                next_ping = trio.current_time() + s.ping_interval
                try:
                    await link.ping(s.connect_timeout)
                except HubConnectError as exc:
                    problem = str(exc)
            if problem is not None:
                if not link.close_reason:
                    link.close_reason = problem
                self.health.set("disconnected", link.close_reason)  # now, not after the drain
                scope.cancel()
                return

    async def _shutdown_link(
        self,
        ctx: SourceContext,
        link: HubLink,
        send: trio.MemorySendChannel[HubMessage],
        receive: trio.MemoryReceiveChannel[HubMessage],
        *,
        bounded: bool,
    ) -> None:
        """Stop the connection, and commit what it had already delivered before it went.

        On a reconnect this waits as long as the emitter needs (nothing may be lost); on
        shutdown it gives up after ``drain_timeout`` and logs how much was left.
        """
        s = self.settings
        with trio.CancelScope(shield=True):

            async def drain() -> None:
                with trio.move_on_after(s.drain_timeout if bounded else math.inf) as scope:
                    async for item in receive:
                        await self._process(ctx, [item])
                if scope.cancelled_caught:
                    left = receive.statistics().current_buffer_used
                    ctx.log.error("anywherenow_drain_timeout", undelivered=left, timeout=s.drain_timeout)
                await receive.aclose()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(drain)
                await link.close()
                await send.aclose()
        if link.dropped:
            ctx.log.error("anywherenow_messages_lost_at_shutdown", count=link.dropped)

    # ---- events ------------------------------------------------------------------------

    async def _consume(
        self, ctx: SourceContext, api: RecordingApi | None, receive: trio.MemoryReceiveChannel[HubMessage]
    ) -> None:
        unanswered = await self._reconcile(ctx, api)
        retry = Backoff(base=self.settings.backoff_base, cap=self.settings.backoff_cap)
        retry_at = trio.current_time() + retry.next() if unanswered else math.inf
        while True:
            if unanswered and trio.current_time() >= retry_at:
                # The REST API could not answer for some calls after the reconnect (it may
                # come back later than the hub): ask again, between hub messages so a call's
                # events stay in order, until every missed change is recovered.
                unanswered = await self._reconcile(ctx, api, only=unanswered)
                retry_at = trio.current_time() + retry.next() if unanswered else math.inf
                continue
            batch: list[HubMessage] = []
            with trio.move_on_at(retry_at):
                batch = [await receive.receive()]
            if not batch:
                continue
            while len(batch) < 256:
                try:
                    batch.append(receive.receive_nowait())
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
            # A taken message must reach the emitter even if the session ends meanwhile;
            # on shutdown _bound_inflight() gives this a deadline.
            with trio.CancelScope(shield=True) as scope:
                self._inflight = scope
                try:
                    await self._process(ctx, batch)
                finally:
                    self._inflight = None
            if scope.cancelled_caught:
                ctx.log.error("anywherenow_emit_abandoned_at_shutdown", messages=len(batch))

    def _quarantine(self, ctx: SourceContext, reason: str, raw: str) -> None:
        try:
            path = ctx.quarantine.keep(self.name, reason, raw.encode())
        except OSError as exc:
            ctx.log.error("anywherenow_quarantine_failed", reason=reason, raw=raw, error=str(exc))
            return
        ctx.log.warning("anywherenow_malformed_message", reason=reason, raw=raw, quarantined=str(path))

    async def _process(self, ctx: SourceContext, items: list[HubMessage]) -> None:
        """Turn hub messages into events; commit them with the calls' new remembered state."""
        events: list[Event] = []
        state: dict[str, str | None] = {}
        pending: dict[tuple[str, str], CallState | None] = {}
        for item in items:
            raw = item.raw or json.dumps(item.arguments, default=str)
            if item.kind == "unhandled":
                ctx.log.info("anywherenow_unhandled_target", target=item.target, raw=raw)
                continue
            if item.kind == "hub_error":
                ctx.log.warning("anywherenow_hub_error", error=item.reason)
                continue
            if item.kind != "invocation":
                self._quarantine(ctx, item.reason or "unreadable hub message", raw)
                continue
            try:
                change = parse_invocation(item.arguments)
            except PayloadError as exc:
                self._quarantine(ctx, f"{item.target}: {exc}", raw)
                continue
            call = (change.ucc, change.correlation_id)
            known = pending[call] if call in pending else self.calls.get(call)
            event, new_state, changes = live_event(self.name, change, known.state if known else None)
            if changes and self._late_copy_of_reconciled(call, new_state):
                ctx.log.info(
                    "anywherenow_live_repeat_of_reconciled",
                    ucc=change.ucc,
                    correlation_id=change.correlation_id,
                    type=event.type,
                    note="reconciliation already announced this change; not announced twice",
                )
                continue
            events.append(event)
            if changes:
                entry = CallState(new_state, time.time()) if new_state else None
                pending[call] = entry
                state[state_key(*call)] = entry.encode() if entry else None
            if change.ucc:
                self._want_capabilities(change.ucc)
        if events or state:
            await ctx.emit(events, state=state)
        for call, entry in pending.items():
            if entry is None:
                self.calls.pop(call, None)
            else:
                self.calls[call] = entry

    def _late_copy_of_reconciled(self, call: tuple[str, str], new_state: str | None) -> bool:
        """A live message arriving just after reconciliation announced the same change.

        Around a reconnect the hub can deliver a change that the REST reconcile already
        reported; announcing it again would give downstream two events (with two ids) for
        one transition. Only the first live copy within a short window is dropped, and
        only when it leads to exactly the state reconciliation reported.
        """
        entry = self._reconciled.pop(call, None)
        if entry is None:
            return False
        state, at = entry
        return state == new_state and time.monotonic() - at < RECONCILED_REPEAT_WINDOW

    # ---- reconciliation ----------------------------------------------------------------

    def _log_rest_error(self, ctx: SourceContext, what: str, result: RestResult, **where: Any) -> None:
        if result.error is not None:
            ctx.log.warning(
                "anywherenow_rest_error_message",
                request=what,
                status=result.status,
                api=result.version,
                error_type=result.error.get("ErrorType"),
                message=result.error.get("Message"),
                **where,
            )
        elif not result.ok:
            ctx.log.warning(
                "anywherenow_rest_unexpected_answer",
                request=what,
                status=result.status,
                api=result.version,
                **where,
            )

    async def _maybe_forget(self, ctx: SourceContext, ucc: str, correlation_id: str, call: CallState) -> None:
        """Stop asking about a call nobody can answer for, once it is older than forget_after."""
        if time.time() - call.since <= self.settings.forget_after:
            return
        ctx.log.warning(
            "anywherenow_call_forgotten",
            reason="no usable REST answer and older than forget_after",
            ucc=ucc,
            correlation_id=correlation_id,
            last_seen=call.state,
        )
        await ctx.emit([], state={state_key(ucc, correlation_id): None})
        self.calls.pop((ucc, correlation_id), None)

    async def _reconcile(
        self, ctx: SourceContext, api: RecordingApi | None, only: set[tuple[str, str]] | None = None
    ) -> set[tuple[str, str]]:
        """Ask the REST API about every call last seen recording (or ``only`` those); emit
        what was missed. Returns the calls it could not get an answer for, to ask again."""
        calls = sorted((k, v) for k, v in self.calls.items() if only is None or k in only)
        unanswered: set[tuple[str, str]] = set()
        if not calls:
            self.reconciliations += 1
            return unanswered
        if api is None:
            ctx.log.warning(
                "anywherenow_reconcile_skipped", open_calls=len(calls), reason="rest_url is not set"
            )
            return unanswered
        ctx.log.info("anywherenow_reconcile_started", open_calls=len(calls))
        emitted = 0
        for index, ((ucc, correlation_id), call) in enumerate(calls):
            where = {"ucc": ucc, "correlation_id": correlation_id}
            if self.calls.get((ucc, correlation_id)) is not call:
                continue
            if not ucc:
                ctx.log.warning("anywherenow_reconcile_no_ucc", **where)
                await self._maybe_forget(ctx, ucc, correlation_id, call)
                continue
            try:
                result = await api.recording_state(ucc, correlation_id)
            except RestError as exc:
                ctx.log.warning("anywherenow_reconcile_failed", error=str(exc), **where)
                await self._maybe_forget(ctx, ucc, correlation_id, call)
                if (ucc, correlation_id) in self.calls:
                    unanswered.add((ucc, correlation_id))
                # Unreachable or silent: asking about the other calls in turn would hold live
                # hub messages back for request_timeout each. Ask them in the next pass.
                unanswered.update(key for key, _ in calls[index + 1 :] if key in self.calls)
                break
            self._log_rest_error(ctx, "recording_state", result, **where)
            if self.calls.get((ucc, correlation_id)) is not call:
                # A live hub message changed this call while we waited for REST: it is
                # announced already, and reporting the REST view too would say it twice.
                ctx.log.info("anywherenow_reconcile_superseded_by_live", **where)
                continue
            if result.not_found and result.error is not None:
                event_type, new_state, reason = "recording.stopped", None, "session_not_found"
            elif result.ok:
                recording_state = parse_recording_state(payload_field(result.body or {}, "RecordingState"))
                if recording_state is None:
                    ctx.log.warning("anywherenow_reconcile_unknown_state", body=result.body, **where)
                    continue
                event_type, new_state = reconcile_transition(call.state, recording_state)
                reason = "state_changed_while_disconnected"
            else:
                await self._maybe_forget(ctx, ucc, correlation_id, call)
                if (ucc, correlation_id) in self.calls:
                    unanswered.add((ucc, correlation_id))
                continue
            key = state_key(ucc, correlation_id)
            entry = CallState(new_state, time.time()) if new_state else None
            if event_type is None:
                continue
            event = reconciled_event(
                self.name, ucc, correlation_id, event_type, call.state, result.body, reason
            )
            await ctx.emit([event], state={key: entry.encode() if entry else None})
            now = time.monotonic()
            self._reconciled = {
                k: v for k, v in self._reconciled.items() if now - v[1] < RECONCILED_REPEAT_WINDOW
            }
            self._reconciled[(ucc, correlation_id)] = (new_state, now)
            emitted += 1
            ctx.log.info("anywherenow_reconciled", type=event_type, last_seen=call.state, **where)
            if entry is None:
                self.calls.pop((ucc, correlation_id), None)
            else:
                self.calls[(ucc, correlation_id)] = entry
        self.reconciliations += 1
        ctx.log.info(
            "anywherenow_reconcile_done", checked=len(calls), emitted=emitted, unanswered=len(unanswered)
        )
        return unanswered

    # ---- capabilities ------------------------------------------------------------------

    def _want_capabilities(self, ucc: str) -> None:
        if ucc in self._checked_uccs or self._capability_send is None:
            return
        self._checked_uccs.add(ucc)
        self._capability_send.send_nowait(ucc)

    async def _capabilities(
        self, ctx: SourceContext, api: RecordingApi, receive: trio.MemoryReceiveChannel[str]
    ) -> None:
        """Warn once per UCC when agents may not change the recorder state (doc: AgentCanEditAudioRecording)."""
        async for ucc in receive:
            backoff = Backoff(base=self.settings.backoff_base, cap=self.settings.backoff_cap)
            while True:
                try:
                    result = await api.capabilities(ucc)
                    break
                except RestError as exc:
                    delay = backoff.next()
                    ctx.log.warning(
                        "anywherenow_capabilities_failed", ucc=ucc, error=str(exc), retry_in=round(delay, 3)
                    )
                    await trio.sleep(delay)
            self._log_rest_error(ctx, "capabilities", result, ucc=ucc)
            if not result.ok:
                continue
            can_edit = payload_field(result.body or {}, "AgentCanEditRecordings")
            if can_edit is False:
                ctx.log.warning(
                    "anywherenow_agents_cannot_edit_recordings",
                    ucc=ucc,
                    detail="AgentCanEditRecordings is false for this UCC: agents cannot start, stop or "
                    "pause recordings, so no such events will come from agents. Enable "
                    "AgentCanEditAudioRecording (and UseAudioRecording) on the UCC.",
                )
            else:
                ctx.log.info("anywherenow_capabilities", ucc=ucc, agent_can_edit_recordings=can_edit)
