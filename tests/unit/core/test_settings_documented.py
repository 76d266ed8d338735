"""Every key of every settings class is documented in the shipped example configs, with
its real default (commented-out lines count: ``# timeout = 10.0``)."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from bridge import registry
from bridge.config import AdminSettings, BridgeSettings, OutboxSettings, QuarantineSettings
from bridge.settings import MISSING, default_of, iter_fields

CONFIG_DIR = Path(__file__).resolve().parents[3] / "config"
HEADER = re.compile(r"^\s*#?\s*\[\[?\s*([A-Za-z0-9_.]+)\s*\]\]?\s*(#.*)?$")
ASSIGN = re.compile(r"^\s*#?\s*([A-Za-z0-9_]+)\s*=\s*(.+)$")


# Switches documented by their non-default value, since exactly one of two keys is set.
EITHER_OR = {"stdout"}


def documented() -> dict[str, dict[str, list[Any]]]:
    """section -> key -> values shown for it, across config/*.toml."""
    found: dict[str, dict[str, list[Any]]] = {}
    for path in sorted(CONFIG_DIR.glob("*.toml")):
        section = ""
        for line in path.read_text().splitlines():
            header = HEADER.match(line)
            if header:
                section = header.group(1)
                continue
            assign = ASSIGN.match(line)
            if not assign:
                continue
            key, text = assign.groups()
            try:
                value = tomllib.loads(f"v = {text}")["v"]
            except tomllib.TOMLDecodeError:
                value = tomllib.loads(f"v = {text.split('#', 1)[0]}")["v"] if "#" in text else text
            found.setdefault(section, {}).setdefault(key, []).append(value)
    return found


def cases() -> list[tuple[str, type[Any]]]:
    out: list[tuple[str, type[Any]]] = [
        ("bridge", BridgeSettings),
        ("outbox", OutboxSettings),
        ("admin", AdminSettings),
        ("quarantine", QuarantineSettings),
    ]
    for group, table in (("sources", registry.SOURCES), ("sinks", registry.SINKS)):
        for kind in table:
            kind_def = registry.source_kind(kind) if group == "sources" else registry.sink_kind(kind)
            if dataclasses.is_dataclass(kind_def.settings):
                out.append((f"{group}.{kind}", kind_def.settings))
    return out


def _same(default: Any, shown: Any) -> bool:
    if isinstance(default, tuple):
        default = list(default)
    if isinstance(default, Path):
        default = str(default)
    if isinstance(default, bool) or isinstance(shown, bool):
        return default is shown
    if isinstance(default, int | float) and isinstance(shown, int | float):
        return float(default) == float(shown)
    return bool(default == shown)


@pytest.mark.parametrize(("section", "cls"), cases(), ids=lambda c: c if isinstance(c, str) else "")
def test_every_key_is_documented_with_its_default(section: str, cls: type[Any]) -> None:
    docs = documented().get(section, {})
    problems = []
    for key, f, _meta, _hint in iter_fields(cls):
        default = default_of(f)
        if dataclasses.is_dataclass(default) or key == "name":
            continue
        if key not in docs and any(sec.startswith(f"{section}.{key}") for sec in documented()):
            continue  # an array of sub-tables, documented as [[section.key]]
        if key not in docs:
            problems.append(f"[{section}] {key} is not in any config/*.toml")
        elif default in ((), {}, "") or (isinstance(default, bool) and key in EITHER_OR):
            continue  # an empty default: any example value documents the key
        elif default is not MISSING and default is not None and not any(_same(default, v) for v in docs[key]):
            problems.append(f"[{section}] {key}: default is {default!r}, examples show {docs[key]!r}")
    assert not problems, "\n".join(problems)
