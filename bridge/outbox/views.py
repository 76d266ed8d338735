"""What operators and their commands read and change: dlq, replay, tail, stats."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bridge.outbox.core import OutboxCore
from bridge.outbox.types import STATE_NAMES


class OperatorViews(OutboxCore):
    def deliveries(
        self,
        *,
        sink: str | None = None,
        state: int | None = None,
        ids: Sequence[str] = (),
        since: float | None = None,
        until: float | None = None,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        where: list[str] = ["1=1"]
        args: list[Any] = []
        if sink is not None:
            where.append("d.sink=?")
            args.append(sink)
        if state is not None:
            where.append("d.state=?")
            args.append(state)
        if ids:
            where.append(f"e.id IN ({','.join('?' * len(ids))})")
            args.extend(ids)
        if since is not None:
            where.append("e.received_at>=?")
            args.append(since)
        if until is not None:
            where.append("e.received_at<?")
            args.append(until)
        rows = self.db.execute(
            "SELECT d.sink, e.seq, e.id, e.source, e.type, e.subject, e.received_at, d.state, "
            "d.attempts, d.last_status, d.last_error, d.updated_at FROM deliveries d "
            f"JOIN events e ON e.seq=d.seq WHERE {' AND '.join(where)} ORDER BY e.seq LIMIT ?",
            (*args, limit),
        ).fetchall()
        keys = (
            "sink", "seq", "id", "source", "type", "subject", "received_at", "state",
            "attempts", "last_status", "last_error", "updated_at",
        )  # fmt: skip
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def requeue(self, sink: str, seqs: Sequence[int]) -> int:
        """Make deliveries pending again (dlq retry, replay); the event id stays the same."""
        with self._transaction():
            cur = self.db.executemany(
                "INSERT INTO deliveries(sink, seq) VALUES (?,?) ON CONFLICT(sink, seq) DO UPDATE SET "
                "state=0, next_at=0, attempts=0, first_failed_at=NULL, last_error=NULL, last_status=NULL",
                [(sink, s) for s in seqs],
            )
        self.generation += 1
        return cur.rowcount

    def drop(self, sink: str, seqs: Sequence[int]) -> int:
        with self._transaction():
            cur = self.db.executemany(
                "DELETE FROM deliveries WHERE sink=? AND seq=? AND state=2", [(sink, s) for s in seqs]
            )
        self.generation += 1
        return cur.rowcount

    def seqs_since(self, since: float, until: float | None = None) -> list[int]:
        sql, args = "SELECT seq FROM events WHERE received_at>=?", [since]
        if until is not None:
            sql += " AND received_at<?"
            args.append(until)
        return [r[0] for r in self.db.execute(sql + " ORDER BY seq", args)]

    def stats(self) -> dict[str, Any]:
        """Backlog per sink and state, and the age of the oldest pending event."""
        counts: dict[str, dict[str, int]] = {}
        for sink, state, n in self.db.execute(
            "SELECT sink, state, count(*) FROM deliveries GROUP BY sink, state"
        ):
            counts.setdefault(sink, {})[STATE_NAMES.get(state, str(state))] = n
        oldest = {}
        for sink, received in self.db.execute(
            "SELECT d.sink, min(e.received_at) FROM deliveries d JOIN events e ON e.seq=d.seq "
            "WHERE d.state=0 GROUP BY d.sink"
        ):
            oldest[sink] = received
        total = self.db.execute("SELECT count(*) FROM events").fetchone()[0]
        return {"events": total, "deliveries": counts, "oldest_pending": oldest}

    # -- tail ----------------------------------------------------------------------------
    def last_seq(self) -> int:
        """The newest event's seq (0 for an empty outbox)."""
        row = self.db.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()
        return int(row[0])

    def events_after(self, seq: int, limit: int = 1000) -> list[tuple[int, str, str, str | None, bytes]]:
        """(seq, source, type, subject, body) of events committed after ``seq``, in order."""
        rows = self.db.execute(
            "SELECT seq, source, type, subject, body FROM events WHERE seq>? ORDER BY seq LIMIT ?",
            (seq, limit),
        ).fetchall()
        return [
            (s, src, t, subj, bytes(body) if not isinstance(body, bytes) else body)
            for s, src, t, subj, body in rows
        ]

    # -- a removed sink ----------------------------------------------------------------------
    def sink_rows(self, sink: str) -> dict[str, int]:
        """How many delivery rows ``sink`` has, per state."""
        counts: dict[str, int] = {}
        for state, n in self.db.execute(
            "SELECT state, count(*) FROM deliveries WHERE sink=? GROUP BY state", (sink,)
        ):
            counts[STATE_NAMES.get(state, str(state))] = n
        return counts

    def purge_sink(self, sink: str, step: int = 5000) -> int:
        """Delete up to ``step`` of ``sink``'s delivery rows (any state); call until 0.

        Events no other sink needs are then removed by the normal retention rule.
        """
        with self._transaction() as db:
            cur = db.execute(
                "DELETE FROM deliveries WHERE sink=? AND seq IN "
                "(SELECT seq FROM deliveries WHERE sink=? ORDER BY seq LIMIT ?)",
                (sink, sink, step),
            )
        self.generation += 1
        return int(cur.rowcount)
