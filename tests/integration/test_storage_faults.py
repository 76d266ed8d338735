"""Storage faults: a full outbox stops acknowledging (never drops, never pretends),
reports not-ready with the reason, and resumes by itself when space returns.

"Full" is SQLite's own SQLITE_FULL, produced by capping the database's page count
(``PRAGMA max_page_count``): the same error path a full disk takes.
"""

from __future__ import annotations

from pathlib import Path

from bridge.admin.app import readiness
from bridge.admin.cache import AdminCache
from bridge.simulators.uptivity import UptivitySimulator
from tests.support.helpers import LogCapture, read_jsonl, running_bridge, wait_for, write_config


def cap_pages(outbox, extra: int | None) -> None:
    db = outbox.db
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count = {pages + extra if extra is not None else 1073741823}")


async def test_full_outbox_holds_events_reports_not_ready_and_resumes(
    tmp_path: Path, nursery, log_capture: LogCapture
) -> None:
    sim = UptivitySimulator(rate=500, count=600, numbered=True, devices=4)
    sim_port = await nursery.start(sim.serve)
    config = write_config(
        tmp_path,
        f"""
        [bridge]
        state_dir = "{tmp_path / "state"}"
        [[sources.uptivity]]
        name = "up"
        host = "127.0.0.1"
        port = {sim_port}
        [[sinks.log]]
        name = "log"
        path = "{tmp_path / "events.jsonl"}"
        """,
    )
    async with running_bridge(config) as bridge:
        await wait_for(lambda: bridge.committer.committed >= 50)
        await bridge.outbox.call(cap_pages, bridge.outbox.sync, 0)  # the disk is now full
        await wait_for(lambda: bridge.committer.unavailable)
        assert "full" in bridge.committer.unavailable
        cache = AdminCache(bridge)
        await cache.refresh()
        ready, detail = readiness(bridge, cache)
        assert not ready and not detail["outbox"]["ok"] and "full" in detail["outbox"]["detail"]
        held_at = bridge.committer.committed
        await wait_for(lambda: sim.produced >= 400)
        assert bridge.committer.committed == held_at  # nothing acknowledged while full
        await bridge.outbox.call(cap_pages, bridge.outbox.sync, None)  # space returns
        await wait_for(lambda: bridge.committer.unavailable is None)
        await wait_for(lambda: len(read_jsonl(tmp_path / "events.jsonl")) >= 600, timeout=30)
        await cache.refresh()
        ready, _ = readiness(bridge, cache)
        assert ready
    numbers = [int(e["data"]["raw"]["EVENTXREF"]) for e in read_jsonl(tmp_path / "events.jsonl")]
    assert numbers == list(range(1, 601))  # held, not dropped, and in order
    assert log_capture.events("outbox_commit_failed") and log_capture.events("outbox_commit_recovered")
    assert sim.connections == 1
