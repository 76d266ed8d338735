"""config/bridge.example.toml documents every NATS and shaping key with its real default."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from bridge.settings import default_of, iter_fields
from bridge.shaping import ShapeSettings
from bridge.sinks.nats import NatsSettings

EXAMPLE = Path(__file__).parents[3] / "config" / "bridge.example.toml"


def _section(start: str) -> str:
    text = EXAMPLE.read_text()
    return text[text.index(start) :]


def _value(section: str, key: str) -> object:
    match = re.search(rf"(?m)^# {key} = (.+?)(?:\s+#.*)?$", section)
    assert match, f"{key} is not documented"
    return tomllib.loads(f"v = {match.group(1)}")["v"]


def _check(cls: type, section: str) -> None:
    """Every key is there; one with a default shows that default (None: an example value)."""
    for key, f, _meta, _hint in iter_fields(cls):
        if key in ("name", "shape"):
            continue
        default = default_of(f)
        value = _value(section, key)
        if default is not None:
            assert value == (list(default) if isinstance(default, tuple) else default), key


def test_every_nats_key_is_documented_with_its_default() -> None:
    _check(NatsSettings, _section("# [[sinks.nats]]"))


def test_every_shape_key_is_documented_with_its_default() -> None:
    _check(ShapeSettings, _section("# [sinks.webhook.shape]"))
