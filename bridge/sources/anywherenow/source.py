"""The AnywhereNow source: the thin I/O shell around the pure core.

A SignalR hub does not replay what a disconnected client missed, so the bridge keeps,
per call, the recording, marking and saving states it last saw (:mod:`.calls`, committed
with the events through ``ctx.emit(state=...)``). After every (re)connect, including the
first one after a restart, :mod:`.recovery` asks the REST Recording API about every
remembered call, concurrently and beside the live hub messages, and emits what was
missed (``data.reconciled = true``). Which event a message or an answer means is decided
in :mod:`.reconciler`; this module only moves bytes and commits.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from typing import Any

import httpx
import trio

from bridge.backoff import Backoff
from bridge.components import ComponentBase, Health, SourceContext
from bridge.errors import EndpointError
from bridge.model import Event
from bridge.netutil import describe, redact_url
from bridge.sources.anywherenow.bounded import excerpt
from bridge.sources.anywherenow.calls import CallBook, CallState, Key
from bridge.sources.anywherenow.capabilities import CapabilityChecks
from bridge.sources.anywherenow.hub import HubLink, HubMessage
from bridge.sources.anywherenow.mapping import (
    PayloadError,
    live_event,
    parse_invocation,
    parse_state_key,
    state_key,
)
from bridge.sources.anywherenow.negotiate import HubConnectError, IssuedTokens, negotiate
from bridge.sources.anywherenow.reconciler import apply_action
from bridge.sources.anywherenow.recovery import Recovery
from bridge.sources.anywherenow.rest import RecordingApi
from bridge.sources.anywherenow.settings import AnywhereNowSettings
from bridge.tls import client_context


class AnywhereNowSource(ComponentBase):
    vendor = "anywherenow"

    def __init__(self, settings: AnywhereNowSettings) -> None:
        self.settings = settings
        self.name = settings.name
        self.health = Health()
        self.book = CallBook(settings.max_calls)
        self.connections = 0  # successful hub connections so far
        self.reconciliations = 0  # completed reconcile passes
        self.events_read = 0
        self.parse_errors = 0
        self.reconciled = 0
        self.forgotten_unconfirmed = 0
        self.capabilities = CapabilityChecks(settings.reconnect_min, settings.reconnect_max)
        self._inflight: set[trio.CancelScope] = set()
        self._state_loaded = False
        self._pending_forget: dict[str, str | None] = {}
        self._tokens = IssuedTokens()
        self.recovery = Recovery(self)

    # ---- contract ----------------------------------------------------------------------

    def describe(self) -> str:
        return redact_url(self.settings.hub_url)

    def stats(self) -> Mapping[str, float]:
        return {
            "events_read": self.events_read,
            "parse_errors": self.parse_errors,
            "reconciled": self.reconciled,
            "calls_remembered": len(self.book),
            "calls_forgotten_unconfirmed": self.forgotten_unconfirmed,
            "calls_evicted": self.book.evicted,
        }

    @property
    def calls(self) -> dict[Key, CallState]:
        """The calls still watched (a copy, for tests and the admin view): not those kept
        finished only to recognise the hub's late copy of a reconciled change."""
        return {key: state for key, state in self.book.items() if not state.finished}

    # ---- lifecycle ---------------------------------------------------------------------

    async def run(
        self, ctx: SourceContext, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Connect, reconcile and forward events forever; reconnects with backoff."""
        s = self.settings
        self._load_state(ctx)
        task_status.started()
        if not s.verify_tls:
            ctx.log.warning("anywherenow_tls_verification_disabled", hub_url=self.describe())
        tls = client_context(
            s.verify_tls, s.ca_file, s.cert_file, s.key_file, where=f"sources.anywherenow {s.name}"
        )
        # Deadlines are total, per request, in bounded.request; these only bound each step.
        timeout = httpx.Timeout(s.timeout, connect=s.connect_timeout)
        async with httpx.AsyncClient(verify=tls, timeout=timeout, follow_redirects=False) as http:
            api = None
            if s.rest_url:
                api = RecordingApi(
                    http,
                    s.rest_url,
                    s.rest_api,
                    headers=s.request_headers(),
                    timeout=s.timeout,
                    max_bytes=s.max_body_bytes,
                )
            else:
                ctx.log.warning(
                    "anywherenow_reconcile_disabled",
                    reason="rest_url is not set: transitions missed while disconnected cannot be recovered",
                )
            async with trio.open_nursery() as nursery:
                if api is not None:
                    nursery.start_soon(self.capabilities.run, api, ctx.log)
                    for ucc in s.ucc_names:
                        self.capabilities.want(ucc)
                nursery.start_soon(self.recovery.sweep, ctx)
                await self._connect_forever(ctx, http, api, tls)

    def _load_state(self, ctx: SourceContext) -> None:
        # Only on the first run: after a crash the runner restarts run() with the same
        # start-up snapshot, while the book already holds everything emitted since.
        if self._state_loaded:
            return
        self._state_loaded = True
        now = time.time()
        for key, value in (ctx.state or {}).items():
            parsed = parse_state_key(key)
            call = CallState.decode(value, now) if parsed else None
            if parsed is None or call is None:
                ctx.log.warning("anywherenow_state_ignored", key=excerpt(key), value=excerpt(value))
                continue
            for evicted in self.book.put(parsed, call):
                self._pending_forget[state_key(*evicted)] = None
        if len(self.book):
            ctx.log.info("anywherenow_state_loaded", open_calls=len(self.book))

    async def _connect_forever(
        self, ctx: SourceContext, http: httpx.AsyncClient, api: RecordingApi | None, tls: Any
    ) -> None:
        s = self.settings
        backoff = Backoff(base=s.reconnect_min, cap=s.reconnect_max)
        while True:
            ctx.log.info("anywherenow_connecting", hub_url=self.describe(), attempt=backoff.attempt + 1)
            connected_at: float | None = None
            try:
                connected_at, reason = await self._session(ctx, http, api, tls)
                state = "disconnected"
            except (HubConnectError, EndpointError) as exc:
                reason, state = str(exc), "error"
            except (OSError, httpx.HTTPError) as exc:
                reason, state = describe(exc), "error"
            reason = self._tokens.scrub(reason)
            if connected_at is not None and trio.current_time() - connected_at >= min(5.0, s.reconnect_max):
                backoff.reset()  # it was up for a while: this is a fresh failure, not a flapping hub
            delay = backoff.next()
            self.health.set(state, f"{self.describe()}: {reason}")
            log = ctx.log.warning if state == "disconnected" else ctx.log.error
            log(
                "anywherenow_disconnected" if state == "disconnected" else "anywherenow_connect_failed",
                hub_url=self.describe(),
                reason=reason,
                retry_in=round(delay, 3),
                attempt=backoff.attempt,
            )
            await trio.sleep(delay)

    async def _session(
        self, ctx: SourceContext, http: httpx.AsyncClient, api: RecordingApi | None, tls: Any
    ) -> tuple[float | None, str]:
        """One connection from negotiate to close; returns (connected at, why it ended)."""
        s = self.settings
        done = await negotiate(
            http, s.hub_url, s.request_headers(), timeout=s.timeout, max_bytes=s.max_body_bytes
        )
        self._tokens.learn(done.secrets)
        if done.redirects:
            ctx.log.info("anywherenow_negotiate_redirected", hops=done.redirects, to=redact_url(done.ws_url))
        send, receive = trio.open_memory_channel[HubMessage](s.queue_size)
        link = HubLink(
            target=s.target,
            ssl_context=tls,
            send_channel=send,
            log=ctx.log,
            max_message_bytes=s.max_message_bytes,
        )
        connected_at: float | None = None
        try:
            await link.connect(done.ws_url, done.headers, s.connect_timeout)
            connected_at = trio.current_time()
            self.connections += 1
            self.health.set("connected", self.describe())
            ctx.log.info(
                "anywherenow_connected",
                hub_url=self.describe(),
                connection_id=done.connection_id,
                target=s.target,
            )
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._watch, link, nursery.cancel_scope)
                nursery.start_soon(self._consume, ctx, receive)
                nursery.start_soon(self.recovery.after_connect, ctx, api)
                try:
                    await trio.sleep_forever()
                finally:
                    if not nursery.cancel_scope.cancel_called:
                        # Cancelled from outside: the bridge is shutting down. Bound the
                        # emits in flight so shutdown cannot hang on a stuck outbox.
                        self._bound_inflight()
        finally:
            # Outside cancellation shows as an already-expired deadline here.
            shutting_down = trio.current_effective_deadline() == -math.inf
            await self._shutdown_link(ctx, link, send, receive, bounded=shutting_down)
        return connected_at, link.close_reason or "connection closed"

    def _bound_inflight(self) -> None:
        for scope in self._inflight:
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
                self.health.set(
                    "disconnected", f"{self.describe()}: {link.close_reason}"
                )  # now, not after the drain
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

    # ---- commits -----------------------------------------------------------------------

    def remember(
        self, ctx: SourceContext, key: Key, state: CallState | None, persist: dict[str, str | None]
    ) -> None:
        """Update the book now (so every later decision sees it) and note what to persist."""
        if state is None or state.finished:
            persist[state_key(*key)] = None
            self.book.settle(key, state)  # a call finished by a REST answer stays a while
            return
        persist[state_key(*key)] = state.encode()
        for evicted in self.book.put(key, state):
            persist[state_key(*evicted)] = None
            self.forgotten_unconfirmed += 1
            if self.book.evicted == 1 or self.book.evicted % 1000 == 0:
                ctx.log.warning(
                    "anywherenow_calls_evicted",
                    max_calls=self.settings.max_calls,
                    evicted_total=self.book.evicted,
                    oldest=list(evicted),
                    detail="more calls than max_calls are open or unconfirmed; the oldest stopped ones "
                    "(else the oldest) are no longer reconciled",
                )

    async def commit(self, ctx: SourceContext, events: list[Event], persist: dict[str, str | None]) -> None:
        """Emit events with the calls' new state; taken work reaches the emitter even if
        the session ends meanwhile (on shutdown ``_bound_inflight`` gives it a deadline)."""
        if self._pending_forget:
            persist = {**self._pending_forget, **persist}
            self._pending_forget = {}
        if not events and not persist:
            return
        with trio.CancelScope(shield=True) as scope:
            self._inflight.add(scope)
            try:
                await ctx.emit(events, state=persist)
            finally:
                self._inflight.discard(scope)
        if scope.cancelled_caught:
            ctx.log.error("anywherenow_emit_abandoned_at_shutdown", events=len(events))

    # ---- live events -------------------------------------------------------------------

    async def _consume(self, ctx: SourceContext, receive: trio.MemoryReceiveChannel[HubMessage]) -> None:
        async for first in receive:
            batch = [first]
            while len(batch) < 256:
                try:
                    batch.append(receive.receive_nowait())
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
            await self._process(ctx, batch)

    def _quarantine(self, ctx: SourceContext, reason: str, raw: str) -> None:
        self.parse_errors += 1
        data = raw.encode("utf-8", "replace")
        try:
            path = ctx.quarantine.keep(self.name, reason, data)
        except OSError as exc:
            ctx.log.error(
                "anywherenow_quarantine_failed", reason=reason, excerpt=excerpt(raw), error=exc.strerror
            )
            return
        ctx.log.warning(
            "anywherenow_malformed_message", reason=reason, excerpt=excerpt(raw), quarantined=str(path)
        )

    async def _process(self, ctx: SourceContext, items: list[HubMessage]) -> None:
        """Turn hub messages into events; commit them with the calls' new remembered state."""
        events: list[Event] = []
        persist: dict[str, str | None] = {}
        now = time.time()
        for item in items:
            if item.kind == "unhandled":
                ctx.log.info(
                    "anywherenow_unhandled_target", target=excerpt(item.target), excerpt=excerpt(item.raw)
                )
                continue
            if item.kind == "hub_error":
                ctx.log.warning("anywherenow_hub_error", error=item.reason)
                continue
            raw = item.raw or json.dumps(item.arguments, default=str)[:4096]
            if item.kind != "invocation":
                self._quarantine(ctx, item.reason or "unreadable hub message", raw)
                continue
            try:
                change = parse_invocation(item.arguments)
            except PayloadError as exc:
                self._quarantine(ctx, f"{item.target}: {exc}", raw)
                continue
            key = (change.ucc, change.correlation_id)
            before = self.book.get(key)
            outcome = apply_action(before, change.action, now)
            if outcome.event_type is None:
                ctx.log.info(
                    "anywherenow_live_repeat_of_reconciled",
                    ucc=change.ucc,
                    correlation_id=change.correlation_id,
                    action=change.action.name,
                    note="reconciliation already announced this change; not announced twice",
                )
                if outcome.state is not None:
                    self.book.settle(key, outcome.state)
                continue
            event = live_event(self.name, change, outcome.event_type)
            if outcome.inferred_kind is not None:
                event.data.update(inferred=True, inferred_kind=outcome.inferred_kind)
            events.append(event)
            self.events_read += 1
            if outcome.changed:
                self.remember(ctx, key, outcome.state, persist)
            self.capabilities.want(change.ucc)
        await self.commit(ctx, events, persist)
