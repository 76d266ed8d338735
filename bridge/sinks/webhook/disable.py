"""Auto-disable of a failing endpoint, and the enabled state that survives restarts.

:class:`AutoDisable` is pure (times are passed in). An endpoint is disabled when

* it has failed without a single success for ``disable_after`` seconds (default 5 days,
  as Svix: the clock starts at the first failure after a success), or
* ``disable_after_failures`` requests in a row failed (0 = off; Outpost's
  ``ALERT_CONSECUTIVE_FAILURE_COUNT`` with auto-disable), or
* it answered ``410 Gone`` (see :mod:`.policy`), or an operator ran
  ``event-bridge endpoint disable NAME``.

A disabled endpoint is sent nothing; its events stay pending in the outbox, and
``event-bridge endpoint enable NAME`` resumes it where it stopped, in order.

The state lives in the outbox's ``source_state`` table under the pseudo-source
``endpoint:<name>`` (one JSON value), so the bridge, a restart of it and the CLI (another
process, through SQLite's WAL) all see the same state. The running sink re-reads it about
once a second while disabled.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import asdict, dataclass
from typing import Any

from bridge.errors import OutboxUnavailable

KEY = "state"


def scope(sink: str) -> str:
    return f"endpoint:{sink}"


@dataclass
class EndpointState:
    enabled: bool = True
    reason: str = ""  # disable_after, disable_after_failures, gone, operator
    disabled_at: float | None = None
    error: str = ""
    failing_since: float | None = None
    changed_at: float = 0.0  # wall time of the decision: a later decision is never overwritten

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> EndpointState:
        try:
            raw: Any = json.loads(text)
        except ValueError:
            return cls()
        if not isinstance(raw, dict):
            return cls()
        known = {
            k: raw[k]
            for k in ("enabled", "reason", "disabled_at", "error", "failing_since", "changed_at")
            if k in raw
        }
        return cls(**known)


class AutoDisable:
    """Counts one endpoint's failures; says when to disable it."""

    def __init__(
        self, disable_after: float, disable_after_failures: int, state: EndpointState | None = None
    ) -> None:
        self.disable_after = disable_after
        self.disable_after_failures = disable_after_failures
        self.state = state or EndpointState()
        self.failures = 0

    @property
    def enabled(self) -> bool:
        return self.state.enabled

    def success(self) -> bool:
        """A delivery succeeded; returns True when the failing streak (if any) ended."""
        was_failing = self.state.failing_since is not None or self.failures > 0
        self.failures = 0
        self.state.failing_since = None
        return was_failing

    def failure(self, now: float, error: str = "") -> str | None:
        """A request failed; returns why the endpoint must now be disabled, or None."""
        self.failures += 1
        if self.state.failing_since is None:
            self.state.failing_since = now
        if not self.state.enabled:
            return None
        if self.disable_after_failures and self.failures >= self.disable_after_failures:
            return "disable_after_failures"
        if self.disable_after > 0 and now - self.state.failing_since >= self.disable_after:
            return "disable_after"
        return None

    def disable(self, reason: str, now: float, error: str = "") -> None:
        self.state.changed_at = time.time()
        self.state.enabled = False
        self.state.reason = reason
        self.state.disabled_at = now
        self.state.error = error

    def enable(self) -> None:
        self.state = EndpointState(changed_at=time.time())
        self.failures = 0


# -- persistence (synchronous: run through AsyncOutbox.call / .read, or from the CLI) --
def load(db: sqlite3.Connection, sink: str) -> EndpointState | None:
    row = db.execute("SELECT value FROM source_state WHERE source=? AND key=?", (scope(sink), KEY)).fetchone()
    return None if row is None else EndpointState.from_json(row[0])


def save(db: sqlite3.Connection, sink: str, state: EndpointState) -> None:
    """Store ``state`` unless a later decision is stored already (the sink's write of a
    disable it decided before an operator's ``enable`` must not undo that enable)."""
    try:
        db.execute(
            "INSERT INTO source_state(source, key, value) VALUES (?,?,?) "
            "ON CONFLICT(source, key) DO UPDATE SET value=excluded.value WHERE "
            "coalesce(json_extract(source_state.value, '$.changed_at'), 0) "
            "<= json_extract(excluded.value, '$.changed_at')",
            (scope(sink), KEY, state.to_json()),
        )
    except sqlite3.Error as exc:
        raise OutboxUnavailable(f"endpoint state of {sink}: {exc}") from exc


def enable(db: sqlite3.Connection, sink: str) -> None:
    """Enable ``sink`` and make its pending events due now (``event-bridge endpoint enable``):
    a retry time set while it was failing would otherwise hold its backlog for hours."""
    try:
        db.execute("BEGIN IMMEDIATE")
        try:
            save(db, sink, EndpointState(changed_at=time.time()))
            db.execute("UPDATE deliveries SET next_at=0 WHERE sink=? AND state=0 AND next_at>0", (sink,))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
    except sqlite3.Error as exc:
        raise OutboxUnavailable(f"endpoint state of {sink}: {exc}") from exc
