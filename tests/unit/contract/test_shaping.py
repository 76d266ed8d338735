"""Shaping, pure: masks, HMACs, drops, include/exclude globs, raw, and config errors."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import pytest

from bridge.config import ConfigError, load
from bridge.shaping import Shaper, ShapeSettings, mask
from tests.support.helpers import write_config
from tests.unit.contract.conformance import check_structured
from tests.unit.contract.events import callstart

ROOT = Path(__file__).resolve().parents[3]
KEY = "a-hash-key-of-24-chars!!"


def event(ani: str = "+1 555 010 4567") -> dict:
    return callstart(ani)


def test_mask_keeps_the_last_four_characters() -> None:
    assert mask("5550104567") == "******4567"
    assert mask(" 4567 ") == "****"  # four or fewer: nothing kept
    assert mask("12") == "**"


def test_redact_mask_hash_drop_also_where_raw_repeats_the_field() -> None:
    original = event()
    shaped = Shaper(
        ShapeSettings(redact={"ani": "mask", "agent_id": "hash", "device_id": "drop"}, hash_key=KEY)
    ).event(original)
    data = shaped["data"]
    assert data["ani"] == "***********4567"
    assert data["raw"]["EVENTDATA"]["ANI"] == "***********4567"
    expected = hmac.new(KEY.encode(), original["data"]["agent_id"].encode(), hashlib.sha256).hexdigest()
    assert data["agent_id"] == expected == data["raw"]["EVENTDATA"]["AGENTID"]
    assert "device_id" not in data and "DEVICEID" not in data["raw"]["EVENTDATA"]
    assert data["redacted"] == [
        {"field": "agent_id", "action": "hash"},
        {"field": "ani", "action": "mask"},
        {"field": "device_id", "action": "drop"},
        {"field": "raw.EVENTDATA.AGENTID", "action": "hash"},
        {"field": "raw.EVENTDATA.ANI", "action": "mask"},
        {"field": "raw.EVENTDATA.DEVICEID", "action": "drop"},
    ]
    assert "4567" in json.dumps(original) and "555" not in json.dumps(shaped)
    # Identity and routing untouched; the input is not modified; the result conforms.
    assert {k: shaped[k] for k in ("id", "type", "time", "subject", "source")} == {
        k: original[k] for k in ("id", "type", "time", "subject", "source")
    }
    assert original["data"]["ani"] == "+1 555 010 4567"
    check_structured(shaped)


def test_include_exclude_and_drop_raw() -> None:
    shaped = Shaper(ShapeSettings(include_fields=("vendor", "device_*", "raw.EVENTDATA.DEVICEID"))).event(
        event()
    )
    data = shaped["data"]
    assert set(data) == {"vendor", "device_id", "device_alias", "raw", "redacted"}
    assert data["raw"] == {"EVENTDATA": {"DEVICEID": event()["data"]["raw"]["EVENTDATA"]["DEVICEID"]}}
    assert {"field": "ani", "action": "drop"} in data["redacted"]
    shaped = Shaper(ShapeSettings(exclude_fields=("user_fields", "*_time"), drop_raw=True)).event(event())
    assert not {"user_fields", "start_time", "stop_time", "raw"} & set(shaped["data"])
    assert {"field": "raw", "action": "drop"} in shaped["data"]["redacted"]
    check_structured(shaped)


def test_redact_drop_of_raw_itself() -> None:
    shaped = Shaper(ShapeSettings(redact={"raw": "drop"})).event(event())
    assert "raw" not in shaped["data"]
    assert shaped["data"]["redacted"] == [{"field": "raw", "action": "drop"}]


def test_nothing_to_change_means_no_redacted_list_and_same_bytes() -> None:
    e = event()
    e["data"]["dnis"] = None
    shaper = Shaper(ShapeSettings(redact={"dnis": "mask"}))
    assert "redacted" not in shaper.event(e)["data"]
    body = json.dumps(e, separators=(",", ":"), ensure_ascii=False).encode()
    assert shaper.body(body) == body


BASE = """
[bridge]
state_dir = "{state}"

[[sources.uptivity]]
name = "up"
host = "127.0.0.1"

[[sinks.log]]
name = "audit"
stdout = true

[sinks.log.shape]
"""


def load_shape(tmp_path: Path, extra: str):
    return load(write_config(tmp_path, BASE.replace("{state}", str(tmp_path / "s")) + extra))


@pytest.mark.parametrize(
    ("extra", "key", "words"),
    [
        ('redact = { "anni" = "mask" }', "sinks.log[0].shape.redact.anni", "closest: ani"),
        (
            'include_fields = ["corelation_id"]',
            "sinks.log[0].shape.include_fields[0]",
            "closest: correlation_id",
        ),
        ('exclude_fields = ["nothing.here"]', "sinks.log[0].shape.exclude_fields[0]", "names no field"),
        ('redact = { "ani" = "scramble" }', "sinks.log[0].shape.redact.ani", "mask, hash, drop"),
        ('redact = { "ani" = "hash" }', "sinks.log[0].shape.redact.ani", "needs hash_key"),
        ('redact = { "ani" = "hash" }\nhash_key = "short"', "sinks.log[0].shape.hash_key", "at least 16"),
        ('include = ["ani"]', "sinks.log[0].shape.include", "not a known key"),
        ('redact = { "raw" = "mask" }', "sinks.log[0].shape.redact.raw", "is an object"),
        (
            'redact = { "user_fields" = "hash" }\nhash_key = "0123456789abcdef"',
            "sinks.log[0].shape.redact.user_fields",
            "user_fields.*",
        ),
    ],
)
def test_config_errors_name_the_rule_and_the_closest_fields(
    tmp_path: Path, extra: str, key: str, words: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_shape(tmp_path, extra + "\n")
    assert info.value.key == key
    assert words in info.value.message


def test_a_valid_shape_loads_and_the_hash_key_is_a_secret(tmp_path: Path) -> None:
    config = load_shape(
        tmp_path,
        f'redact = {{ "ani" = "mask", "raw.EVENTDATA.ANI" = "drop", "user_fields.*" = "hash" }}\n'
        f'hash_key = "{KEY}"\ninclude_fields = ["ani", "raw.*", "user_fields.USER1"]\n',
    )
    (sink,) = config.sinks
    assert sink.settings.shape.redact["ani"] == "mask"
    assert KEY in config.secrets.values


def test_a_broken_schema_stops_check_config_with_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    import importlib

    from bridge import cli

    catalog_module = importlib.import_module("bridge.contract.catalog")

    broken = tmp_path / "schemas" / "call.started"
    broken.mkdir(parents=True)
    (broken / "v1.json").write_text('{"type": "object", "properties": ')
    monkeypatch.setattr(catalog_module, "catalog", lambda: catalog_module.load(tmp_path / "schemas"))
    path = write_config(
        tmp_path, BASE.replace("{state}", str(tmp_path / "s")) + 'redact = { "ani" = "mask" }\n'
    )
    assert cli.main(["check-config", "--config", str(path)]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "call.started/v1.json: the schema cannot be read" in err[0], err
