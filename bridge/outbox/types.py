"""Plain data the outbox hands around: delivery states, rows, outcomes, pending commits."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import trio

from bridge.model import Event

PENDING, DELIVERED, DEAD, SKIPPED = 0, 1, 2, 3
STATE_NAMES = {PENDING: "pending", DELIVERED: "delivered", DEAD: "dead", SKIPPED: "skipped"}


@dataclass(slots=True)
class Row:
    """One event as a sink sees it."""

    seq: int
    id: str
    source: str
    type: str
    subject: str | None
    received_at: float
    body: bytes
    attempts: int = 0
    next_at: float = 0.0
    first_failed_at: float | None = None


@dataclass
class Settlements:
    """Delivery outcomes waiting to be written together."""

    delivered: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    retries: list[tuple[int, float, int | None, str]] = field(default_factory=list)
    dead: list[tuple[int, int | None, str]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.delivered or self.skipped or self.retries or self.dead)

    def merged(self, other: Settlements) -> Settlements:
        return Settlements(
            self.delivered + other.delivered,
            self.skipped + other.skipped,
            self.retries + other.retries,
            self.dead + other.dead,
        )


@dataclass(slots=True)
class Pending:
    """What a source handed over for one commit."""

    source: str
    events: Sequence[Event]
    state: Mapping[str, str | None] | None
    received_at: float
    done: trio.Event | None
