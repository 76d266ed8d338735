"""The durable outbox: SQLite in WAL mode, the one place every event is recorded.

Sources hand events to the committer, which group-commits them; each committed event
gets one delivery row per configured sink; sinks read their pending rows in order and
mark them delivered, scheduled for retry, or dead. The deterministic event id is
assigned inside the commit transaction from a persisted per-content ordinal, so a
restart never reuses an id. Every write failure is :class:`bridge.errors.OutboxUnavailable`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bridge.outbox.limits import Limits, LimitsMixin
from bridge.outbox.types import Pending, Row
from bridge.outbox.views import OperatorViews


class Outbox(LimitsMixin, OperatorViews):
    """Synchronous SQLite operations; use through :class:`bridge.outbox.AsyncOutbox`."""

    def __init__(self, path: Path, *, synchronous: str = "full", limits: Any = None) -> None:
        super().__init__(path, synchronous=synchronous)
        self.limits = limits if isinstance(limits, Limits) else Limits.of(limits) if limits else Limits()
        self._size_checked = 0.0
        self._size = 0
        self._ordinals_pruned = 0.0

    def commit_rows(self, batch: Sequence[Pending]) -> tuple[list[Row], list[str]]:
        self.check_room()
        return super().commit_rows(batch)
