"""Which rows a webhook sends next, and what an answer means (pure: no I/O, no clock).

Ordering rule: a given subject's events reach the endpoint in commit order. While one
is in flight or waiting for its retry, later events of that subject wait; different
subjects go in parallel up to ``max_in_flight`` requests. Batch mode puts several
events of one subject in one request, in order.

Retry rule: 2xx is success. 408, 425, 429, 5xx, timeouts and connection/TLS errors
are retried after ``uniform(0, schedule[attempt-1])`` seconds (full jitter,
``Retry-After`` honoured up to the last step); after the last step the event is dead.
Any other status (other 4xx, and 3xx: redirects are never followed) is dead at once.
"""

from __future__ import annotations

import email.utils
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from bridge.outbox import Row

# Seconds before retry n (full jitter below each cap): seconds, then minutes, then hours,
# about 28 hours in all (in the spirit of Svix / Standard Webhooks' reference service).
DEFAULT_SCHEDULE = (5.0, 30.0, 120.0, 600.0, 1800.0, 3600.0, 7200.0, 18000.0, 36000.0, 36000.0)
RETRYABLE_STATUS = frozenset({408, 425, 429})


@dataclass
class Outcome:
    kind: str  # "ok", "retry", "dead"
    status: int | None
    error: str
    retry_after: float | None = None


def classify(status: int) -> str:
    if 200 <= status < 300:
        return "ok"
    if status in RETRYABLE_STATUS or status >= 500:
        return "retry"
    return "dead"


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date)."""
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


def retry_delay(
    attempt: int, schedule: tuple[float, ...], retry_after: float | None, rng: random.Random
) -> float | None:
    """Seconds before retry ``attempt`` (1-based), or None when the schedule is used up."""
    if attempt > len(schedule):
        return None
    delay = rng.uniform(0, schedule[attempt - 1])
    if retry_after is not None:
        delay = max(delay, min(retry_after, schedule[-1]))
    return delay


@dataclass
class Plan:
    """One scheduling pass: requests to start now, rows to skip, when to look again."""

    requests: list[list[Row]] = field(default_factory=list)
    skipped: list[Row] = field(default_factory=list)
    wake_at: float | None = None
    batch: list[Row] = field(default_factory=list)  # batch mode: not full yet
    blocked: set[str] = field(default_factory=set)
    slots: int = 0

    def wake(self, at: float) -> None:
        self.wake_at = at if self.wake_at is None else min(self.wake_at, at)


class Scheduler:
    """The in-flight bookkeeping of one endpoint: O(in flight) per pass, not O(backlog)."""

    def __init__(
        self,
        *,
        mode: str,
        batch_max_events: int,
        batch_max_age: float,
        accepts: Callable[[Row], bool],
    ) -> None:
        self.mode = mode
        self.batch_max_events = batch_max_events
        self.batch_max_age = batch_max_age
        self.accepts = accepts
        self.inflight: dict[int, str] = {}  # seq -> ordering key
        self.requests = 0

    @staticmethod
    def key(row: Row) -> str:
        return row.subject or row.id

    def begin(self, slots: int) -> Plan:
        return Plan(blocked=set(self.inflight.values()), slots=slots)

    def scan(self, plan: Plan, rows: Iterable[Row], now: float) -> Plan:
        """Walk pending ``rows`` in commit order; may be called again with more rows."""
        if plan.slots <= 0:
            return plan
        blocked, inflight = plan.blocked, self.inflight
        for row in rows:
            if row.seq in inflight:
                continue
            key = row.subject or row.id
            if key in blocked:
                continue
            if not self.accepts(row):
                plan.skipped.append(row)
                continue
            if row.next_at > now:
                blocked.add(key)  # later events of this subject wait for this retry
                plan.wake(row.next_at)
                continue
            if self.mode == "batch":
                plan.batch.append(row)  # one subject's events may share a batch, in order
                if len(plan.batch) >= self.batch_max_events:
                    plan.requests.append(plan.batch)
                    blocked.update(self.key(r) for r in plan.batch)
                    plan.batch = []
                    plan.slots -= 1
            else:
                blocked.add(key)
                plan.requests.append([row])
                plan.slots -= 1
            if plan.slots <= 0:
                break
        return plan

    def finish(self, plan: Plan, now: float, *, flush_batch: bool) -> Plan:
        """A partial batch goes when it is old enough (or ``flush_batch``), else wake then."""
        if plan.batch:
            ready_at = plan.batch[0].received_at + self.batch_max_age
            if ready_at <= now or flush_batch:
                plan.requests.append(plan.batch)
            else:
                plan.wake(ready_at)
            plan.batch = []
        return plan

    def started(self, rows: list[Row]) -> None:
        for row in rows:
            self.inflight[row.seq] = self.key(row)
        self.requests += 1

    def finished(self, rows: list[Row]) -> None:
        for row in rows:
            self.inflight.pop(row.seq, None)
        self.requests -= 1
