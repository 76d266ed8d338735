"""Rows of the fault matrix, written by the tests themselves, pass or fail.

A fault test calls :func:`record` with what it injected and what it observed, *before* it
asserts anything. The rows are held until the test's outcome is known; a pytest hook
(``tests/conftest.py``) then writes them to ``build/reliability.jsonl`` with the test's
node id and outcome, so a failing test still leaves its numbers. A test marked
``@pytest.mark.reliability`` that wrote no row at all leaves a ``missing`` row, and
``scripts/reliability-report`` fails on any failed or missing row: the matrix cannot
silently omit a failure.

Column meanings (see RELIABILITY.md): ``lost`` is every missing event without a proof;
``unread`` and ``unobservable`` need journal evidence (``tests/support/accounting.py``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

OUT = Path(
    os.environ.get("RELIABILITY_OUT", Path(__file__).resolve().parents[2] / "build" / "reliability.jsonl")
)

_held: list[dict[str, Any]] = []


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
    unobservable: int = 0,
    observed: str = "",
) -> None:
    """Hold one row until the running test's outcome is known (see module docstring).

    ``lost``: missing at every receiver with no journal proof why (must be 0).
    ``unread``: proven gone in transit (written after the last byte the bridge's kernel
    acknowledged before a kill or reset). ``unobservable``: proven to have existed only
    between two observations (no poll or REST answer could show it).
    """
    _held.append(
        {
            "area": area,
            "fault": fault,
            "injected": injected,
            "sent": sent,
            "delivered": delivered,
            "duplicated": duplicated,
            "lost": lost,
            "unread": unread,
            "unobservable": unobservable,
            "observed": observed,
        }
    )


def flush(test: str, outcome: str, *, expected: bool) -> None:
    """Write the held rows with the test's id and outcome (called by the pytest hook)."""
    rows = list(_held)
    _held.clear()
    if not rows and expected:
        rows = [{"area": "missing rows", "fault": test, "missing": True}]
    if not rows:
        return
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with OUT.open("a") as fh:
        for row in rows:
            fh.write(json.dumps({**row, "test": test, "outcome": outcome}) + "\n")
