"""The source's API side: TEST probes and reconciliation on the short-lived second
connection (the pure comparison is :mod:`.reconcile`, the requests :mod:`.status`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from zoneinfo import ZoneInfo

import trio

from bridge.components import Health, SourceContext
from bridge.errors import EndpointError
from bridge.model import Event, utcnow
from bridge.sources.uptivity.api import ApiSession, Refused, echo_request
from bridge.sources.uptivity.reconcile import (
    BASELINE_KEY,
    STATE_PREFIX,
    Known,
    reconciled_events,
    supersede,
    transitions,
)
from bridge.sources.uptivity.settings import UptivitySettings
from bridge.sources.uptivity.status import ask_states


class ApiSide:
    """Mixed into :class:`~bridge.sources.uptivity.source.UptivitySource`."""

    settings: UptivitySettings
    name: str
    api_host: str
    api_port: int
    timezone: ZoneInfo
    health: Health
    known: dict[str, Known]
    baseline: bool
    reconciled: int
    reconciliations: int
    probes: int
    superseded: int
    _reconcile_at: float | None

    async def _flush(self, ctx: SourceContext, batch: list[Event]) -> None:
        raise NotImplementedError

    def _api(self) -> ApiSession:
        s = self.settings
        return ApiSession(
            self.api_host, self.api_port, timeout=s.timeout, max_answer_bytes=s.max_answer_bytes
        )

    async def _probe(self, ctx: SourceContext) -> bool:
        """The documented TEST echo; any answer to it means the server is there."""
        self.probes += 1
        try:
            async with self._api() as api:
                await api.request("TEST", echo_request)
        except EndpointError as exc:
            ctx.log.warning("uptivity_probe_failed", api=f"{self.api_host}:{self.api_port}", error=str(exc))
            return False
        return True

    async def _reconcile(self, ctx: SourceContext, drain: Callable[[], Awaitable[list[Event]]]) -> None:
        """Ask, compare, emit what was missed; then the live events already received.

        Live events already received may report the latest of the changes the answer
        shows (they happened between the subscription and the answer): those reconciled
        copies are dropped (:func:`supersede`); the live events follow the rest.
        """
        mode = self.settings.reconcile
        self._reconcile_at = None
        if mode == "off":
            await self._flush(ctx, await drain())
            return
        received = utcnow()
        reason = "reconnect" if self.reconciliations else "startup"
        try:
            async with self._api() as api:
                request_type, statuses, complete = await ask_states(api, mode, set(self.known))
        except EndpointError as exc:
            permanent = isinstance(exc, Refused) and exc.permanent
            retry = self.settings.refused_retry if permanent else self.settings.reconcile_retry
            self._reconcile_at = trio.current_time() + retry
            ctx.log.warning(
                "uptivity_reconcile_failed",
                api=f"{self.api_host}:{self.api_port}",
                error=str(exc),
                permanent=permanent,
                retry_in=retry,
            )
            detail = self.health.detail.split("; reconcile")[0]
            self.health.set(self.health.state, f"{detail}; reconcile failed: {exc}")
            await self._flush(ctx, await drain())  # what was read still goes out
            return
        live = await drain()
        found = transitions(self.known, statuses, complete=complete)
        changed: dict[str, Known | None] = {}
        if not self.baseline:
            # First reconciliation ever: devices never seen have no "before"; record them.
            found = [t for t in found if t.device_id in self.known]
            for status in statuses:
                if status.device_id not in self.known and status.state != "idle":
                    self.known[status.device_id] = changed[status.device_id] = status.known()
        events: list[Event] = []
        for t in found:
            missed = reconciled_events(
                t, source_name=self.name, reason=reason, tz=self.timezone, received=received
            )
            kept = supersede(t, missed, [e for e in live if e.subject == t.device_id])
            self.superseded += len(missed) - len(kept)
            events += kept
            if t.now.state == "idle":
                self.known.pop(t.device_id, None)
                changed[t.device_id] = None
            else:
                self.known[t.device_id] = changed[t.device_id] = t.now
        # Only what changed is written, with the events, in one transaction.
        state: dict[str, str | None] = {BASELINE_KEY: "1"}
        state.update({STATE_PREFIX + d: k.dump() if k else None for d, k in changed.items()})
        await ctx.emit(events, state=state)
        self.baseline = True
        self.reconciled += len(events)
        self.reconciliations += 1
        self.health.set(self.health.state, self.health.detail.split("; reconcile")[0])
        ctx.log.info(
            "uptivity_reconciled",
            request=request_type,
            reason=reason,
            devices=len(statuses),
            transitions=[f"{t.device_id}: {t.previous.state}->{t.now.state}" for t in found if t.types],
            events=len(events),
            superseded_by_live=self.superseded,
        )
        await self._flush(ctx, live)
