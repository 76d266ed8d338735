"""Retry policy of one endpoint (pure): which answers are retried, for how long, and
which ones mean "stop".

* 2xx: delivered.
* A status listed in ``retry_statuses`` (default ``408, 425, 429, 5xx``: as before), a
  timeout, a connection or TLS error: retried on the schedule.
* ``410 Gone``: the receiver says the endpoint is no more. The event is dead-lettered at
  once and the endpoint is **disabled** until ``event-bridge endpoint enable NAME``
  (its later events stay in the outbox, in order).
* ``webhook-delivery: abort-message`` in a non-2xx answer (Svix's delivery control):
  this one event is dead-lettered at once, nothing else changes;
  ``webhook-delivery: disable`` in a non-2xx answer: as 410 (dead letter, endpoint disabled).
* Any other status (other 4xx, 3xx: redirects are never followed): dead-lettered at once.
* ``max_age`` (seconds, 0 = off): an event that fails when it is older than this is
  dead-lettered instead of retried.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

DEFAULT_RETRY_STATUSES = ("408", "425", "429", "5xx")
GONE = 410
_PATTERN = re.compile(r"^[1-5](?:[0-9]{2}|[0-9]x|xx)$")


def valid_status_pattern(text: str) -> bool:
    """``"429"``, ``"50x"`` or ``"5xx"``."""
    return bool(_PATTERN.fullmatch(text.strip().lower()))


def _matches(pattern: str, status: int) -> bool:
    digits = str(status)
    return len(digits) == 3 and all(p in ("x", d) for p, d in zip(pattern, digits, strict=True))


@dataclass(frozen=True)
class RetryPolicy:
    retry_statuses: tuple[str, ...] = DEFAULT_RETRY_STATUSES
    max_age: float = 0.0

    @classmethod
    def of(cls, statuses: Iterable[str], max_age: float = 0.0) -> RetryPolicy:
        return cls(tuple(s.strip().lower() for s in statuses), max_age)

    def classify(self, status: int, headers: Mapping[str, str] | None = None) -> str:
        """``ok``, ``retry``, ``dead`` (this event) or ``gone`` (dead, and disable the endpoint)."""
        if 200 <= status < 300:
            return "ok"
        control = headers.get("webhook-delivery", "").strip().lower() if headers else ""
        if status == GONE or control == "disable":
            return "gone"
        if control == "abort-message":
            return "dead"
        if 300 <= status < 400:
            return "dead"
        if any(_matches(p, status) for p in self.retry_statuses):
            return "retry"
        return "dead"

    def too_old(self, received_at: float, now: float) -> bool:
        return self.max_age > 0 and now - received_at > self.max_age
