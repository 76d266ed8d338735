"""A sink's delivery window: fed by the committer, the outbox stays the truth."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import trio

from bridge.committer import Committer
from bridge.model import Event
from bridge.outbox import AsyncOutbox, Outbox
from bridge.sinks import base
from bridge.sinks.base import SinkFeed


def event(n: int, subject: str = "s") -> Event:
    return Event("src", "test", "call.started", subject, datetime(2026, 1, 1, tzinfo=UTC), {"raw": {"n": n}})


@pytest.fixture
async def setup(tmp_path: Path):  # type: ignore[no-untyped-def]
    box = AsyncOutbox(Outbox(tmp_path / "o.sqlite3"))
    await box.open()
    box.sync.set_sinks(["a", "b"])
    committer = Committer(box)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(committer.run)
        yield box, committer
        committer.close()
    await box.close()


async def committed(committer: Committer, n: int, start: int = 0) -> None:
    await committer.emit("src", [event(start + i, f"s{(start + i) % 7}") for i in range(n)], durable=True)


async def test_pushed_rows_are_served_without_reading_the_outbox(setup) -> None:  # type: ignore[no-untyped-def]
    box, committer = setup
    feed = SinkFeed(box, committer.new_data, "a")
    assert list(await feed.window()) == [] and feed.reads == 1  # start: read the outbox once
    await committed(committer, 50)
    rows = list(await feed.window())
    assert [r.seq for r in rows] == list(range(1, 51)) and feed.reads == 1
    # The same body object the committer encoded: encoded once, shared, never re-read.
    other = SinkFeed(box, committer.new_data, "b")
    await other.window()
    await committed(committer, 1, 50)
    (mine,) = [r for r in await feed.window() if r.seq == 51]
    (theirs,) = [r for r in await other.window() if r.seq == 51]
    assert mine.body is theirs.body and mine is not theirs


async def test_outcomes_change_the_window_at_once_and_reach_disk_in_one_write(setup) -> None:  # type: ignore[no-untyped-def]
    box, committer = setup
    feed = SinkFeed(box, committer.new_data, "a")
    await feed.window()
    await committed(committer, 5)
    rows = list(await feed.window())
    feed.mark_delivered(rows[:2])
    feed.mark_retry(rows[2], next_at=1e12, status=503, error="HTTP 503")
    feed.mark_dead(rows[3], status=400, error="HTTP 400")
    assert [r.seq for r in await feed.window()] == [3, 5]
    assert rows[2].attempts == 1 and rows[2].next_at == 1e12
    writes = 0
    settle = box.sync.settle

    def counting(*args):  # type: ignore[no-untyped-def]
        nonlocal writes
        writes += 1
        return settle(*args)

    box.sync.settle = counting  # type: ignore[method-assign]
    await feed.flush()
    assert writes == 1
    on_disk = box.sync.pending("a", 10)
    assert [(r.seq, r.attempts, r.next_at) for r in on_disk] == [(3, 1, 1e12), (5, 0, 0.0)]
    assert [r["seq"] for r in box.sync.deliveries(sink="a", state=2)] == [4]


async def test_a_full_window_falls_back_to_reading_pages(setup, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(base, "WINDOW_MAX", 40)
    monkeypatch.setattr(base, "WINDOW_LOW", 20)
    monkeypatch.setattr(base, "PAGE", 16)
    box, committer = setup
    feed = SinkFeed(box, committer.new_data, "a")
    await feed.window()
    await committed(committer, 100)
    seen: list[int] = []
    while True:
        rows = list(await feed.window())
        assert len(rows) <= 40 + 16  # a window holds at most WINDOW_MAX + one page
        if not rows:
            break
        feed.mark_delivered(rows[:15])
        seen.extend(r.seq for r in rows[:15])
    assert seen == list(range(1, 101))  # nothing skipped at the gap, nothing twice
    assert feed.reads > 2


async def test_a_requeue_by_another_process_is_seen(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    box, committer = setup
    feed = SinkFeed(box, committer.new_data, "a")
    await feed.window()
    await committed(committer, 3)
    feed.mark_dead(next(iter(await feed.window())), status=400, error="x")
    await feed.flush()
    assert [r.seq for r in await feed.window()] == [2, 3]
    other = Outbox(tmp_path / "o.sqlite3")  # what `event-bridge dlq retry` does
    other.open()
    assert other.requeue("a", [1]) == 1
    other.close()
    await trio.sleep(base.CHECK_EVERY + 0.05)
    assert [r.seq for r in await feed.window()] == [1, 2, 3]


async def test_a_new_feed_after_restart_reads_what_is_pending(setup) -> None:  # type: ignore[no-untyped-def]
    box, committer = setup
    await committed(committer, 4)  # nobody subscribed: nothing pushed
    feed = SinkFeed(box, committer.new_data, "b")
    assert [r.seq for r in await feed.window()] == [1, 2, 3, 4]
    assert await feed.pending(2, after_seq=1) == list(await feed.window())[1:3]
