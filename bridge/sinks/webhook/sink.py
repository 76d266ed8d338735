"""Webhook sink: signed CloudEvents over HTTP, retried, ordered per subject.

The thin I/O shell around :mod:`.scheduler` (which rows go next, what an answer means),
:mod:`.breaker` and :mod:`.wire` (bytes and signatures). Rows come from the sink's
in-memory window (:class:`bridge.sinks.base.SinkFeed`, fed by the committer as rows are
committed, read back from the outbox after a restart or a gap); outcomes are handed back
to it and written in groups.

* Retries, dead letters and redirects: see :mod:`.scheduler`. ``event-bridge dlq
  retry`` re-delivers a dead letter with the same id.
* An endpoint that keeps failing opens a circuit breaker: nothing is sent until a single
  probe succeeds. Each endpoint has its own connection pool, breaker and window, so a
  failing one never slows another or the sources.
* Every request has a total deadline (``timeout``) and reads at most
  ``max_response_bytes`` of the answer.
"""

from __future__ import annotations

import fnmatch
import random
import ssl
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx
import structlog
import trio

from bridge import __version__
from bridge.components import ComponentBase
from bridge.netutil import describe, redact_url
from bridge.operational import type_wanted
from bridge.outbox import Row
from bridge.sinks.base import SinkFeed, SinkHealth
from bridge.sinks.webhook.breaker import CircuitBreaker
from bridge.sinks.webhook.controls import EndpointControls
from bridge.sinks.webhook.oauth import OAuthError
from bridge.sinks.webhook.scheduler import Outcome, Scheduler, parse_retry_after, retry_delay
from bridge.sinks.webhook.settings import WebhookSettings
from bridge.sinks.webhook.wire import Signer, encode
from bridge.tls import client_context

log = structlog.get_logger("bridge.sinks.webhook")

BEYOND_PAGE = 1024  # rows read past a full window when everything in it is blocked


class WebhookSink(ComponentBase):
    kind = "webhook"

    def __init__(
        self,
        settings: WebhookSettings,
        *,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.name = settings.name
        self.url = settings.url
        self.mode = settings.mode
        self.signer = Signer(settings.secrets)
        self.types = list(settings.types)
        self.sources = list(settings.sources)
        self.static_headers = dict(settings.headers)
        self.timeout = settings.timeout
        self.max_in_flight = settings.max_in_flight
        self.schedule = list(settings.retry_schedule)
        self.max_response_bytes = settings.max_response_bytes
        self.breaker = CircuitBreaker(
            settings.breaker_threshold, settings.reconnect_min, settings.reconnect_max
        )
        self.scheduler = Scheduler(
            mode=settings.mode,
            batch_max_events=settings.batch_max_events,
            batch_max_age=settings.batch_max_age,
            accepts=self.accepts,
        )
        self.rng = rng or random.Random()
        # Wall clock for retry times (persisted as next_at) and the breaker; injectable so
        # a test can let hours of downtime pass in seconds.
        self.clock = clock
        self.health = SinkHealth()
        self.controls = EndpointControls(settings.name, settings, lambda: self.clock())  # .controls
        self.controls.failing_threshold = settings.breaker_threshold
        self._base_headers = {"user-agent": f"event-bridge/{__version__}", **self.static_headers}
        self._sensitive = self._sensitive_values()
        self._feed: SinkFeed | None = None
        self._all_types = self.types == ["*"]
        self._all_sources = self.sources == ["*"]

    @property
    def max_concurrency(self) -> int:  # the old name
        return self.max_in_flight

    @property
    def inflight(self) -> dict[int, str]:
        return self.scheduler.inflight

    def _sensitive_values(self) -> list[str]:
        """Credentials a receiver might quote back in an error page: scrubbed from every
        excerpt before it reaches health (/readyz), the DLQ (``dlq list``) or a log line."""
        secrets = self.settings.secrets
        sensitive = {*secrets, *(s.removeprefix("whsec_") for s in secrets), *self.static_headers.values()}
        sensitive |= {v.split(" ", 1)[1] for v in self.static_headers.values() if " " in v}  # Bearer x
        password = urlsplit(self.url).password
        if password:
            sensitive.add(password)
        return sorted((s for s in sensitive if len(s) >= 4), key=len, reverse=True)

    def describe(self) -> str:
        return redact_url(self.url)

    def stats(self) -> dict[str, float]:
        return self.controls.stats()

    def accepts(self, row: Row) -> bool:
        # bridge.* (operational) events only when a type glob names them: see bridge.operational
        types_ok = (
            type_wanted(self.types, row.type) if not self._all_types else not row.type.startswith("bridge.")
        )
        return types_ok and (
            self._all_sources
            or (row.source == "bridge" and row.type.startswith("bridge."))  # chosen by types alone
            or any(fnmatch.fnmatchcase(row.source, p) for p in self.sources)
        )

    def _client(self) -> httpx.AsyncClient:
        s = self.settings
        verify: ssl.SSLContext = client_context(
            s.verify_tls, s.ca_file, s.cert_file, s.key_file, where=f"sinks.webhook {self.name}"
        )
        limits = httpx.Limits(
            max_connections=self.max_in_flight, max_keepalive_connections=self.max_in_flight
        )
        return httpx.AsyncClient(
            verify=verify,
            follow_redirects=False,
            limits=limits,
            timeout=httpx.Timeout(self.timeout),
            trust_env=False,
            proxy=s.proxy,
        )

    # -- the scheduling loop --------------------------------------------------------
    async def run(
        self, feed: SinkFeed, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        async with self._client() as client, trio.open_nursery() as nursery:
            self._feed = feed
            nursery.start_soon(feed.run_flusher)
            task_status.started()
            await self.controls.start(feed, self.health)
            self.health.state = "ok"
            while True:
                wake_at = await self._schedule(feed, client, nursery)
                await self._sleep(feed, wake_at)

    async def _sleep(self, feed: SinkFeed, wake_at: float | None) -> None:
        """Until a delivery finishes, new rows are committed, or ``wake_at`` (wall clock)."""
        timeout = 1.0 if wake_at is None else max(0.0, min(1.0, wake_at - self.clock()))
        if timeout <= 0:
            return
        await feed.wait_for_new(timeout)

    def wake(self) -> None:
        """Run a scheduling pass now (a delivery finished; tests moving a fake clock)."""
        if self._feed is not None:
            self._feed.poke()

    async def _schedule(
        self, feed: SinkFeed, client: httpx.AsyncClient, nursery: trio.Nursery
    ) -> float | None:
        now = self.clock()
        if (disabled := await self.controls.gate(feed, self.health)) is not None:
            return disabled  # events stay pending in the outbox until `endpoint enable`
        slots = self.breaker.slots(now, self.max_in_flight) - self.scheduler.requests
        if self.breaker.is_open:
            self.health.state = "open"
            if slots <= 0:
                return self.breaker.open_until if now < self.breaker.open_until else None
        if slots <= 0:
            return None
        scheduler = self.scheduler
        plan = scheduler.begin(slots)
        scheduler.scan(plan, await feed.window(), now)
        if plan.slots > 0 and feed.saturated:
            # Everything in a full window is blocked: look past it (it fills as it drains).
            scheduler.scan(plan, await feed.beyond(BEYOND_PAGE), now)
        scheduler.finish(plan, now, flush_batch=self.breaker.is_open)
        self.controls.throttle(plan, now)  # rate_limit: the rest wait in the outbox
        if plan.skipped:
            feed.skip(plan.skipped)
        for rows in plan.requests:
            scheduler.started(rows)
            nursery.start_soon(self._deliver, feed, client, rows)
        if plan.skipped:
            await feed.flush()
        return plan.wake_at

    # -- one request ------------------------------------------------------------------
    async def _deliver(self, feed: SinkFeed, client: httpx.AsyncClient, rows: list[Row]) -> None:
        recorded = False
        try:
            outcome = await self._post(client, rows)
            self._record(feed, rows, outcome)
            self.controls.record(self.health, outcome)  # may disable: before anything else starts
            recorded = True
        finally:
            self.scheduler.finished(rows)
            feed.poke()
        if recorded:
            with trio.CancelScope(shield=True):
                # Deliveries are written by the flusher, many at once; a dead letter or a
                # retry is written at once (dlq list shows it as soon as the write ends).
                if outcome.kind != "ok" or not feed.settle_soon():
                    await feed.flush()
                await self.controls.after(feed, self.health, rows, outcome)

    async def _post(self, client: httpx.AsyncClient, rows: list[Row]) -> Outcome:
        msg_id, content_headers, body = encode(rows, self.mode)
        headers = {**self._base_headers, **content_headers, **self.signer.headers(msg_id, body)}
        try:
            with trio.fail_after(self.timeout):
                sent = await self.controls.authorized(client, headers)
                async with client.stream("POST", self.url, content=body, headers=sent) as response:
                    excerpt = await self._read_bounded(response)
                if response.status_code == 401 and self.controls.refused(sent):  # OAuth2: new token, once
                    sent = await self.controls.authorized(client, headers)
                    async with client.stream("POST", self.url, content=body, headers=sent) as response:
                        excerpt = await self._read_bounded(response)
        except OAuthError as exc:
            return Outcome("retry", None, str(exc))
        except trio.TooSlowError:
            return Outcome("retry", None, f"no complete response within {self.timeout}s")
        except httpx.HTTPError as exc:
            return Outcome("retry", None, self.controls.explain(describe(exc), exc, self.url))
        status = response.status_code
        kind = self.controls.classify(status, response.headers)
        if kind == "ok":
            return Outcome("ok", status, "")
        error = f"HTTP {status}: {self._scrub(excerpt)}"
        if 300 <= status < 400:
            location = redact_url(response.headers.get("location", "?"))
            error = f"HTTP {status} redirect to {location} (redirects are not followed; fix the URL)"
        return Outcome(
            kind, status, error, parse_retry_after(response.headers.get("retry-after"), self.clock())
        )

    def _scrub(self, text: str) -> str:
        for secret in (*self._sensitive, *self.controls.sensitive()):
            text = text.replace(secret, "[REDACTED]")
        return text

    async def _read_bounded(self, response: httpx.Response) -> str:
        """At most ``max_response_bytes`` of the body; an endless body is cut off."""
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_raw():
            chunks.append(chunk)
            size += len(chunk)
            if size >= self.max_response_bytes:
                break
        return b"".join(chunks)[: self.max_response_bytes].decode("utf-8", "replace")

    def _record(self, feed: SinkFeed, rows: list[Row], outcome: Outcome) -> None:
        """Apply an outcome to the window at once (the write to disk follows in a group)."""
        now = self.clock()
        if outcome.kind == "ok":
            if self.breaker.success():
                log.info("webhook_circuit_closed", sink=self.name, url=self.describe())
            self.health.delivered += len(rows)
            self.health.state, self.health.detail = "ok", ""
            feed.mark_delivered(rows)
            return
        if outcome.kind in ("dead", "gone"):  # gone (410): the endpoint is disabled after this
            self.breaker.success()  # the endpoint answered; it is the request it refused
            for row in rows:
                self.health.dead += 1
                feed.mark_dead(row, status=outcome.status, error=outcome.error)
                self.controls.dead_lettered(row, outcome.status, outcome.error)
            log.error(
                "webhook_dead_letter",
                sink=self.name,
                url=self.describe(),
                status=outcome.status,
                error=outcome.error,
                ids=[r.id for r in rows],
                hint="see 'event-bridge dlq list'; re-deliver with 'event-bridge dlq retry'",
            )
            return
        self._record_failure(feed, rows, outcome, now)

    def _record_failure(self, feed: SinkFeed, rows: list[Row], outcome: Outcome, now: float) -> None:
        self.health.failed += 1
        if self.breaker.failure(now):
            log.warning(
                "webhook_circuit_open",
                sink=self.name,
                url=self.describe(),
                consecutive_failures=self.breaker.failures,
                probe_in=round(self.breaker.open_until - now, 1),
                error=outcome.error,
            )
        self.health.state = "open" if self.breaker.is_open else "retrying"
        self.health.detail = outcome.error
        attempt = rows[0].attempts + 1
        schedule = tuple(self.schedule)
        for row in rows:
            delay = retry_delay(row.attempts + 1, schedule, outcome.retry_after, self.rng)
            if delay is None or self.controls.policy.too_old(row.received_at, now):  # max_age
                self.health.dead += 1
                error = f"gave up after {row.attempts + 1} attempts: {outcome.error}"
                if delay is not None:
                    error = f"older than max_age ({self.controls.policy.max_age:g} s); {error}"
                feed.mark_dead(row, status=outcome.status, error=error)
                self.controls.dead_lettered(row, outcome.status, error)
                log.error(
                    "webhook_gave_up",
                    sink=self.name,
                    url=self.describe(),
                    id=row.id,
                    attempts=row.attempts + 1,
                    error=outcome.error,
                )
                continue
            self.health.retried += 1
            feed.mark_retry(row, next_at=now + delay, status=outcome.status, error=outcome.error)
        log.warning(
            "webhook_delivery_failed",
            sink=self.name,
            url=self.describe(),
            status=outcome.status,
            error=outcome.error,
            events=len(rows),
            attempt=attempt,
        )
