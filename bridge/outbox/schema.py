"""The outbox's tables, and the connection settings that keep insert cost flat.

Every index but one appends: ``events`` is keyed by its sequence number (commit order),
``events_received`` grows with time, ``deliveries`` is keyed by (sink, seq). The one that
does not is ``ordinals`` (a content digest per source, bounded by retention): its lookups
are batched per commit. The page cache is sized so that the pages inserts touch stay in
memory however much history is stored.
"""

from __future__ import annotations

import sqlite3

# Sized for the pages every insert touches (the interior pages of each B-tree and the
# right edges that grow), not for the whole file: 4 MiB holds them at millions of rows
# (commit latency with 1,000,000 stored stayed within the bench's noise of a fresh
# outbox). No memory map: mapped pages count in the process's RSS (a 256 MiB map and a
# 64 MiB cache took the bench's 10,000-device run from 88 to 324 MB).
CACHE_KIB = 4096
WAL_LIMIT = 67_108_864  # the WAL file is truncated to this after a checkpoint

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    source TEXT NOT NULL,
    type TEXT NOT NULL,
    subject TEXT,
    received_at REAL NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS events_received ON events(received_at);
CREATE TABLE IF NOT EXISTS deliveries (
    sink TEXT NOT NULL,
    seq INTEGER NOT NULL,
    state INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL DEFAULT 0,
    first_failed_at REAL,
    last_status INTEGER,
    last_error TEXT,
    updated_at REAL,
    PRIMARY KEY (sink, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS deliveries_by_state ON deliveries(sink, state, seq);
CREATE TABLE IF NOT EXISTS source_state (
    source TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (source, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ordinals (
    source TEXT NOT NULL,
    digest TEXT NOT NULL,
    count INTEGER NOT NULL,
    last_seen REAL NOT NULL,
    PRIMARY KEY (source, digest)
) WITHOUT ROWID;
-- A random-key index (a UUID per event) made every insert touch a random B-tree page,
-- so its cost grew with history; lookups by id go through the (small) dead-letter set.
DROP INDEX IF EXISTS events_id;
"""


def configure(conn: sqlite3.Connection, synchronous: str) -> None:
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
    conn.execute("PRAGMA foreign_keys=OFF")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
    conn.execute(f"PRAGMA journal_size_limit={WAL_LIMIT}")
    conn.executescript(SCHEMA)
