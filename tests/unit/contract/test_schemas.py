"""The shipped schemas: valid 2020-12, one per type, in the README, and what documented events look like."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from bridge.contract import markdown
from bridge.contract.catalog import catalog, load
from bridge.errors import StartupError
from bridge.model import NORMALIZED_TYPES, dataschema
from tests.unit.contract import events
from tests.unit.contract.conformance import check_binary, check_data, check_structured

ROOT = Path(__file__).resolve().parents[3]
# issue 17's operational events, as the issue lists them.
OPERATIONAL = {
    "bridge.sink.failing",
    "bridge.sink.recovered",
    "bridge.sink.disabled",
    "bridge.delivery.dead_lettered",
    "bridge.source.disconnected",
    "bridge.source.connected",
    "bridge.outbox.full",
}


def test_every_type_has_a_valid_2020_12_schema_named_by_dataschema() -> None:
    cat = catalog()
    assert set(cat.families()) == NORMALIZED_TYPES | OPERATIONAL | {"vendor"}
    for entry in cat.entries:
        Draft202012Validator.check_schema(entry.schema)
        assert entry.schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert entry.uri == entry.schema["$id"]
    for t in NORMALIZED_TYPES | OPERATIONAL:
        assert cat.for_type(t).uri == dataschema(t) == f"urn:event-bridge:schema:{t}:v1"
    assert cat.for_type("vendor.uptivity.whatever").family == "vendor"
    with pytest.raises(KeyError):
        cat.for_type("recording.exploded")


def test_shared_fields_mean_the_same_in_every_schema() -> None:
    seen: dict[str, tuple[str, dict]] = {}
    for entry in catalog().entries:
        for name, spec in entry.properties.items():
            first = seen.setdefault(name, (entry.family, spec))
            assert spec == first[1], f"{name} differs between {first[0]} and {entry.family}"


def _both_modes(event: dict) -> None:
    from bridge.outbox import Row
    from bridge.sinks.webhook.wire import encode

    check_structured(event)
    body = json.dumps(event, separators=(",", ":")).encode()
    row = Row(1, event["id"], "src", event["type"], event.get("subject"), 0.0, body)
    _, headers, data = encode([row], "binary")
    assert headers["ce-dataschema"] == event["dataschema"]
    check_binary(headers, data)


@pytest.mark.parametrize("path", events.uptivity_paths(), ids=lambda p: p.stem)
def test_documented_uptivity_events_conform_in_both_modes(path: Path) -> None:
    _both_modes(events.uptivity_event(path))


@pytest.mark.parametrize("path", events.anywherenow_paths(), ids=lambda p: p.stem)
def test_documented_anywherenow_events_conform_in_both_modes(path: Path) -> None:
    _both_modes(events.anywherenow_event(path))


def test_the_check_can_fail() -> None:
    event = events.callstart()
    with pytest.raises(AssertionError, match="undocumented_field"):
        check_data(event["type"], event["dataschema"], {**event["data"], "undocumented_field": 1})
    with pytest.raises(AssertionError, match="start_time"):
        check_data(event["type"], event["dataschema"], {**event["data"], "start_time": "yesterday"})
    with pytest.raises(AssertionError, match="dataschema"):
        check_data("call.ended", event["dataschema"], event["data"])
    missing = {k: v for k, v in event["data"].items() if k != "vendor"}
    with pytest.raises(AssertionError):
        check_data(event["type"], event["dataschema"], missing)  # unshaped: vendor is required
    check_data(event["type"], event["dataschema"], {"redacted": [{"field": "vendor", "action": "drop"}]})


def test_a_schema_that_fails_to_load_is_a_startup_error(tmp_path: Path) -> None:
    (tmp_path / "call.started").mkdir()
    (tmp_path / "call.started" / "v1.json").write_text('{"type": "object",')
    with pytest.raises(StartupError, match=r"call.started/v1.json: the schema cannot be read"):
        load(tmp_path)
    (tmp_path / "call.started" / "v1.json").write_text('{"type": 12}')
    with pytest.raises(StartupError, match="not a valid JSON Schema 2020-12"):
        load(tmp_path)
    (tmp_path / "call.started" / "v1.json").write_text('{"$id": "urn:other", "type": "object"}')
    with pytest.raises(StartupError, match=r"\$id must be 'urn:event-bridge:schema:call.started:v1'"):
        load(tmp_path)


def test_readme_catalog_is_generated_from_the_schemas() -> None:
    readme = (ROOT / "README.md").read_text()
    assert markdown.current(readme) == markdown.render(catalog()), (
        "README catalog out of date: python -m bridge.contract.markdown README.md"
    )
    for t in NORMALIZED_TYPES | OPERATIONAL:
        assert f"| `{t}` |" in readme


def test_vendor_pass_through_events_conform_in_both_modes(tmp_path: Path) -> None:
    """Types the model does not map pass through as vendor.<vendor>.<name>, under one schema."""
    source = next(p for p in events.uptivity_paths() if "16.2-callcopyevent-callstart" in p.name)
    unknown = tmp_path / "callupdate.xml"
    unknown.write_bytes(source.read_bytes().replace(b"CALLSTART", b"CALLUPDATE"))
    event = events.uptivity_event(unknown)
    assert event["type"] == "vendor.uptivity.callupdate"
    assert event["dataschema"] == "urn:event-bridge:schema:vendor:v1"
    _both_modes(event)
    hub = next(iter(events.anywherenow_paths()))
    frame = json.loads(hub.read_text(encoding="utf-8").split("\x1e", 1)[0])
    frame["arguments"][0]["StateAction"] = 42
    odd = tmp_path / "hub-event.odd.txt"
    odd.write_text(json.dumps(frame) + "\x1e", encoding="utf-8")
    event = events.anywherenow_event(odd)
    assert event["type"].startswith("vendor.anywherenow.")
    _both_modes(event)
