"""Shared pieces of the vendor-parser fuzzers (tests/reliability/test_fuzz_*.py).

Each fuzzer drives the real parsing code of one source and hands whatever events come
out to a real SQLite outbox, so "no crash" covers the commit too (an event that parses
but cannot be stored would kill the committer, and with it every other source's batch).
``FUZZ_EXAMPLES`` sets the number of cases (``scripts/soak`` uses 10,000). In the suite the
cases are derandomized (the same every run, so a red CI is reproducible); ``FUZZ_RANDOM=1``
(set by ``scripts/soak``) draws new ones each run.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings

from bridge.model import Event
from bridge.outbox import Outbox, Pending
from bridge.quarantine import Quarantine

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    derandomize=os.environ.get("FUZZ_RANDOM") != "1",
)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def strict_json(body: bytes) -> Any:
    """Parse as RFC 8259 JSON: NaN/Infinity (which Python's json accepts) are refused."""
    return json.loads(body, parse_constant=_no_constants)


class OutboxProbe:
    """A real outbox plus a real quarantine in a private temporary directory."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="fuzz-")
        root = Path(self._dir.name)
        self.outbox = Outbox(root / "outbox.sqlite3", synchronous="off")
        self.outbox.open()
        self.outbox.set_sinks(["probe"])
        self.quarantine = Quarantine(root / "quarantine")
        self.quarantine_root = root / "quarantine"

    def commit(
        self, source: str, events: Sequence[Event], state: dict[str, str | None] | None = None
    ) -> list[dict]:
        """Commit like the committer does; return the stored CloudEvents (strict JSON)."""
        seqs = self.outbox.commit([Pending(source, events, state, time.time(), None)])
        if not seqs:
            return []
        marks = ",".join("?" * len(seqs))
        rows = self.outbox.db.execute(f"SELECT body FROM events WHERE seq IN ({marks})", seqs).fetchall()
        return [strict_json(body) for (body,) in rows]

    def quarantined(self, source: str) -> int:
        return len(list((self.quarantine_root / source).glob("*.bin")))

    def close(self) -> None:
        self.outbox.close()
        self._dir.cleanup()


class RecordingLog:
    """Stands in for the structlog logger a source gets: keeps (level, event, fields)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def _log(self, level: str, event: str, **fields: Any) -> None:
        self.lines.append((level, event, fields))

    def debug(self, event: str, **fields: Any) -> None:
        self._log("debug", event, **fields)

    def info(self, event: str, **fields: Any) -> None:
        self._log("info", event, **fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._log("warning", event, **fields)

    def error(self, event: str, **fields: Any) -> None:
        self._log("error", event, **fields)

    def exception(self, event: str, **fields: Any) -> None:
        self._log("exception", event, **fields)

    def named(self, event: str) -> list[dict[str, Any]]:
        return [fields for _, name, fields in self.lines if name == event]
