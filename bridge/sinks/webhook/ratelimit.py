"""Per-endpoint rate limit: a token bucket (pure: every time is passed in).

``rate`` requests per second on average, at most ``burst`` at once after an idle spell.
A request is one HTTP request (one event in structured and binary mode, one batch in
batch mode). Rows that wait for a token stay in the outbox: throttling never holds more
in memory than the sink's window, and a subject's order is untouched because the
scheduler simply starts fewer requests in a pass.
"""

from __future__ import annotations

import math


class TokenBucket:
    """``rate`` tokens per second, up to ``burst`` banked; ``rate <= 0`` means unlimited."""

    def __init__(self, rate: float, burst: int = 1, now: float = 0.0) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self.tokens = float(self.burst)
        self.updated = now
        self.throttled_seconds = 0.0  # time requests waited for a token (for /metrics)
        self._throttled_since: float | None = None

    @property
    def unlimited(self) -> bool:
        return self.rate <= 0

    def _refill(self, now: float) -> None:
        if now > self.updated:
            self.tokens = min(float(self.burst), self.tokens + (now - self.updated) * self.rate)
        self.updated = max(self.updated, now)

    def available(self, now: float) -> int:
        """Whole requests that may start now."""
        if self.unlimited:
            return 1 << 30
        self._refill(now)
        return math.floor(self.tokens + 1e-9)

    def take(self, now: float, count: int) -> None:
        """``count`` requests started (at most :meth:`available`)."""
        if self.unlimited or count <= 0:
            return
        self._refill(now)
        self.tokens = max(0.0, self.tokens - count)

    def ready_at(self, now: float) -> float:
        """When the next whole token is there (``now`` if one already is)."""
        if self.unlimited:
            return now
        self._refill(now)
        missing = 1.0 - self.tokens
        return now if missing <= 1e-9 else now + missing / self.rate

    def throttled(self, now: float, waiting: bool) -> None:
        """Account the time requests were ready but held back by the bucket."""
        if waiting:
            if self._throttled_since is None:
                self._throttled_since = now
            return
        self.flush_throttled(now)

    def flush_throttled(self, now: float) -> float:
        if self._throttled_since is not None:
            self.throttled_seconds += max(0.0, now - self._throttled_since)
            self._throttled_since = None
        return self.throttled_seconds

    def total_throttled(self, now: float) -> float:
        """Throttled seconds so far, the current wait included."""
        current = 0.0 if self._throttled_since is None else max(0.0, now - self._throttled_since)
        return self.throttled_seconds + current
