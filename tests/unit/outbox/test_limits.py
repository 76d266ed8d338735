"""Outbox disk rules: expiry, dead-letter pruning, the size limit, purge, error mapping."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import trio

from bridge.committer import Committer
from bridge.model import Event
from bridge.outbox import (
    DEAD,
    AsyncOutbox,
    Limits,
    Outbox,
    OutboxFull,
    OutboxUnavailable,
    Pending,
    Settlements,
)
from tests.support.helpers import write_config


def event(n: int) -> Event:
    return Event(
        "src",
        "test",
        "call.started",
        f"s{n}",
        datetime(2026, 1, 1, tzinfo=UTC),
        {"raw": {"n": n, "pad": "x" * 400}},
    )


def commit(box: Outbox, n: int, received_at: float, start: int = 0) -> list[int]:
    return box.commit([Pending("src", [event(start + i) for i in range(n)], None, received_at, None)])


def open_box(path: Path, **limits: float) -> Outbox:
    box = Outbox(path, limits=Limits(**limits))  # type: ignore[arg-type]
    box.open()
    box.set_sinks(["a", "b"])
    return box


def test_write_failures_are_outbox_unavailable_not_sqlite_errors(tmp_path: Path) -> None:
    box = open_box(tmp_path / "o.db")
    seqs = commit(box, 3, 1000.0)
    delivered = commit(box, 2, 1000.0, start=3)
    box.settle("a", Settlements(delivered=delivered))
    box.settle("b", Settlements(delivered=delivered))  # so that prune has work to do
    box.conn.close()  # type: ignore[union-attr]
    box.conn = sqlite3.connect(f"file:{box.path}?mode=ro", uri=True, isolation_level=None)
    for write in (
        lambda: box.settle("a", Settlements(delivered=seqs)),
        lambda: box.requeue("a", seqs),
        lambda: box.drop("a", seqs),
        lambda: box.prune(0),
        lambda: box.maintain(),
        lambda: box.purge_sink("a"),
        lambda: commit(box, 1, 1000.0),
    ):
        with pytest.raises(OutboxUnavailable):
            write()


def test_a_delivery_pending_too_long_is_dead_lettered_with_a_reason_never_dropped(tmp_path: Path) -> None:
    box = open_box(tmp_path / "o.db", max_pending_age=100.0)
    old = commit(box, 3, 1000.0)
    new = commit(box, 2, 5000.0, start=3)
    box.settle("b", Settlements(delivered=old))
    result = box.maintain(now=5050.0)
    assert result.expired == {"a": 3}
    dead = box.deliveries(sink="a", state=DEAD)
    assert [d["seq"] for d in dead] == old and all("expired" in d["last_error"] for d in dead)
    assert [r.seq for r in box.pending("a", 10)] == new
    assert box.stats()["events"] == 5  # the events stay while a dead letter needs them


def test_dead_letters_are_deleted_after_dead_retention_then_their_events(tmp_path: Path) -> None:
    box = open_box(tmp_path / "o.db", dead_retention=10.0, retention=10.0, max_pending_age=0)
    seqs = commit(box, 2, 1000.0)
    box.settle("a", Settlements(dead=[(s, 400, "bad") for s in seqs]))
    box.settle("b", Settlements(delivered=seqs))
    box.db.execute("UPDATE deliveries SET updated_at=1000")
    result = box.maintain(now=2000.0)
    assert result.dead_pruned == 2 and result.deleted == 2
    assert box.stats()["events"] == 0


def test_full_outbox_prunes_delivered_early_and_refuses_when_only_pending_is_left(tmp_path: Path) -> None:
    box = open_box(tmp_path / "o.db", retention=1e9, max_pending_age=0)
    delivered = commit(box, 400, 1000.0)
    box.settle("a", Settlements(delivered=delivered))
    box.settle("b", Settlements(delivered=delivered))
    size = box.size()
    box.limits = Limits(retention=1e9, max_pending_age=0, max_bytes=size)
    commit(box, 1, 2000.0, start=400)  # delivered events (inside retention) made room
    assert box.stats()["events"] < 400
    pending = commit(box, 0, 2000.0)
    assert pending == []
    box.limits = Limits(retention=1e9, max_pending_age=0, max_bytes=box.size() // 4)
    with pytest.raises(OutboxFull, match="events are held, not dropped"):
        commit(box, 1, 3000.0, start=500)
    assert len(box.pending("a", 1000)) == 1  # the pending one survived


async def test_the_committer_holds_events_while_full_and_commits_them_after(tmp_path: Path) -> None:
    box = AsyncOutbox(open_box(tmp_path / "o.db"))
    committer = Committer(box)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(committer.run)
        await committer.emit("src", [event(1)], durable=True)
        box.sync.limits = Limits(max_bytes=1, max_pending_age=0)
        done = trio.Event()

        async def emit() -> None:
            await committer.emit("src", [event(2)], durable=True)
            done.set()

        nursery.start_soon(emit)
        with trio.fail_after(10):
            while committer.unavailable is None:
                await trio.sleep(0.01)
        assert "outbox full" in committer.unavailable and not done.is_set()
        box.sync.limits = Limits(max_pending_age=0)  # e.g. space freed, limit raised
        with trio.fail_after(20):
            await done.wait()
        assert committer.unavailable is None
        committer.close()
    assert [r.seq for r in box.sync.pending("a", 10)] == [1, 2]
    box.sync.close()


def test_purge_sink_command_removes_a_removed_sinks_rows(tmp_path: Path) -> None:
    state = tmp_path / "state"
    box = open_box(state / "outbox.sqlite3")
    box.set_sinks(["gone", "kept"])
    commit(box, 5, 1000.0)
    box.close()
    config = write_config(
        tmp_path,
        f"""
[bridge]
state_dir = "{state}"
timezone = "UTC"

[[sources.uptivity]]
name = "up"
host = "127.0.0.1"

[[sinks.log]]
name = "kept"
stdout = true
""",
    )

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "bridge", "outbox", "purge-sink", *args, "--config", str(config)]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60)

    refused = run("kept", "--yes")
    assert refused.returncode == 2 and "still configured" in refused.stdout
    dry = run("gone")
    assert dry.returncode == 1 and "5 pending" in dry.stdout
    done = run("gone", "--yes")
    assert done.returncode == 0 and "deleted 5 row(s)" in done.stdout, done.stdout + done.stderr
    box = open_box(state / "outbox.sqlite3")
    assert box.sink_rows("gone") == {} and box.sink_rows("kept") == {"pending": 5}
    box.close()
