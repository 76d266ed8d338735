"""Endpoint controls of a webhook, in one place the sink calls at a few points.

Settings (mixed into :class:`..settings.WebhookSettings`): ``rate_limit``/``burst``
(:mod:`.ratelimit`), ``retry_statuses``/``max_age`` (:mod:`.policy`),
``disable_after``/``disable_after_failures`` (:mod:`.disable`), ``oauth2``
(:mod:`.oauth`), ``proxy`` (a forward proxy for this endpoint). mTLS is
``cert_file``/``key_file`` of :class:`bridge.tls.TlsSettings`.

The sink calls :meth:`EndpointControls.gate` before a scheduling pass (disabled?),
:meth:`~EndpointControls.throttle` on the requests it planned (rate limit),
:meth:`~EndpointControls.authorized` for the headers of a request (OAuth2) and
:meth:`~EndpointControls.after` once an outcome is recorded (auto-disable, operational
events, health).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import structlog

from bridge.netutil import redact_url
from bridge.operational import Operational
from bridge.settings import Validator, setting, settings
from bridge.sinks.webhook.disable import AutoDisable, EndpointState, load, save
from bridge.sinks.webhook.oauth import OAuth2Settings, OAuthError, TokenSource
from bridge.sinks.webhook.policy import DEFAULT_RETRY_STATUSES, RetryPolicy, valid_status_pattern
from bridge.sinks.webhook.ratelimit import TokenBucket

if TYPE_CHECKING:
    from bridge.outbox import Row
    from bridge.sinks.base import SinkFeed, SinkHealth
    from bridge.sinks.webhook.scheduler import Outcome, Plan

log = structlog.get_logger("bridge.sinks.webhook")

FIVE_DAYS = 5 * 24 * 3600.0
STATE_POLL = 1.0  # seconds between reads of the persisted enabled state


@settings
class EndpointControlSettings:
    rate_limit: float = setting(0.0, min=0.0, doc="requests per second to this endpoint (0: unlimited)")
    burst: int = setting(1, min=1, doc="requests that may go at once after an idle spell")
    retry_statuses: tuple[str, ...] = setting(
        DEFAULT_RETRY_STATUSES, doc='HTTP statuses retried: "429", "50x", "5xx"; any other non-2xx is dead'
    )
    max_age: float = setting(
        0.0, min=0.0, doc="a failing event older than this (s) is dead-lettered (0: off)"
    )
    disable_after: float = setting(
        FIVE_DAYS, min=0.0, doc="disable the endpoint after failing this long without a success (s; 0: never)"
    )
    disable_after_failures: int = setting(
        0, min=0, doc="disable the endpoint after this many failed requests in a row (0: never)"
    )
    oauth2: OAuth2Settings | None = setting(None, doc="OAuth 2.0 client credentials for the endpoint")
    proxy: str | None = setting(None, doc="forward proxy for this endpoint, http://host:port")

    def validate_controls(self, v: Validator) -> None:
        for i, pattern in enumerate(self.retry_statuses):
            if not valid_status_pattern(pattern):
                raise v.error(f"retry_statuses[{i}]", f'must be like "429", "50x" or "5xx", got {pattern!r}')
        if self.proxy is not None:
            parts = urlsplit(self.proxy)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise v.error("proxy", f"must be an http:// or https:// URL, got {redact_url(self.proxy)!r}")
            if parts.password:
                v.table.ctx.secrets.add(parts.password)


class EndpointControls:
    """Rate limit, retry policy, enabled state, OAuth2 and operational events of one endpoint."""

    def __init__(self, name: str, settings: EndpointControlSettings, clock: Callable[[], float]) -> None:
        self.name = name
        self.settings = settings
        self.clock = clock
        self.bucket = TokenBucket(settings.rate_limit, settings.burst, clock())
        self.policy = RetryPolicy.of(settings.retry_statuses, settings.max_age)
        self.disabler = AutoDisable(settings.disable_after, settings.disable_after_failures)
        self.oauth = TokenSource(settings.oauth2, clock=clock) if settings.oauth2 else None
        self.operational: Operational | None = None  # set by the service
        self.failing_threshold = 5
        self.auth_error: str | None = None
        self._announced_failing = False
        self._dirty = False  # the enabled state changed and is not saved yet
        self._checked = -1e18

    @property
    def enabled(self) -> bool:
        return self.disabler.enabled

    def stats(self) -> dict[str, float]:
        return {"throttled_seconds": self.bucket.total_throttled(self.clock())}

    # -- enabled state ------------------------------------------------------------------
    async def start(self, feed: SinkFeed, health: SinkHealth) -> None:
        """Read the persisted state (a disabled endpoint stays disabled across restarts)."""
        state = await feed.outbox.read(load, feed.outbox.sync.db, self.name)
        if state is not None:
            self.disabler.state = state
        self._checked = time.monotonic()
        if not self.enabled:
            self._show_disabled(health)

    async def gate(self, feed: SinkFeed, health: SinkHealth) -> float | None:
        """None when the endpoint may be sent to; else when to look again (it is disabled)."""
        if time.monotonic() - self._checked >= STATE_POLL:
            self._checked = time.monotonic()
            state: EndpointState | None = await feed.outbox.read(load, feed.outbox.sync.db, self.name)
            if state is not None and state.enabled != self.enabled:
                if state.enabled:
                    self.disabler.enable()
                    health.state, health.detail = "ok", ""
                    log.info("webhook_endpoint_enabled", sink=self.name)
                    if self.operational is not None:
                        self.operational.sink_enabled(self.name)
                else:  # `event-bridge endpoint disable`
                    self.disabler.state = state
                    self._announce_disabled(state.reason or "operator", state.error)
        if self.enabled:
            return None
        self._show_disabled(health)
        return self.clock() + STATE_POLL

    def _show_disabled(self, health: SinkHealth) -> None:
        s = self.disabler.state
        health.state = "disabled"
        health.detail = (
            f"disabled ({s.reason or 'operator'}): {s.error or 'no error recorded'}; events are kept; "
            f"resume with: event-bridge endpoint enable {self.name}"
        )[:500]

    def _announce_disabled(self, reason: str, error: str) -> None:
        log.error(
            "webhook_endpoint_disabled",
            sink=self.name,
            reason=reason,
            error=error,
            hint=f"events stay in the outbox; resume with 'event-bridge endpoint enable {self.name}'",
        )
        if self.operational is not None:
            self.operational.sink_disabled(self.name, "webhook", reason=reason, error=error)

    # -- rate limit -----------------------------------------------------------------------
    def throttle(self, plan: Plan, now: float) -> None:
        """Start only as many of the planned requests as the bucket allows."""
        if self.bucket.unlimited:
            return
        allowed = self.bucket.available(now)
        held = len(plan.requests) > allowed
        if held:
            del plan.requests[allowed:]
            plan.wake(self.bucket.ready_at(now))
        self.bucket.take(now, len(plan.requests))
        self.bucket.throttled(now, held)

    # -- authentication -------------------------------------------------------------------
    async def authorized(self, client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, str]:
        """``headers`` plus ``Authorization: Bearer`` when OAuth2 is configured (else as they are)."""
        if self.oauth is None:
            return headers
        out = dict(headers)
        try:
            token = await self.oauth.get(client)
        except OAuthError as exc:
            self.auth_error = str(exc)
            raise
        self.auth_error = None
        out["authorization"] = f"Bearer {token}"
        return out

    def classify(self, status: int, headers: Mapping[str, str]) -> str:
        """:meth:`RetryPolicy.classify`, except that a 401 to a fresh OAuth2 token is a
        configuration problem to retry (and show in /readyz), not a reason to drop events."""
        if status == 401 and self.oauth is not None:
            self.auth_error = (
                f"sinks.webhook {self.name}: the endpoint answered 401 to a fresh OAuth2 token; "
                "check oauth2.scope and that the endpoint accepts tokens from oauth2.token_url"
            )
            return "retry"
        return self.policy.classify(status, headers)

    def refused(self, headers: Mapping[str, str]) -> bool:
        """The endpoint answered 401 to ``headers``: forget that token; True to try once more."""
        if self.oauth is None:
            return False
        value = headers.get("authorization", "")
        self.oauth.invalidate(value.removeprefix("Bearer "))
        return True

    def explain(self, text: str, exc: BaseException, url: str) -> str:
        """A transport error's text, with the likely cause when a TLS server cut the
        connection and no client certificate is configured (how a refused mTLS looks)."""
        tls = getattr(self.settings, "cert_file", None)
        broken = (httpx.ReadError, httpx.RemoteProtocolError, httpx.ConnectError, httpx.WriteError)
        if url.startswith("https://") and tls is None and isinstance(exc, broken):
            return f"{text}; if the server requires a client certificate (mTLS), set cert_file and key_file"
        return text

    def sensitive(self) -> list[str]:
        return self.oauth.sensitive() if self.oauth is not None else []

    # -- outcomes -------------------------------------------------------------------------
    def dead_lettered(self, row: Row, status: int | None, error: str) -> None:
        if self.operational is not None:
            self.operational.dead_lettered(
                self.name, event_id=row.id, event_type=row.type, status=status, error=error,
                attempts=row.attempts + 1,
            )  # fmt: skip

    def record(self, health: SinkHealth, outcome: Outcome) -> None:
        """An outcome was just recorded (synchronously, before any other request can start):
        count it, maybe disable the endpoint, tell the operational events."""
        now = self.clock()
        op = self.operational
        if outcome.kind == "ok":
            since = self.disabler.state.failing_since
            if self.disabler.success():
                if since is not None:  # the streak's start was persisted: clear it
                    self._changed()
                if self._announced_failing and op is not None:
                    op.sink_recovered(self.name, "webhook", since=since, now=now)
                self._announced_failing = False
            return
        if outcome.kind == "dead":  # the endpoint answered; it is the request it refused
            return
        streak = self.disabler.state.failing_since
        reason = "gone" if outcome.kind == "gone" else self.disabler.failure(now, outcome.error)
        # The first failure after a success is persisted: disable_after counts across restarts.
        if streak is None and self.disabler.state.failing_since is not None:
            self._changed()
        if (
            outcome.kind != "gone"
            and not self._announced_failing
            and (self.disabler.failures >= self.failing_threshold)
        ):
            self._announced_failing = True
            if op is not None:
                op.sink_failing(
                    self.name, "webhook", failures=self.disabler.failures, error=outcome.error,
                    status=outcome.status, since=self.disabler.state.failing_since,
                )  # fmt: skip
        if self.auth_error is not None and self.enabled:
            health.state, health.detail = "error", self.auth_error
        if reason is not None and self.enabled:
            self.disabler.disable(reason, now, outcome.error)
            self._dirty = True
            self._announce_disabled(reason, outcome.error)
        if not self.enabled:
            self._show_disabled(health)

    def _changed(self) -> None:
        self.disabler.state.changed_at = time.time()
        self._dirty = True

    async def after(self, feed: SinkFeed, health: SinkHealth, rows: list[Row], outcome: Outcome) -> None:
        """Once the outcome is on disk: persist the enabled state if :meth:`record` changed it."""
        if self._dirty:
            self._dirty = False
            await feed.outbox.call(save, feed.outbox.sync.db, self.name, self.disabler.state)


def describe_state(state: EndpointState | None) -> dict[str, Any]:
    """For ``event-bridge endpoint status``."""
    s = state or EndpointState()
    return {
        "enabled": s.enabled,
        "reason": s.reason,
        "disabled_at": s.disabled_at,
        "error": s.error,
        "failing_since": s.failing_since,
    }
