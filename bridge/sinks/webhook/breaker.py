"""The circuit breaker of one webhook endpoint (pure: times are passed in)."""

from __future__ import annotations


class CircuitBreaker:
    """Closed → (``threshold`` consecutive failures) → open → (cooldown) → one probe.

    The cooldown starts at ``base`` seconds and doubles with every failed probe up to
    ``cap``; one success closes the breaker and resets it.
    """

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

    def slots(self, now: float, max_in_flight: int) -> int:
        """How many requests may start now (0 while open, 1 probe after the cooldown)."""
        if not self.is_open:
            return max_in_flight
        return 1 if now >= self.open_until else 0

    def success(self) -> bool:
        """Record a success; returns True when it closed an open breaker."""
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
