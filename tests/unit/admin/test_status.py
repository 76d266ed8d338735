"""``event-bridge status`` rendering: vendor and receiver strings cannot forge lines or move the cursor."""

from __future__ import annotations

import re

from bridge.admin.status import printable, render

HOSTILE = "dev\n1\r\x1b[2J\x1b]0;owned\x07\u202eevil\u2028x\x85"


def test_printable_escapes_every_control_and_bidi_character() -> None:
    out = printable(HOSTILE)
    assert re.search(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e]", out) is None
    assert out == "dev\\x0a1\\x0d\\x1b[2J\\x1b]0;owned\\x07\\u202eevil\\u2028x\\x85"
    assert printable(None) == "" and printable(12) == "12" and printable("plain text") == "plain text"


def summary(reason: str) -> dict:
    return {
        "now": 1_800_000_000.0,
        "outbox": {"writable": False, "problem": reason, "events": 12},
        "sources": [
            {"name": "up", "vendor": "uptivity", "state": "error", "reason": reason, "reconnects": 2,
             "state_for": 75.0, "last_event_at": 1_800_000_000.0 - 30}
        ],
        "sinks": [
            {"name": "crm", "state": "open", "backlog": 40, "backlog_age": 900.0, "dead_letters": 3,
             "rate_per_s": 1.5, "latency": {"p50": 0.012, "p90": 0.05, "p99": 0.2}, "reason": reason}
        ],
    }  # fmt: skip


def test_render_shows_the_summary_and_only_escaped_strings() -> None:
    text = render(summary(HOSTILE), "127.0.0.1:9108")
    lines = text.split("\n")
    assert re.search(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u202e]", text) is None
    assert len(lines) == 8  # header, outbox, blank, sources header, one source, blank, sinks header, one sink
    assert "NOT WRITABLE" in lines[1] and "12 events" in lines[1]
    source = lines[4]
    assert source.startswith("up ") and "uptivity" in source and "error" in source and "30s ago" in source
    sink = lines[7]
    for part in ("crm", "open", "40", "15m", "3", "1.50", "12ms", "200ms"):
        assert part in sink, part
    assert "2027-01-15 08:00:00 UTC" in lines[0]


def test_render_without_source_states_says_so() -> None:
    data = summary("x")
    data["sources"] = None
    assert "sources: unknown" in render(data, "state")
