"""``[[sources.uptivity]]`` settings: defaults, old names, the time zone warning."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.config import ConfigError, load
from tests.support.helpers import write_config


def load_source(tmp_path: Path, bridge_zone: str | None, extra: str = ""):
    zone = f'timezone = "{bridge_zone}"' if bridge_zone else ""
    path = write_config(
        tmp_path,
        f"""
[bridge]
state_dir = "{tmp_path}"
{zone}

[[sources.uptivity]]
name = "up"
host = "recorder.example"
{extra}

[[sinks.log]]
name = "l"
stdout = true
""",
    )
    config = load(path)
    return config, config.sources[0].settings, config.sources[0].component


def test_defaults(tmp_path: Path) -> None:
    _config, s, source = load_source(tmp_path, "America/Chicago")
    assert (s.port, s.idle_timeout, s.probe_interval, s.reconcile) == (5620, 0.0, 60.0, "auto")
    assert (source.api_host, source.api_port) == ("recorder.example", 5620)  # the proxy's own address
    assert source.timezone.key == "America/Chicago" and s.zone_origin == "[bridge] timezone"


def test_no_zone_anywhere_is_a_warning_and_utc(tmp_path: Path) -> None:
    config, s, source = load_source(tmp_path, None)
    assert source.timezone.key == "UTC" and s.zone_origin.startswith("default")
    (warning,) = [w for w in config.warnings if "sources.uptivity[0].timezone" in w]
    assert "read as UTC" in warning


def test_a_source_zone_needs_no_warning(tmp_path: Path) -> None:
    config, s, source = load_source(tmp_path, None, 'timezone = "Europe/Berlin"')
    assert source.timezone.key == "Europe/Berlin" and s.zone_origin == "source timezone"
    assert not [w for w in config.warnings if "timezone" in w]


def test_old_names_still_work_with_a_deprecation_warning(tmp_path: Path) -> None:
    config, s, _ = load_source(tmp_path, "UTC", "result_timeout = 3.0\nbackoff_base = 0.1\nbackoff_cap = 9.0")
    assert (s.timeout, s.reconnect_min, s.reconnect_max) == (3.0, 0.1, 9.0)
    assert sum("is deprecated" in w for w in config.warnings) == 3


def test_api_address_and_bad_values(tmp_path: Path) -> None:
    _c, _s, source = load_source(tmp_path, "UTC", 'api_host = "api.example"\napi_port = 5621')
    assert (source.api_host, source.api_port) == ("api.example", 5621)
    with pytest.raises(ConfigError, match="reconnect_max"):
        load_source(tmp_path, "UTC", "reconnect_min = 5.0\nreconnect_max = 1.0")
    with pytest.raises(ConfigError, match="must be one of"):
        load_source(tmp_path, "UTC", 'reconcile = "sometimes"')
