"""Auto-disable on a simulated clock, and the enabled state in a real outbox file."""

from __future__ import annotations

from pathlib import Path

from bridge.outbox import Outbox
from bridge.sinks.webhook.disable import AutoDisable, EndpointState, enable, load, save

DAY = 86400.0


def test_disabled_after_five_days_of_failures_only() -> None:
    d = AutoDisable(5 * DAY, 0)
    t = 1_000_000.0
    assert d.failure(t) is None
    assert d.failure(t + 4.9 * DAY) is None
    assert d.failure(t + 5 * DAY) == "disable_after"


def test_a_success_restarts_the_clock() -> None:
    d = AutoDisable(5 * DAY, 0)
    d.failure(0.0)
    d.failure(4 * DAY)
    assert d.success()
    assert d.failure(4.5 * DAY) is None
    assert d.failure(8 * DAY) is None  # only 3.5 days since the streak started
    assert d.failure(9.5 * DAY) == "disable_after"


def test_consecutive_failures() -> None:
    d = AutoDisable(0, 3)
    assert [d.failure(float(i)) for i in range(3)] == [None, None, "disable_after_failures"]
    d.success()
    assert d.failure(10.0) is None


def test_off_means_never() -> None:
    d = AutoDisable(0, 0)
    assert all(d.failure(i * DAY) is None for i in range(100))


def test_state_survives_a_reopen_of_the_outbox(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    box = Outbox(path)
    box.open()
    assert load(box.db, "hook") is None
    save(box.db, "hook", EndpointState(enabled=False, reason="gone", disabled_at=5.0, error="HTTP 410"))
    box.close()
    box = Outbox(path)
    box.open()
    state = load(box.db, "hook")
    assert state == EndpointState(enabled=False, reason="gone", disabled_at=5.0, error="HTTP 410")
    assert load(box.db, "other") is None
    box.close()


def test_a_garbled_state_reads_as_enabled() -> None:
    assert EndpointState.from_json("{not json") == EndpointState()
    assert EndpointState.from_json("[1]") == EndpointState()


def test_a_late_write_of_an_older_decision_does_not_undo_a_later_one(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.sqlite3")
    box.open()
    decided = EndpointState(enabled=False, reason="gone", changed_at=100.0)  # the sink decided at 100…
    enable(box.db, "hook")  # …an operator enabled it later…
    save(box.db, "hook", decided)  # …and the sink's write of its decision lands only now
    state = load(box.db, "hook")
    assert state is not None and state.enabled
    save(box.db, "hook", EndpointState(enabled=False, reason="operator", changed_at=state.changed_at + 1))
    state = load(box.db, "hook")
    assert state is not None and not state.enabled and state.reason == "operator"
    box.close()
