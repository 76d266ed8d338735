"""The SQLite outbox: ids, ordinals, source state, delivery states, pruning, reopening."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bridge.model import Event
from bridge.outbox import DEAD, DELIVERED, Outbox, OutboxUnavailable, Pending, Settlements


def event(n: int, subject: str = "s") -> Event:
    return Event(
        source_name="src",
        vendor="test",
        type="recording.started",
        subject=subject,
        time=datetime(2026, 1, 1, tzinfo=UTC),
        data={"raw": {"n": n}},
    )


def commit(outbox: Outbox, events: list[Event], state: dict | None = None) -> list[int]:
    return outbox.commit([Pending("src", events, state, 1000.0, None)])


@pytest.fixture
def outbox(tmp_path: Path) -> Outbox:
    box = Outbox(tmp_path / "outbox.sqlite3")
    box.open()
    box.set_sinks(["a", "b"])
    yield box
    box.close()


def test_wal_mode_and_one_delivery_row_per_sink(outbox: Outbox) -> None:
    assert outbox.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    commit(outbox, [event(1), event(2)])
    assert [r.seq for r in outbox.pending("a", 10)] == [1, 2]
    assert [r.seq for r in outbox.pending("b", 10)] == [1, 2]


def test_identical_content_gets_new_ids_and_ordinals_survive_reopen(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    box.open()
    box.set_sinks(["a"])
    commit(box, [event(1), event(1)])
    box.close()
    box = Outbox(tmp_path / "o.db")
    box.open()
    box.set_sinks(["a"])
    commit(box, [event(1)])
    ids = [r.id for r in box.pending("a", 10)]
    assert len(set(ids)) == 3
    # A fresh outbox fed the same input produces the same ids (replay, second bridge).
    other = Outbox(tmp_path / "other.db")
    other.open()
    other.set_sinks(["a"])
    commit(other, [event(1), event(1), event(1)])
    assert [r.id for r in other.pending("a", 10)] == ids
    body = json.loads(other.pending("a", 1)[0].body)
    assert body["id"] == ids[0] and body["specversion"] == "1.0"


def test_source_state_commits_with_events(outbox: Outbox) -> None:
    commit(outbox, [event(1)], state={"port:1/2": "RECORD", "gone": "x"})
    commit(outbox, [], state={"gone": None})
    assert outbox.load_state("src") == {"port:1/2": "RECORD"}


def test_delivery_states_and_requeue(outbox: Outbox) -> None:
    commit(outbox, [event(1), event(2), event(3)])
    rows = outbox.pending("a", 10)
    outbox.settle("a", Settlements(delivered=[rows[0].seq]))
    outbox.settle("a", Settlements(retries=[(rows[1].seq, 5.0, 503, "HTTP 503")]))
    outbox.settle("a", Settlements(dead=[(rows[2].seq, 400, "HTTP 400: bad")]))
    pending = outbox.pending("a", 10)
    assert [(r.seq, r.attempts, r.next_at) for r in pending] == [(rows[1].seq, 1, 5.0)]
    dead = outbox.deliveries(sink="a", state=DEAD)
    assert [(d["id"], d["last_status"]) for d in dead] == [(rows[2].id, 400)]
    assert outbox.requeue("a", [rows[2].seq]) == 1
    assert [r.seq for r in outbox.pending("a", 10)] == [rows[1].seq, rows[2].seq]
    assert [r.seq for r in outbox.pending("b", 10)] == [r.seq for r in rows]


def test_prune_keeps_what_a_sink_still_needs(outbox: Outbox) -> None:
    commit(outbox, [event(1), event(2)])
    first, second = outbox.pending("a", 10)
    outbox.settle("a", Settlements(delivered=[first.seq, second.seq]))
    outbox.settle("b", Settlements(delivered=[first.seq]))
    assert outbox.prune(retention=0) == 1
    assert outbox.stats()["events"] == 1
    assert outbox.deliveries(sink="a", state=DELIVERED)[0]["seq"] == second.seq


def test_unwritable_outbox_raises_outbox_unavailable(outbox: Outbox) -> None:
    outbox.db.execute("PRAGMA query_only=ON")
    with pytest.raises(OutboxUnavailable):
        commit(outbox, [event(1)])
    outbox.db.execute("PRAGMA query_only=OFF")
    assert commit(outbox, [event(1)])
