"""``[[sources.encore]]`` parsing, the example config, and the pure state/duration helpers."""

from __future__ import annotations

import re
import tomllib
from dataclasses import MISSING
from pathlib import Path
from typing import Any

import pytest

from bridge.config import ConfigError, load, parse
from bridge.settings import default_of, iter_fields
from bridge.sources.encore import EncoreSettings, EncoreSource, PortSettings
from bridge.sources.encore.states import (
    NOT_RECORDING,
    PAUSE,
    RECORD,
    SUSPENDED,
    normalize_state,
    parse_duration,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "encore-only.example.toml"


def build(tmp_path: Path, **encore: Any) -> EncoreSource:
    data = {
        "bridge": {"state_dir": str(tmp_path / "state")},
        "sources": {"encore": [{"name": "enc", "url": "https://encore.example/WebAPI/ECAPI.svc", **encore}]},
        "sinks": {"log": [{"name": "out", "stdout": True}]},
    }
    config = parse(data, tmp_path / "bridge.toml")
    return config.sources[0].component


def test_example_config_loads_and_says_what_it_polls() -> None:
    config = load(EXAMPLE)
    (source,) = [c.component for c in config.sources]
    assert isinstance(source, EncoreSource)
    s = source.settings
    assert s.url == "http://127.0.0.1:8086/WebAPI/ECAPI.svc"
    assert (s.extensions, s.users, s.port_keys) == (("1234", "1235"), ("smith",), [("1", "7")])
    assert (s.interval, s.max_in_flight, s.api_version, s.verify_tls) == (1.0, 1, "auto", True)
    assert s.namespace == "http://tempuri.org/" and s.soap_action == "{namespace}IECAPI/{operation}"
    assert [sink.name for sink in config.sinks] == ["stdout"]
    assert source.describe() == "http://127.0.0.1:8086/WebAPI/ECAPI.svc"


@pytest.mark.parametrize("path", [EXAMPLE, EXAMPLE.with_name("bridge.example.toml")])
def test_example_configs_document_every_key_with_its_real_default(path: Path) -> None:
    text = path.read_text()
    section = text[text.index("[[sources.encore]]") :]
    section = section[: section.index("[[sinks.")] if "[[sinks." in section else section
    # The commented-out defaults are the real defaults.
    uncommented = re.sub(r"(?m)^# ([a-z_]+ = )", r"\1", section)
    documented = tomllib.loads(uncommented)["sources"]["encore"][0]
    for key, f, _meta, _hint in iter_fields(EncoreSettings):
        assert f"{key} =" in section or f"sources.encore.{key}" in section, key
        default = default_of(f)
        if key in ("extensions", "users", "name", "url", "ports") or default is MISSING:
            continue
        if default is None:  # documented as an example value, not a default
            continue
        expected = list(default) if isinstance(default, tuple) else default
        assert documented[key] == expected, key
    for key, _f, _meta, _hint in iter_fields(PortSettings):
        assert f"{key} =" in section, key


def test_settings_and_secrets(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    source = build(
        tmp_path,
        ports=[{"unit": "2", "port": 17}],
        interval=0.5,
        max_in_flight=2,
        api_version="7.0",
        ca_file=str(ca),
        username="svc",
        password="s3cret-value",
        machine="BRIDGE01",
    )
    s = source.settings
    assert s.port_keys == [("2", "17")] and s.interval == 0.5 and s.max_in_flight == 2
    assert s.ca_file == ca and s.auth == ("svc", "s3cret-value") and s.machine == "BRIDGE01"
    assert source.legacy is True and source.vendor == "encore" and source.name == "enc"


@pytest.mark.parametrize(
    ("options", "key", "fragment"),
    [
        ({}, "sources.encore[0]", "nothing to poll"),
        ({"extensions": ["1"], "url": "ftp://x/ECAPI.svc"}, "url", "http:// or https://"),
        ({"extensions": ["1"], "soap_action": "{ns}/{operation}"}, "soap_action", "placeholders"),
        ({"extensions": ["1"], "interval": 0.001}, "interval", "at least"),
        ({"extensions": ["1"], "api_version": "8"}, "api_version", "must be one of"),
        ({"extensions": ["1"], "username": "u"}, "password", "go together"),
        ({"extensions": ["1"], "ca_file": "/nonexistent/ca.pem"}, "ca_file", "not a readable file"),
        ({"ports": [{"unit": 1, "port": 2, "extension": "3"}]}, "ports[0].extension", "not a known key"),
        ({"ports": [{"unit": 1}]}, "ports[0].port", "required"),
        ({"extensions": ["1"], "intervall": 1}, "intervall", "not a known key"),
    ],
)
def test_config_errors_name_the_key(tmp_path: Path, options: dict, key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        build(tmp_path, **options)
    assert key in info.value.key and fragment in info.value.message


def test_states_are_normalized_from_every_documented_wording() -> None:
    assert normalize_state("RECORD") == RECORD
    assert normalize_state(" Recording ") == RECORD  # 7.0 Appendix A wording
    assert normalize_state("Not  Recording") == NOT_RECORDING
    assert normalize_state("Pause") == PAUSE
    assert normalize_state("suspended") == SUSPENDED
    assert normalize_state("DEFROSTING") is None and normalize_state(None) is None


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("20", 20), ("0", 0), ("2.5", 2.5), ("PT1M5S", 65), ("P1DT1H", 90000), ("00:01:05", 65),
     ("1.02:00:00.5", 93600.5), ("", None), ("-3", None), ("soon", None), ("P", None), ("nan", None)],
)  # fmt: skip
def test_state_duration_formats(text: str, seconds: float | None) -> None:
    assert parse_duration(text) == seconds


def test_describe_shows_the_url_without_its_secrets(tmp_path: Path) -> None:
    source = build(
        tmp_path, url="https://svc:pa55word@encore.example/WebAPI/ECAPI.svc?token=abc", extensions=["1"]
    )
    assert source.describe() == "https://svc:***@encore.example/WebAPI/ECAPI.svc?token=***"
    assert "pa55word" not in repr(source.stats())


def test_old_names_are_accepted_with_a_warning(tmp_path: Path) -> None:
    data = {
        "bridge": {"state_dir": str(tmp_path / "state")},
        "sources": {
            "encore": [
                {
                    "name": "enc",
                    "url": "https://encore.example/WebAPI/ECAPI.svc",
                    "extensions": ["1"],
                    "max_inflight": 2,
                    "backoff_base": 0.25,
                    "retry_max": 5.0,
                }
            ]
        },
        "sinks": {"log": [{"name": "out", "stdout": True}]},
    }
    config = parse(data, tmp_path / "bridge.toml")
    s = config.sources[0].component.settings
    assert (s.max_in_flight, s.reconnect_min, s.reconnect_max) == (2, 0.25, 5.0)
    assert sum("is deprecated" in w for w in config.warnings) == 3
    assert "pa55word" not in " ".join(config.warnings)


def test_verify_tls_off_is_said_by_check_config(tmp_path: Path) -> None:
    data = {
        "bridge": {"state_dir": str(tmp_path / "state")},
        "sources": {
            "encore": [
                {
                    "name": "enc",
                    "url": "https://e.example/ECAPI.svc",
                    "ports": [{"unit": 1, "port": 2}],
                    "verify_tls": False,
                }
            ]
        },
        "sinks": {"log": [{"name": "out", "stdout": True}]},
    }
    config = parse(data, tmp_path / "bridge.toml")
    assert any("verify_tls" in w and "any certificate" in w for w in config.warnings)
