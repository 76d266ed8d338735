"""config/bridge.example.toml documents every webhook and [outbox] key with its real default."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from bridge.config import OutboxSettings
from bridge.settings import default_of, iter_fields
from bridge.sinks.webhook import WebhookSettings

EXAMPLE = Path(__file__).parents[3] / "config" / "bridge.example.toml"


def _section(start: str) -> str:
    text = EXAMPLE.read_text()
    section = text[text.index(start) :]
    following = re.search(r"(?m)^\[", section[len(start) :])
    return section[: len(start) + following.start()] if following else section


def _value(section: str, key: str) -> object:
    """The value of the first ``key = ...`` line (commented or not) of ``section``."""
    match = re.search(rf"(?m)^(?:# )?{key} = (.+?)(?:\s+#.*)?$", section)
    assert match, f"{key} is not documented"
    return tomllib.loads(f"v = {match.group(1)}")["v"]


MINE = (
    "mode", "types", "sources", "timeout", "max_in_flight", "verify_tls", "retry_schedule",
    "max_response_bytes", "batch_max_events", "batch_max_age", "breaker_threshold",
    "reconnect_min", "reconnect_max",
)  # fmt: skip


# Keys another change adds to every sink (issue 18, shaping) and documents on its own.
NOT_YET = {"shape"}


def test_every_webhook_key_is_documented_with_its_default() -> None:
    section = _section("[[sinks.webhook]]")
    fields = {key: f for key, f, _meta, _hint in iter_fields(WebhookSettings)}
    for key in fields.keys() - NOT_YET:
        assert re.search(rf"(?m)^(?:# )?(?:\[sinks\.webhook\.)?{key}\b", section), key
    for key in MINE:
        default = default_of(fields[key])
        expected = list(default) if isinstance(default, tuple) else default
        assert _value(section, key) == expected, key


def test_every_outbox_key_is_documented_with_its_default() -> None:
    section = _section("[outbox]")
    for key, f, _meta, _hint in iter_fields(OutboxSettings):
        assert _value(section, key) == default_of(f), key
