"""Disk bounds of the outbox: retention, expiry, dead-letter pruning and the size limit.

The rules, applied in small steps (a few thousand rows per transaction, so commits are
never held up for long) by the committer's maintenance loop:

* an event every sink has delivered (or skipped) is deleted ``retention`` after it was
  received;
* a delivery still pending ``max_pending_age`` after its event was received is
  dead-lettered with the error ``expired`` (logged, and listed by ``dlq list``): a sink
  that never recovers cannot hold events forever, and nothing vanishes unseen;
* a dead letter is deleted ``dead_retention`` after it died;
* when the outbox's database pages in use reach ``max_bytes``, delivered events are deleted
  oldest first even inside their retention; if that frees nothing, commits stop: the
  bridge stops acknowledging (reading) its sources and reports not-ready until sinks
  deliver, a removed sink is purged (``event-bridge outbox purge-sink NAME``) or the
  limit is raised. Pending events are never dropped to make room.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from bridge.errors import OutboxUnavailable
from bridge.outbox.core import OutboxCore

STEP = 2000  # rows per maintenance transaction
SIZE_CHECK_EVERY = 1.0  # seconds between size measurements on the commit path
ORDINALS_EVERY = 3600.0  # seconds between prunes of the (large, unordered) ordinals table


class OutboxFull(OutboxUnavailable):
    """The outbox reached ``[outbox] max_bytes`` and pruning cannot free space."""


@dataclass(frozen=True)
class Limits:
    retention: float = 7 * 86400.0
    max_pending_age: float = 14 * 86400.0  # 0: never expire
    dead_retention: float = 30 * 86400.0  # 0: keep forever
    max_bytes: int = 0  # 0: no limit

    @classmethod
    def of(cls, settings: Any) -> Limits:
        """From :class:`bridge.config.OutboxSettings` (or anything with the same names)."""
        return cls(**{k: getattr(settings, k) for k in cls.__dataclass_fields__ if hasattr(settings, k)})


@dataclass
class StepResult:
    deleted: int = 0
    expired: dict[str, int] | None = None
    dead_pruned: int = 0
    more: bool = False  # a step was full: call again soon


class LimitsMixin(OutboxCore):
    limits: Limits
    _size_checked: float
    _size: int
    _ordinals_pruned: float

    # -- size ----------------------------------------------------------------------
    def size(self) -> int:
        """Bytes of database pages in use (what deleting rows gives back; the WAL beside
        it is kept below ``schema.WAL_LIMIT`` after each checkpoint)."""
        db = self.db
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        free = db.execute("PRAGMA freelist_count").fetchone()[0]
        page = db.execute("PRAGMA page_size").fetchone()[0]
        self._size = (pages - free) * page
        self._size_checked = time.monotonic()
        return self._size

    def is_full(self, *, fresh: bool = False) -> bool:
        limit = self.limits.max_bytes
        if not limit:
            return False
        if fresh or time.monotonic() - self._size_checked >= SIZE_CHECK_EVERY:
            self.size()
        return self._size >= limit

    def check_room(self) -> None:
        """Called before a commit: raise :class:`OutboxFull` when over ``max_bytes``."""
        if self.is_full():
            self.maintain()  # delete what may go, then measure again
            if self.is_full(fresh=True):
                raise OutboxFull(
                    f"{self.path}: outbox full ({self._size:,} of max_bytes {self.limits.max_bytes:,} "
                    "bytes); events are held, not dropped: fix the failing sink, purge a removed one "
                    "(event-bridge outbox purge-sink NAME) or raise [outbox] max_bytes"
                )

    # -- the steps ---------------------------------------------------------------------
    def sinks_present(self) -> list[str]:
        """Every sink with rows (configured or not): a skip scan over the primary key."""
        found: list[str] = []
        row = self.db.execute("SELECT min(sink) FROM deliveries").fetchone()
        while row and row[0] is not None:
            found.append(row[0])
            row = self.db.execute("SELECT min(sink) FROM deliveries WHERE sink>?", (row[0],)).fetchone()
        return found

    def maintain(self, now: float | None = None) -> StepResult:
        """One bounded step of every rule above."""
        now = time.time() if now is None else now
        lim = self.limits
        result = StepResult()
        sinks = self.sinks_present()
        with self._transaction() as db:
            if lim.max_pending_age:
                result.expired = self._expire(db, sinks, now - lim.max_pending_age, now)
                result.more |= any(n >= STEP for n in result.expired.values())
            if lim.dead_retention:
                result.dead_pruned = self._prune_dead(db, sinks, now - lim.dead_retention)
                result.more |= result.dead_pruned >= STEP
            cutoff = now - lim.retention
            if lim.max_bytes and self.is_full():
                cutoff = now  # full: delivered events go early, oldest first
            result.deleted = self._prune_events(db, sinks, cutoff)
            result.more |= result.deleted >= STEP
            if now - self._ordinals_pruned >= ORDINALS_EVERY:
                db.execute("DELETE FROM ordinals WHERE last_seen<?", (now - lim.retention,))
                self._ordinals_pruned = now
                self._ordinal_cache.clear()
        if result.deleted or result.dead_pruned:
            self.size()
        if result.expired and any(result.expired.values()):
            self.generation += 1  # sink windows re-read what is still pending
        return result

    def prune(self, retention: float | None = None) -> int:
        """One bounded prune of delivered events older than ``retention``; returns events deleted."""
        sinks = self.sinks_present()
        cutoff = time.time() - (self.limits.retention if retention is None else retention)
        with self._transaction() as db:
            deleted = self._prune_events(db, sinks, cutoff)
        return deleted

    def _expire(self, db: Any, sinks: list[str], cutoff: float, now: float) -> dict[str, int]:
        row = db.execute(
            "SELECT seq FROM events WHERE received_at<? ORDER BY received_at DESC LIMIT 1", (cutoff,)
        ).fetchone()
        if row is None:
            return {}
        last = row[0]
        expired: dict[str, int] = {}
        for sink in sinks:
            first = db.execute(
                "SELECT seq FROM deliveries WHERE sink=? AND state=0 ORDER BY seq LIMIT 1", (sink,)
            ).fetchone()
            if first is None or first[0] > last:
                continue
            upper = min(last, first[0] + STEP)
            cur = db.execute(
                "UPDATE deliveries SET state=2, last_status=NULL, updated_at=?, "
                "first_failed_at=COALESCE(first_failed_at, ?), last_error=? "
                "WHERE sink=? AND state=0 AND seq BETWEEN ? AND ?",
                (now, now, f"expired: still pending after max_pending_age "
                    f"({self.limits.max_pending_age:g} s)",
                 sink, first[0], upper),
            )  # fmt: skip
            if cur.rowcount:
                expired[sink] = cur.rowcount
        return expired

    def _prune_dead(self, db: Any, sinks: list[str], cutoff: float) -> int:
        total = 0
        for sink in sinks:
            cur = db.execute(
                "DELETE FROM deliveries WHERE sink=? AND state=2 AND seq IN "
                "(SELECT seq FROM deliveries WHERE sink=? AND state=2 AND updated_at<? LIMIT ?)",
                (sink, sink, cutoff, STEP),
            )
            total += cur.rowcount
        return total

    def _prune_events(self, db: Any, sinks: list[str], cutoff: float) -> int:
        """Delete the oldest events received before ``cutoff`` that no sink still needs."""
        needed = " ".join(
            "AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.sink=? AND d.seq=e.seq AND d.state IN (0, 2))"
            for _ in sinks
        )
        doomed = [
            r[0]
            for r in db.execute(
                f"SELECT seq FROM events e WHERE received_at<? {needed} ORDER BY received_at LIMIT ?",
                (cutoff, *sinks, STEP),
            )
        ]
        if doomed:
            for sink in sinks:
                db.executemany("DELETE FROM deliveries WHERE sink=? AND seq=?", [(sink, s) for s in doomed])
            db.executemany("DELETE FROM events WHERE seq=?", [(s,) for s in doomed])
        return len(doomed)
