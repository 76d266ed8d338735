"""The webhook's pure core: ordering per subject, retry rule, breaker (no sockets, no clock)."""

from __future__ import annotations

import random

from bridge.outbox import Row
from bridge.sinks.webhook.breaker import CircuitBreaker
from bridge.sinks.webhook.scheduler import (
    DEFAULT_SCHEDULE,
    Scheduler,
    classify,
    parse_retry_after,
    retry_delay,
)


def row(seq: int, subject: str | None, *, next_at: float = 0.0, type_: str = "call.started") -> Row:
    return Row(seq, f"id-{seq}", "src", type_, subject, 100.0, b"{}", next_at=next_at)


def sched(mode: str = "structured", **kw: object) -> Scheduler:
    return Scheduler(
        mode=mode,
        batch_max_events=int(kw.get("batch_max_events", 3)),  # type: ignore[call-overload]
        batch_max_age=float(kw.get("batch_max_age", 0.5)),  # type: ignore[arg-type]
        accepts=lambda r: r.type != "vendor.x.noise",
    )


def test_one_request_per_subject_in_flight_later_events_wait() -> None:
    s = sched()
    rows = [row(1, "a"), row(2, "a"), row(3, "b"), row(4, None), row(5, None)]
    plan = s.finish(s.scan(s.begin(10), rows, now=0), 0, flush_batch=False)
    assert [[r.seq for r in req] for req in plan.requests] == [[1], [3], [4], [5]]
    for req in plan.requests:
        s.started(req)
    # While 1 is in flight, 2 (same subject) still waits; nothing else is startable.
    plan = s.scan(s.begin(10), rows, now=0)
    assert plan.requests == []
    s.finished([rows[0]])
    plan = s.scan(s.begin(10), rows[1:], now=0)
    assert [[r.seq for r in req] for req in plan.requests] == [[2]]


def test_a_waiting_retry_blocks_its_subject_and_sets_the_wake_time() -> None:
    s = sched()
    rows = [row(1, "a", next_at=50.0), row(2, "a"), row(3, "b")]
    plan = s.scan(s.begin(10), rows, now=10.0)
    assert [[r.seq for r in req] for req in plan.requests] == [[3]]
    assert plan.wake_at == 50.0
    plan = s.scan(s.begin(10), rows, now=60.0)
    assert [r[0].seq for r in plan.requests] == [1, 3]


def test_slots_bound_the_requests_started() -> None:
    s = sched()
    plan = s.scan(s.begin(2), [row(i, str(i)) for i in range(1, 10)], now=0)
    assert len(plan.requests) == 2 and plan.slots == 0


def test_filtered_rows_are_skipped_not_sent() -> None:
    s = sched()
    plan = s.scan(s.begin(5), [row(1, "a", type_="vendor.x.noise"), row(2, "a")], now=0)
    assert [r.seq for r in plan.skipped] == [1]
    assert [r[0].seq for r in plan.requests] == [2]


def test_batch_mode_fills_then_waits_for_age_or_breaker() -> None:
    s = sched("batch", batch_max_events=3, batch_max_age=0.5)
    rows = [row(i, {1: "a", 2: "a", 3: "b"}.get(i, "c")) for i in range(1, 6)]
    plan = s.finish(s.scan(s.begin(5), rows, now=100.0), 100.0, flush_batch=False)
    # 1,2 (a) and 3 (b) fill the first batch in order; 4,5 (c) wait until received_at + 0.5.
    assert [[r.seq for r in req] for req in plan.requests] == [[1, 2, 3]]
    assert plan.wake_at == 100.5
    plan = s.finish(s.scan(s.begin(5), rows[3:], now=100.0), 100.0, flush_batch=True)
    assert [[r.seq for r in req] for req in plan.requests] == [[4, 5]]


def test_status_classes_and_retry_after() -> None:
    assert [classify(c) for c in (200, 204, 301, 400, 404, 408, 425, 429, 500, 503)] == [
        "ok", "ok", "dead", "dead", "dead", "retry", "retry", "retry", "retry", "retry",
    ]  # fmt: skip
    assert parse_retry_after("120", 0) == 120.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1445412480.0 - 60) == 60.0
    assert parse_retry_after("soon", 0) is None


def test_retry_delay_is_full_jitter_below_each_step_then_gives_up() -> None:
    rng = random.Random(3)
    schedule = (1.0, 10.0)
    delays = [retry_delay(1, schedule, None, rng) for _ in range(200)]
    assert all(d is not None and 0 <= d <= 1.0 for d in delays) and len(set(delays)) > 100
    assert retry_delay(3, schedule, None, rng) is None
    assert retry_delay(1, schedule, 7.0, rng) == 7.0  # Retry-After wins, capped by the last step
    assert retry_delay(1, schedule, 999.0, rng) == 10.0
    assert len(DEFAULT_SCHEDULE) == 10


def test_breaker_opens_after_threshold_probes_once_and_backs_off() -> None:
    b = CircuitBreaker(threshold=2, base=5.0, cap=12.0)
    assert b.slots(0, 4) == 4
    assert not b.failure(0) and b.failure(1)
    assert b.slots(2, 4) == 0 and b.slots(6, 4) == 1  # cooldown 5 s, then one probe
    b.failure(6)  # the probe failed: 10 s
    assert b.open_until == 16 and b.slots(15, 4) == 0
    b.failure(16)
    assert b.open_until == 28  # capped at 12
    assert b.success() and b.slots(17, 4) == 4
