"""The durable SQLite outbox (see :mod:`bridge.outbox.store`).

``schema`` (tables, connection settings), ``types`` (rows, outcomes, pending commits),
``core`` (commit, read, settle), ``views`` (operator commands), ``limits`` (retention,
expiry, size), ``aio`` (the trio wrapper), ``cli`` (``event-bridge outbox ...``).
"""

from bridge.errors import OutboxUnavailable
from bridge.outbox.aio import AsyncOutbox
from bridge.outbox.core import ORDINAL_CACHE_SIZE, encode_event
from bridge.outbox.limits import Limits, OutboxFull
from bridge.outbox.store import Outbox
from bridge.outbox.types import DEAD, DELIVERED, PENDING, SKIPPED, STATE_NAMES, Pending, Row, Settlements

__all__ = [
    "DEAD",
    "DELIVERED",
    "ORDINAL_CACHE_SIZE",
    "PENDING",
    "SKIPPED",
    "STATE_NAMES",
    "AsyncOutbox",
    "Limits",
    "Outbox",
    "OutboxFull",
    "OutboxUnavailable",
    "Pending",
    "Row",
    "Settlements",
    "encode_event",
]
