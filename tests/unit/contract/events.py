"""CloudEvents built from the conformance fixtures (vendor bytes copied from the docs) by the
bridge's own mapping: what the bridge emits for documented input, to check against the schemas."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from bridge.model import Event, event_id

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
RECEIVED = datetime(2026, 11, 22, 9, 0, 0, tzinfo=UTC)


def cloudevent(event: Event) -> dict[str, Any]:
    envelope: dict[str, Any] = json.loads(json.dumps(event.to_cloudevent(event_id(event.digest(), 0))))
    return envelope


def uptivity_paths() -> list[Path]:
    return sorted(FIXTURES.glob("uptivity/*-callcopyevent-*.xml"))


def uptivity_event(path: Path) -> dict[str, Any]:
    from bridge.sources.uptivity.mapping import to_event
    from bridge.sources.uptivity.stream import element_fields, parse_document

    raw = path.read_bytes()
    fields = element_fields(parse_document(raw))
    return cloudevent(
        to_event(fields, source_name="up", tz=ZoneInfo("America/Chicago"), received=RECEIVED, raw=raw)
    )


def anywherenow_paths() -> list[Path]:
    return sorted(FIXTURES.glob("anywherenow/hub-event.*.txt"))


def anywherenow_event(path: Path) -> dict[str, Any]:
    from bridge.sources.anywherenow.mapping import action_type, live_event, parse_invocation

    frame = json.loads(path.read_text(encoding="utf-8").split("\x1e", 1)[0])
    change = parse_invocation(frame["arguments"])
    return cloudevent(live_event("anw", change, action_type(change.action)))


def callstart(ani: str = "+1 555 010 4567") -> dict[str, Any]:
    """The documented CALLSTART (16.2) with a caller number, as a recorder would send it."""
    path = next(p for p in uptivity_paths() if "16.2-callcopyevent-callstart" in p.name)
    text = path.read_bytes()
    if b"<ANI>" in text:
        import re

        text = re.sub(rb"<ANI>[^<]*</ANI>", b"<ANI>" + ani.encode() + b"</ANI>", text)
    else:
        text = text.replace(b"<EVENTDATA>", b"<EVENTDATA><ANI>" + ani.encode() + b"</ANI>", 1)
    from bridge.sources.uptivity.mapping import to_event
    from bridge.sources.uptivity.stream import element_fields, parse_document

    fields = element_fields(parse_document(text))
    return cloudevent(
        to_event(fields, source_name="up", tz=ZoneInfo("America/Chicago"), received=RECEIVED, raw=text)
    )
