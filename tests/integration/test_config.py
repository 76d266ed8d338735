"""Every config error names the file, the key and what to do; exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bridge.cli import main
from bridge.config import ConfigError, load
from tests.support.helpers import write_config

GOOD = """
[bridge]
state_dir = "{state}"
timezone = "Europe/Berlin"

[[sources.uptivity]]
name = "up"
host = "127.0.0.1"

[[sinks.log]]
name = "events"
stdout = true
"""


def config_with(tmp_path: Path, body: str) -> Path:
    return write_config(tmp_path, body.replace("{state}", str(tmp_path / "state")))


def test_good_config_loads_with_defaults(tmp_path: Path) -> None:
    config = load(config_with(tmp_path, GOOD))
    (source,) = [c.component for c in config.sources]
    assert (source.name, source.port, source.event_class, str(source.timezone)) == (
        "up",
        5620,
        "ALL",
        "Europe/Berlin",
    )
    assert config.state_dir == tmp_path / "state"


@pytest.mark.parametrize(
    ("mutation", "key", "message"),
    [
        (lambda s: s.replace('host = "127.0.0.1"', ""), "sources.uptivity[0].host", "required"),
        (
            lambda s: s.replace('host = "127.0.0.1"', "host = 5"),
            "sources.uptivity[0].host",
            "must be a string",
        ),
        (
            lambda s: s.replace('host = "127.0.0.1"', 'host = "h"\nprot = 1'),
            "sources.uptivity[0].prot",
            "not a known key",
        ),
        (
            lambda s: s.replace('host = "127.0.0.1"', 'host = "h"\nport = 70000'),
            "sources.uptivity[0].port",
            "at most 65535",
        ),
        (lambda s: s.replace("Europe/Berlin", "Mars/Olympus"), "bridge.timezone", "unknown time zone"),
        (
            lambda s: s.replace('host = "127.0.0.1"', 'host = "${EB_TEST_UNSET_VAR}"'),
            "sources.uptivity[0].host",
            "EB_TEST_UNSET_VAR",
        ),
        (
            lambda s: s.replace("[[sources.uptivity]]", "[[sources.nosuchvendor]]"),
            "sources.nosuchvendor",
            "no source kind",
        ),
        (
            lambda s: s.replace('name = "events"', 'name = "events"\npath = "/tmp/x.jsonl"'),
            "sinks.log[0].path",
            "exactly one",
        ),
        (
            lambda s: s + '\n[[sinks.log]]\nname = "events"\nstdout = true\n',
            "sinks.log[1].name",
            "used twice",
        ),
        (
            lambda s: s.replace('name = "up"', 'name = "bad name!"'),
            "sources.uptivity[0].name",
            "not a valid name",
        ),
        (
            lambda s: s.split("[[sources.uptivity]]")[0] + '[[sinks.log]]\nname = "e"\nstdout = true\n',
            "sources",
            "no source",
        ),
        (lambda s: s + "\n[nonsense]\nx = 1\n", "nonsense", "not a known key"),
        (
            lambda s: s.replace("[bridge]", '[bridge]\nlog_level = "loud"'),
            "bridge.log_level",
            "must be one of",
        ),
    ],
)
def test_each_error_names_file_key_and_problem(tmp_path: Path, mutation, key: str, message: str) -> None:
    path = config_with(tmp_path, mutation(GOOD))
    with pytest.raises(ConfigError) as info:
        load(path)
    assert info.value.key == key
    assert message in info.value.message
    assert str(path) in str(info.value)


def test_invalid_toml_reports_line(tmp_path: Path) -> None:
    path = config_with(tmp_path, GOOD + "\nthis is not toml\n")
    with pytest.raises(ConfigError, match=r"invalid TOML.*line"):
        load(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load(tmp_path / "nope.toml")


def test_env_substitution_and_secrets_are_recorded(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("EB_TEST_HOST", "proxy.example")
    config = load(config_with(tmp_path, GOOD.replace('"127.0.0.1"', '"${EB_TEST_HOST}"')))
    assert config.sources[0].component.host == "proxy.example"
    assert "proxy.example" in config.secrets.values


def test_credential_from_credentials_directory(tmp_path: Path, monkeypatch) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "proxy-host").write_text("from-credential\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    config = load(config_with(tmp_path, GOOD.replace('"127.0.0.1"', '"${credential:proxy-host}"')))
    assert config.sources[0].component.host == "from-credential"


def test_check_config_exit_codes(tmp_path: Path, capsys) -> None:
    good = config_with(tmp_path, GOOD)
    assert main(["check-config", "--config", str(good)]) == 0
    assert "OK" in capsys.readouterr().out
    bad = write_config(
        tmp_path, GOOD.replace("{state}", "x").replace("Europe/Berlin", "Nowhere/X"), "bad.toml"
    )
    assert main(["check-config", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.toml" in err and "bridge.timezone" in err and "IANA" in err


def test_check_config_as_a_real_process(tmp_path: Path) -> None:
    bad = config_with(tmp_path, GOOD.replace('host = "127.0.0.1"', ""))
    proc = subprocess.run(
        [sys.executable, "-m", "bridge", "check-config", "--config", str(bad)], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "sources.uptivity[0].host: is required but missing" in proc.stderr


def test_the_shipped_example_config_is_valid(tmp_path: Path) -> None:
    example = Path(__file__).parents[2] / "config" / "bridge.example.toml"
    config = load(example)
    kinds = {c.kind for c in config.sources}
    assert "uptivity" in kinds
