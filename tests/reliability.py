"""Rows of the fault matrix, written by the tests themselves.

Each fault test calls :func:`record` with what it injected and what it observed; the
rows land in ``build/reliability.jsonl`` and ``scripts/reliability-report`` renders
RELIABILITY.md from them, so the document is the suite's own output.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

OUT = Path(
    os.environ.get("RELIABILITY_OUT", Path(__file__).resolve().parent.parent / "build" / "reliability.jsonl")
)


def reset() -> None:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("")


def record(
    area: str,
    fault: str,
    *,
    injected: int,
    sent: int,
    delivered: int,
    duplicated: int = 0,
    lost: int = 0,
    unread: int = 0,
    observed: str = "",
) -> None:
    """``lost``: read by the bridge but not delivered (must be 0). ``unread``: sent by a
    vendor with no replay but gone in transit before the bridge could read it."""
    OUT.parent.mkdir(parents=True, exist_ok=True)
    row = {
        "area": area,
        "fault": fault,
        "injected": injected,
        "sent": sent,
        "delivered": delivered,
        "duplicated": duplicated,
        "lost": lost,
        "unread": unread,
        "observed": observed,
    }
    with OUT.open("a") as fh:
        fh.write(json.dumps(row) + "\n")
