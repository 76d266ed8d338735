"""The example configs document every AnywhereNow key with its real default, and old
names still work (with a deprecation warning)."""

from __future__ import annotations

import re
import tomllib
from dataclasses import MISSING
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bridge.config import ConfigError, Context, Secrets, Table
from bridge.settings import default_of, iter_fields, load_settings
from bridge.sources.anywherenow import AnywhereNowSettings, AnywhereNowSource

CONFIG = Path(__file__).parents[3] / "config"
SET_IN_THE_EXAMPLE = ("name", "hub_url", "rest_url", "ucc_names")


@pytest.mark.parametrize("name", ["anywherenow-only.example.toml", "bridge.example.toml"])
def test_example_configs_document_every_key_with_its_real_default(name: str) -> None:
    text = (CONFIG / name).read_text()
    section = text[text.index("[[sources.anywherenow]]") :]
    section = section[: section.index("\n# -----")]
    uncommented = re.sub(r"(?m)^# ([a-z_]+ = )", r"\1", section)
    documented = tomllib.loads(uncommented)["sources"]["anywherenow"][0]
    for key, f, _meta, _hint in iter_fields(AnywhereNowSettings):
        assert f"{key} =" in section, key
        default = default_of(f)
        if key in SET_IN_THE_EXAMPLE or default is MISSING or default is None:
            continue
        expected = list(default) if isinstance(default, tuple) else default
        assert documented[key] == expected, key


def table(tmp_path: Path, data: dict[str, object], secrets: Secrets | None = None) -> Table:
    ctx = Context(tmp_path / "bridge.toml", secrets or Secrets(), tmp_path / "state", ZoneInfo("UTC"))
    return Table(data, "sources.anywherenow[0]", ctx)


def test_old_names_are_aliases_with_a_warning(tmp_path: Path) -> None:
    t = table(
        tmp_path,
        {
            "name": "a",
            "hub_url": "https://h/x",
            "backoff_base": 0.1,
            "backoff_cap": 2.0,
            "request_timeout": 3.0,
        },
    )
    s = load_settings(AnywhereNowSettings, t)
    assert (s.reconnect_min, s.reconnect_max, s.timeout) == (0.1, 2.0, 3.0)
    assert len([w for w in t.ctx.warnings if "deprecated" in w]) == 3


def test_url_passwords_and_query_values_are_secrets(tmp_path: Path) -> None:
    secrets = Secrets()
    url = "https://ops:pa55-word@h/hub?access_token=tok-abcdef"
    s = load_settings(AnywhereNowSettings, table(tmp_path, {"name": "a", "hub_url": url}, secrets))
    assert {"pa55-word", "tok-abcdef"} <= secrets.values
    assert AnywhereNowSource(s).describe() == "https://ops:***@h/hub?access_token=***"


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"hub_url": "ftp://x/h"}, "hub_url"),
        ({"hub_url": "https://x/h", "rest_url": "ws://x"}, "rest_url"),
        ({"hub_url": "https://x/h", "reconnect_min": 5.0, "reconnect_max": 1.0}, "reconnect_max"),
        ({"hub_url": "https://x/h", "max_calls": 1}, "max_calls"),
        ({"hub_url": "https://x/h", "backoff_base": 1.0, "reconnect_min": 1.0}, "backoff_base"),
    ],
)
def test_config_errors_name_the_key(tmp_path: Path, data: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(AnywhereNowSettings, table(tmp_path, {"name": "a", **data}))
    assert key in info.value.key
    assert "pa55" not in str(info.value)
