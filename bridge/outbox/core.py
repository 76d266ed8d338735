"""The outbox core: open, commit events (ids assigned in the transaction), read and settle.

All SQLite work runs in one worker thread, one operation at a time, on one connection
(:class:`bridge.outbox.aio.AsyncOutbox`); short reads may run on the event loop.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson

from bridge import fsmode
from bridge.errors import OutboxUnavailable
from bridge.model import event_id
from bridge.outbox.schema import configure
from bridge.outbox.types import Pending, Row, Settlements

ORDINAL_CACHE_SIZE = 20_000  # recent contents whose repeat count stays in memory


def encode_event(envelope: dict[str, Any]) -> bytes:
    """The stored (and sent) bytes of one CloudEvent: compact UTF-8 JSON, encoded once.

    orjson is about 4x faster than the json module here (the encoding was ~21 % of the
    ingest profile) and produces the same bytes for what events hold; what it refuses
    (integers beyond 64 bits, non-string keys) falls back to the json module.
    """
    try:
        # orjson's bytes keep the capacity of its working buffer (8-16 KiB for a 1 KiB
        # event): 8,192 bodies in a sink's window held 127 MiB. A copy is exact size.
        return bytes(memoryview(orjson.dumps(envelope)))
    except TypeError:
        return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode()


class OutboxCore:
    """Synchronous SQLite operations; use through :class:`AsyncOutbox` from trio code."""

    def __init__(self, path: Path, *, synchronous: str = "full") -> None:
        self.path = path
        self.synchronous = synchronous
        self.conn: sqlite3.Connection | None = None
        self.sinks: list[str] = []
        self._ordinal_cache: OrderedDict[tuple[str, str], int] = OrderedDict()
        self.generation = 0  # bumped by requeue/drop/purge: sink windows re-read

    # -- lifecycle -------------------------------------------------------
    def open(self) -> None:
        fsmode.ensure_private_file(self.path)  # 0600 (SQLite gives -wal/-shm the same), dir 0700
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        try:
            configure(conn, self.synchronous)
        except sqlite3.Error:
            conn.close()
            raise
        self.conn = conn

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    @property
    def db(self) -> sqlite3.Connection:
        if self.conn is None:
            raise RuntimeError("outbox is not open")
        return self.conn

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One explicit transaction.

        The connection is in autocommit mode (``isolation_level=None``), where
        ``with conn:`` does not BEGIN: every statement of an ``executemany`` would be a
        transaction of its own, each with its own fsync.
        """
        db = self.db
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            # Every outbox write failure is one error for the callers: disk, lock, I/O.
            raise OutboxUnavailable(f"{self.path}: {exc}") from exc

    @contextlib.contextmanager
    def _relaxed_sync(self) -> Iterator[None]:
        if self.synchronous != "full":
            yield
            return
        self.db.execute("PRAGMA synchronous=NORMAL")
        try:
            yield
        finally:
            self.db.execute("PRAGMA synchronous=FULL")

    def set_sinks(self, names: Iterable[str]) -> None:
        """The sinks that get a delivery row for each new event from now on."""
        self.sinks = list(names)

    # -- writing ---------------------------------------------------------
    def _load_ordinals(self, keys: set[tuple[str, str]]) -> dict[tuple[str, str], int]:
        """Repeat counts of ``keys``: from the cache, the rest in one query per 500 keys
        (one statement per event was the largest SQL cost of a commit)."""
        found: dict[tuple[str, str], int] = {}
        missing: dict[str, list[str]] = {}
        cache = self._ordinal_cache
        for key in keys:
            count = cache.get(key)
            if count is None:
                missing.setdefault(key[0], []).append(key[1])
            else:
                cache.move_to_end(key)
                found[key] = count
        for source, wanted in missing.items():
            for i in range(0, len(wanted), 500):
                chunk = wanted[i : i + 500]
                marks = ",".join("?" * len(chunk))
                rows = self.db.execute(
                    f"SELECT digest, count FROM ordinals WHERE source=? AND digest IN ({marks})",
                    (source, *chunk),
                )
                for digest, count in rows:
                    found[(source, digest)] = count
        return found

    def _ordinal(self, key: tuple[str, str]) -> int:
        """How many events with this content the source had before (cached, bounded)."""
        count = self._ordinal_cache.get(key)
        if count is None:
            row = self.db.execute("SELECT count FROM ordinals WHERE source=? AND digest=?", key).fetchone()
            count = row[0] if row else 0
        else:
            self._ordinal_cache.move_to_end(key)
        return count

    def commit(self, batch: Sequence[Pending]) -> list[int]:
        """Record a batch in one transaction; returns the new seqs. Raises OutboxUnavailable."""
        rows, _ = self.commit_rows(batch)
        return [r.seq for r in rows]

    def commit_rows(self, batch: Sequence[Pending]) -> tuple[list[Row], list[str]]:
        """Record a batch in one transaction; returns its rows and the sinks they are for.

        One INSERT statement per table for the whole batch: seqs are assigned here from
        sqlite_sequence (the transaction holds the write lock, so nobody else can).
        """
        now = time.time()
        db = self.db
        ordinals: dict[tuple[str, str], int] = {}
        digests = [[event.digest() for event in item.events] for item in batch]  # before the lock
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute("SELECT seq FROM sqlite_sequence WHERE name='events'").fetchone()
                seq = row[0] if row else 0
                known = self._load_ordinals(
                    {(item.source, d) for item, ds in zip(batch, digests, strict=True) for d in ds}
                )
                event_rows: list[tuple[Any, ...]] = []
                for item, item_digests in zip(batch, digests, strict=True):
                    for event, digest in zip(item.events, item_digests, strict=True):
                        key = (item.source, digest)
                        ordinal = ordinals.get(key)
                        if ordinal is None:
                            ordinal = known.get(key, 0)
                        ordinals[key] = ordinal + 1
                        eid = event_id(digest, ordinal)
                        body = encode_event(event.to_cloudevent(eid))
                        seq += 1
                        event_rows.append(
                            (seq, eid, item.source, event.type, event.subject, item.received_at, body)
                        )
                db.executemany(
                    "INSERT INTO events(seq, id, source, type, subject, received_at, body) VALUES "
                    "(?,?,?,?,?,?,?)",
                    event_rows,
                )
                db.executemany(
                    "INSERT INTO deliveries(sink, seq) VALUES (?,?)",
                    [(sink, r[0]) for r in event_rows for sink in self.sinks],
                )
                db.executemany(
                    "INSERT INTO ordinals(source, digest, count, last_seen) VALUES (?,?,?,?) "
                    "ON CONFLICT(source, digest) DO UPDATE SET count=excluded.count, "
                    "last_seen=excluded.last_seen",
                    [(source, digest, count, now) for (source, digest), count in ordinals.items()],
                )
                for item in batch:
                    for key_, value in (item.state or {}).items():
                        if value is None:
                            db.execute(
                                "DELETE FROM source_state WHERE source=? AND key=?", (item.source, key_)
                            )
                        else:
                            db.execute(
                                "INSERT INTO source_state(source, key, value) VALUES (?,?,?) "
                                "ON CONFLICT(source, key) DO UPDATE SET value=excluded.value",
                                (item.source, key_, value),
                            )
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise OutboxUnavailable(f"{self.path}: {exc}") from exc
        sinks = list(self.sinks)
        for key, count in ordinals.items():
            self._ordinal_cache[key] = count
            self._ordinal_cache.move_to_end(key)
        while len(self._ordinal_cache) > ORDINAL_CACHE_SIZE:
            self._ordinal_cache.popitem(last=False)
        return [Row(*r) for r in event_rows], sinks

    # -- source state ------------------------------------------------------
    def load_state(self, source: str) -> dict[str, str]:
        rows = self.db.execute("SELECT key, value FROM source_state WHERE source=?", (source,))
        return dict(rows.fetchall())

    # -- sink side ---------------------------------------------------------
    def changes(self) -> tuple[int, int]:
        """Changes a sink's window cannot know of: (SQLite data_version, which moves when
        another connection commits, e.g. ``dlq retry`` / ``replay``; this process's
        requeues, drops and purges)."""
        return self.db.execute("PRAGMA data_version").fetchone()[0], self.generation

    def pending(self, sink: str, limit: int, after_seq: int = 0) -> list[Row]:
        rows = self.db.execute(
            "SELECT e.seq, e.id, e.source, e.type, e.subject, e.received_at, e.body, "
            "d.attempts, d.next_at, d.first_failed_at "
            "FROM deliveries d JOIN events e ON e.seq = d.seq "
            "WHERE d.sink=? AND d.state=0 AND d.seq>? ORDER BY d.seq LIMIT ?",
            (sink, after_seq, limit),
        ).fetchall()
        return [Row(*r) for r in rows]

    def settle(self, sink: str, outcomes: Settlements) -> None:
        """Record many delivery outcomes in one transaction.

        Without an fsync of its own: a delivery mark lost to a power cut means one more
        delivery of an event the receiver has (at-least-once allows that), and the next
        event commit's fsync makes these marks durable anyway.
        """
        now = time.time()
        with self._relaxed_sync(), self._transaction():
            self.db.executemany(
                "UPDATE deliveries SET state=1, attempts=attempts+1, updated_at=?, last_error=NULL "
                "WHERE sink=? AND seq=?",
                [(now, sink, s) for s in outcomes.delivered],
            )
            self.db.executemany(
                "UPDATE deliveries SET state=3, updated_at=? WHERE sink=? AND seq=?",
                [(now, sink, s) for s in outcomes.skipped],
            )
            self.db.executemany(
                "UPDATE deliveries SET attempts=attempts+1, next_at=?, last_status=?, last_error=?, "
                "updated_at=?, first_failed_at=COALESCE(first_failed_at, ?) WHERE sink=? AND seq=?",
                [
                    (next_at, status, error, now, now, sink, s)
                    for s, next_at, status, error in outcomes.retries
                ],
            )
            self.db.executemany(
                "UPDATE deliveries SET state=2, attempts=attempts+1, last_status=?, last_error=?, "
                "updated_at=?, first_failed_at=COALESCE(first_failed_at, ?) WHERE sink=? AND seq=?",
                [(status, error, now, now, sink, s) for s, status, error in outcomes.dead],
            )

    def probe_writable(self) -> None:
        """Raise OutboxUnavailable when a write transaction cannot be committed."""
        with self._transaction():
            self.db.execute("INSERT INTO source_state VALUES ('~probe', 'probe', ?)", (str(time.time()),))
            self.db.execute("DELETE FROM source_state WHERE source='~probe'")
