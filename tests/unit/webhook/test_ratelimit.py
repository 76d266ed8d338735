"""The token bucket on a simulated clock: the limit, the burst, the throttled time."""

from __future__ import annotations

import pytest

from bridge.sinks.webhook.ratelimit import TokenBucket


def greedy(bucket: TokenBucket, until: float, start: float = 0.0) -> list[float]:
    """Start a request whenever the bucket allows, like a sink with an endless backlog."""
    now, sent = start, []
    while now < until:
        n = bucket.available(now)
        bucket.take(now, n)
        sent += [now] * n
        now = max(bucket.ready_at(now), now + 1e-6)
    return sent


@pytest.mark.parametrize("rate", [0.5, 7.0, 20.0, 250.0])
def test_every_ten_second_window_holds_the_rate(rate: float) -> None:
    sent = greedy(TokenBucket(rate, burst=1), 60.0)
    for start in range(0, 50):
        in_window = sum(1 for t in sent if start <= t < start + 10)
        assert rate * 10 - 1 <= in_window <= rate * 10 + 1


def test_burst_is_what_may_go_at_once_after_idle() -> None:
    bucket = TokenBucket(2.0, burst=5)
    assert bucket.available(0.0) == 5
    bucket.take(0.0, 5)
    assert bucket.available(0.0) == 0
    assert bucket.ready_at(0.0) == pytest.approx(0.5)
    assert bucket.available(100.0) == 5  # never more than the burst banked


def test_zero_rate_is_unlimited() -> None:
    bucket = TokenBucket(0.0)
    assert bucket.unlimited and bucket.available(0.0) > 10_000
    bucket.take(0.0, 10_000)
    assert bucket.ready_at(3.0) == 3.0


def test_throttled_time_counts_only_waits() -> None:
    bucket = TokenBucket(1.0)
    bucket.throttled(10.0, True)
    bucket.throttled(11.0, True)  # still waiting: the wait started at 10
    assert bucket.total_throttled(12.5) == pytest.approx(2.5)
    bucket.throttled(13.0, False)
    bucket.throttled(20.0, False)
    assert bucket.total_throttled(30.0) == pytest.approx(3.0)
