"""Webhook sink: signed CloudEvents over HTTP, retried, ordered per subject.

Delivery rules:

* 2xx is success. 408, 425, 429, 5xx, timeouts and connection/TLS errors are retried
  on the configured schedule with full jitter (``Retry-After`` honoured); after the last
  retry the event goes to the dead-letter state. Any other status (other 4xx, and 3xx:
  redirects are never followed) is dead-lettered at once with the status and a bounded
  excerpt of the response. ``event-bridge dlq retry`` re-delivers with the same id.
* A given subject's events reach the endpoint in commit order: while one is in flight
  or waiting for its retry, later events of that subject wait. Different subjects go
  in parallel up to ``max_concurrency``.
* An endpoint that keeps failing opens a circuit breaker: nothing is sent until a single
  probe succeeds. Each endpoint has its own client, breaker and outbox cursor, so a
  failing one never slows another or the sources.
"""

from __future__ import annotations

import email.utils
import fnmatch
import random
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import structlog
import trio

from bridge import __version__
from bridge.components import ComponentBase
from bridge.config import Table
from bridge.netutil import describe, safe_url
from bridge.outbox import Row
from bridge.sinks.base import SinkFeed, SinkHealth
from bridge.sinks.webhook_wire import MODES, Signer, encode

log = structlog.get_logger("bridge.sinks.webhook")

# Seconds before retry n (full jitter below each cap): seconds, then minutes, then hours,
# about 28 hours in all (in the spirit of Svix / Standard Webhooks' reference service).
DEFAULT_SCHEDULE = (5.0, 30.0, 120.0, 600.0, 1800.0, 3600.0, 7200.0, 18000.0, 36000.0, 36000.0)
RETRYABLE_STATUS = frozenset({408, 425, 429})
# The scheduler reads pending rows in pages that start small (usually the first few rows
# hold a dispatchable event) and grow while everything read is blocked behind retries.
PAGE_MIN = 64
PAGE_MAX = 4096
MAX_PAGES = 20


@dataclass
class Outcome:
    kind: str  # "ok", "retry", "dead"
    status: int | None
    error: str
    retry_after: float | None = None


class CircuitBreaker:
    """Closed → (threshold consecutive failures) → open → (cooldown) → one probe."""

    def __init__(self, threshold: int = 5, base: float = 5.0, cap: float = 300.0) -> None:
        self.threshold = threshold
        self.base = base
        self.cap = cap
        self.failures = 0
        self.opens = 0
        self.open_until = 0.0

    @property
    def is_open(self) -> bool:
        return self.failures >= self.threshold

    def slots(self, now: float, max_concurrency: int) -> int:
        """How many requests may start now (0 while open, 1 probe after the cooldown)."""
        if not self.is_open:
            return max_concurrency
        return 1 if now >= self.open_until else 0

    def success(self) -> bool:
        was_open = self.is_open
        self.failures = 0
        self.opens = 0
        return was_open

    def failure(self, now: float) -> bool:
        """Record a failure; returns True when this failure (re)opened the breaker."""
        self.failures += 1
        if self.failures >= self.threshold:
            self.opens += 1
            self.open_until = now + min(self.cap, self.base * 2 ** (self.opens - 1))
            return True
        return False


def parse_retry_after(value: str | None, now: float) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - now)


def classify(status: int) -> str:
    if 200 <= status < 300:
        return "ok"
    if status in RETRYABLE_STATUS or status >= 500:
        return "retry"
    return "dead"


class WebhookSink(ComponentBase):
    kind = "webhook"

    def __init__(
        self,
        name: str,
        *,
        url: str,
        secrets: Sequence[str] = (),
        mode: str = "structured",
        types: Sequence[str] = ("*",),
        sources: Sequence[str] = ("*",),
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
        max_concurrency: int = 4,
        verify_tls: bool = True,
        ca_file: str | None = None,
        schedule: Sequence[float] = DEFAULT_SCHEDULE,
        max_response_bytes: int = 4096,
        batch_max_events: int = 100,
        batch_max_age: float = 0.2,
        breaker_threshold: int = 5,
        breaker_cooldown: float = 5.0,
        breaker_max_cooldown: float = 300.0,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.url = url
        self.signer = Signer(secrets)
        self._secrets = list(secrets)
        self.mode = mode
        self.types = list(types)
        self.sources = list(sources)
        self.static_headers = dict(headers or {})
        self.timeout = timeout
        self.max_concurrency = max_concurrency
        self.verify_tls = verify_tls
        self.ca_file = ca_file
        self.schedule = list(schedule)
        self.max_response_bytes = max_response_bytes
        self.batch_max_events = batch_max_events
        self.batch_max_age = batch_max_age
        self.breaker = CircuitBreaker(breaker_threshold, breaker_cooldown, breaker_max_cooldown)
        self.rng = rng or random.Random()
        # Wall clock for retry times (persisted as next_at) and the breaker; injectable so
        # a test can let hours of downtime pass in seconds.
        self.clock = clock
        self.health = SinkHealth()
        # Credentials a receiver might quote back in an error page: scrubbed from every
        # excerpt before it reaches health (/readyz), the DLQ (``dlq list``) or a log line.
        password = urlsplit(url).password
        sensitive = {
            *self._secrets,
            *(s.removeprefix("whsec_") for s in self._secrets),
            *self.static_headers.values(),
        }
        sensitive |= {
            v.split(" ", 1)[1] for v in self.static_headers.values() if " " in v
        }  # "Bearer <token>"
        if password:
            sensitive.add(password)
        self._sensitive = sorted((s for s in sensitive if len(s) >= 4), key=len, reverse=True)
        self.inflight: dict[int, str] = {}  # seq -> ordering key
        self._requests = 0
        self._wake = trio.Event()

    def describe(self) -> str:
        return safe_url(self.url)

    # -- filtering ------------------------------------------------------------
    def accepts(self, row: Row) -> bool:
        return any(fnmatch.fnmatchcase(row.type, p) for p in self.types) and any(
            fnmatch.fnmatchcase(row.source, p) for p in self.sources
        )

    # -- the scheduler ------------------------------------------------------------
    def _client(self) -> httpx.AsyncClient:
        verify: Any = self.verify_tls
        if self.verify_tls and self.ca_file:
            verify = ssl.create_default_context(cafile=self.ca_file)
        limits = httpx.Limits(
            max_connections=self.max_concurrency, max_keepalive_connections=self.max_concurrency
        )
        return httpx.AsyncClient(
            verify=verify,
            follow_redirects=False,
            limits=limits,
            timeout=httpx.Timeout(self.timeout),
            trust_env=False,
        )

    async def run(
        self, feed: SinkFeed, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        async with self._client() as client, trio.open_nursery() as nursery:
            task_status.started()
            self.health.state = "ok"
            while True:
                self._wake = trio.Event()
                wake_at = await self._schedule(feed, client, nursery)
                await self._sleep(feed, wake_at)

    async def _sleep(self, feed: SinkFeed, wake_at: float | None) -> None:
        """Until a delivery finishes, new events are committed, or ``wake_at`` (wall clock)."""
        timeout = 1.0 if wake_at is None else max(0.0, min(1.0, wake_at - self.clock()))
        wake = self._wake
        with trio.move_on_after(timeout):
            async with trio.open_nursery() as nursery:

                async def on_new() -> None:
                    await feed.wait_for_new()
                    nursery.cancel_scope.cancel()

                async def on_done() -> None:
                    await wake.wait()
                    nursery.cancel_scope.cancel()

                nursery.start_soon(on_new)
                nursery.start_soon(on_done)

    async def _schedule(
        self, feed: SinkFeed, client: httpx.AsyncClient, nursery: trio.Nursery
    ) -> float | None:
        now = self.clock()
        slots = self.breaker.slots(now, self.max_concurrency) - self._requests
        if self.breaker.is_open:
            self.health.state = "open"
            if slots <= 0:
                return self.breaker.open_until if now < self.breaker.open_until else None
        if slots <= 0:
            return None
        blocked = set(self.inflight.values())
        wake_at: float | None = None
        batch: list[Row] = []
        skipped: list[Row] = []
        after = 0
        page = PAGE_MIN
        for _ in range(MAX_PAGES):
            rows = await feed.pending(page, after)
            if not rows:
                break
            after = rows[-1].seq
            for row in rows:
                if row.seq in self.inflight:
                    continue
                key = row.subject or row.id
                if key in blocked:
                    continue
                if not self.accepts(row):
                    skipped.append(row)
                    continue
                if row.next_at > now:
                    blocked.add(key)  # later events of this subject wait for this retry
                    wake_at = row.next_at if wake_at is None else min(wake_at, row.next_at)
                    continue
                if self.mode == "batch":
                    batch.append(row)  # a batch may carry several events of one subject, in order
                    if len(batch) >= self.batch_max_events:
                        self._start(nursery, feed, client, batch)
                        blocked.update(r.subject or r.id for r in batch)
                        batch, slots = [], slots - 1
                else:
                    blocked.add(key)
                    self._start(nursery, feed, client, [row])
                    slots -= 1
                if slots <= 0:
                    break
            if slots <= 0 or len(rows) < page:
                break
            page = min(PAGE_MAX, page * 4)
        if skipped:
            await feed.skipped(skipped)
        if batch:
            ready_at = batch[0].received_at + self.batch_max_age
            if ready_at <= now or self.breaker.is_open:
                self._start(nursery, feed, client, batch)
            else:
                wake_at = ready_at if wake_at is None else min(wake_at, ready_at)
        return wake_at

    def _start(
        self, nursery: trio.Nursery, feed: SinkFeed, client: httpx.AsyncClient, rows: list[Row]
    ) -> None:
        for row in rows:
            self.inflight[row.seq] = row.subject or row.id
        self._requests += 1
        nursery.start_soon(self._deliver, feed, client, rows)

    # -- one request ------------------------------------------------------------------
    async def _deliver(self, feed: SinkFeed, client: httpx.AsyncClient, rows: list[Row]) -> None:
        try:
            outcome = await self._post(client, rows)
            with trio.CancelScope(shield=True):
                await self._record(feed, rows, outcome)
        finally:
            for row in rows:
                self.inflight.pop(row.seq, None)
            self._requests -= 1
            self._wake.set()

    async def _post(self, client: httpx.AsyncClient, rows: list[Row]) -> Outcome:
        msg_id, content_headers, body = encode(rows, self.mode)
        headers = {
            "user-agent": f"event-bridge/{__version__}",
            **self.static_headers,
            **content_headers,
            **self.signer.headers(msg_id, body),
        }
        try:
            with trio.fail_after(self.timeout):
                async with client.stream("POST", self.url, content=body, headers=headers) as response:
                    excerpt = await self._read_bounded(response)
        except trio.TooSlowError:
            return Outcome("retry", None, f"no complete response within {self.timeout}s")
        except httpx.HTTPError as exc:
            return Outcome("retry", None, describe(exc))
        kind = classify(response.status_code)
        error = "" if kind == "ok" else f"HTTP {response.status_code}: {self._scrub(excerpt)}"
        if 300 <= response.status_code < 400:
            error = f"HTTP {response.status_code} redirect to {response.headers.get('location', '?')} (redirects are not followed; fix the URL)"
        return Outcome(
            kind,
            response.status_code,
            error,
            parse_retry_after(response.headers.get("retry-after"), self.clock()),
        )

    def _scrub(self, text: str) -> str:
        for secret in self._sensitive:
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

    async def _record(self, feed: SinkFeed, rows: list[Row], outcome: Outcome) -> None:
        now = self.clock()
        if outcome.kind == "ok":
            if self.breaker.success():
                log.info("webhook_circuit_closed", sink=self.name, url=self.describe())
            self.health.delivered += len(rows)
            self.health.state, self.health.detail = "ok", ""
            await feed.delivered(rows)
            return
        if outcome.kind == "dead":
            self.breaker.success()  # the endpoint answered; it is the request it refused
            for row in rows:
                self.health.dead += 1
                await feed.dead(row, status=outcome.status, error=outcome.error)
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
        self.health.state, self.health.detail = (
            ("open" if self.breaker.is_open else "retrying"),
            outcome.error,
        )
        for row in rows:
            attempt = row.attempts + 1
            if attempt > len(self.schedule):
                self.health.dead += 1
                await feed.dead(
                    row, status=outcome.status, error=f"gave up after {attempt} attempts: {outcome.error}"
                )
                log.error(
                    "webhook_gave_up",
                    sink=self.name,
                    url=self.describe(),
                    id=row.id,
                    attempts=attempt,
                    error=outcome.error,
                )
                continue
            delay = self.rng.uniform(0, self.schedule[attempt - 1])
            if outcome.retry_after is not None:
                delay = max(delay, min(outcome.retry_after, self.schedule[-1]))
            self.health.retried += 1
            await feed.retry(row, next_at=now + delay, status=outcome.status, error=outcome.error)
        log.warning(
            "webhook_delivery_failed",
            sink=self.name,
            url=self.describe(),
            status=outcome.status,
            error=outcome.error,
            events=len(rows),
            attempt=rows[0].attempts + 1,
        )


def from_config(table: Table) -> WebhookSink:
    name = table.name()
    url = table.str("url")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise table.error("url", f"must be an http:// or https:// URL, got {safe_url(url)!r}")
    if parts.password:
        table.ctx.secrets.add(parts.password)
    secrets = table.str_list("secrets", [])
    for i, secret in enumerate(secrets):
        table.ctx.secrets.add(secret)
        if not secret.startswith("whsec_"):
            raise table.error(
                f"secrets[{i}]",
                "must start with 'whsec_' (Standard Webhooks secret, base64 after the prefix)",
            )
        try:
            Signer([secret])
        except Exception:
            raise table.error(f"secrets[{i}]", "is not valid base64 after 'whsec_'") from None
    schedule = table.list("retry_schedule", list(DEFAULT_SCHEDULE))
    if not schedule or not all(
        isinstance(s, int | float) and not isinstance(s, bool) and s >= 0 for s in schedule
    ):
        raise table.error("retry_schedule", "must be a non-empty list of seconds, e.g. [5, 30, 120, 600]")
    ca_file = table.path_value("ca_file", None)
    return WebhookSink(
        name,
        url=url,
        secrets=secrets,
        mode=table.str("mode", "structured", choices=MODES),
        types=table.str_list("types", ["*"]),
        sources=table.str_list("sources", ["*"]),
        headers=table.str_map("headers", {}, secret=True),
        timeout=table.float("timeout", 10.0, min=0.01),
        max_concurrency=table.int("max_concurrency", 4, min=1, max=256),
        verify_tls=table.bool("verify_tls", True),
        ca_file=str(ca_file) if ca_file else None,
        schedule=[float(s) for s in schedule],
        max_response_bytes=table.int("max_response_bytes", 4096, min=0),
        batch_max_events=table.int("batch_max_events", 100, min=1, max=10_000),
        batch_max_age=table.float("batch_max_age", 0.2, min=0.0),
        breaker_threshold=table.int("breaker_threshold", 5, min=1),
        breaker_cooldown=table.float("breaker_cooldown", 5.0, min=0.01),
        breaker_max_cooldown=table.float("breaker_max_cooldown", 300.0, min=0.01),
    )


async def demo_receiver(
    sink: WebhookSink, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
) -> None:
    """For ``event-bridge demo``: a verifying receiver where a loopback ``url`` points."""
    from bridge.asgi import serve_asgi
    from bridge.receiver import WebhookVerifier, print_events, receiver_app

    parts = urlsplit(sink.url)
    if parts.hostname not in ("127.0.0.1", "localhost", "::1") or not sink._secrets:
        task_status.started(0)
        return
    app = receiver_app(WebhookVerifier(sink._secrets), print_events)
    await serve_asgi(app, parts.hostname, parts.port or 80, task_status=task_status)
