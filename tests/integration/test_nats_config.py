"""The [[sinks.nats]] table: defaults, secrets, and errors that name the key and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.config import ConfigError, load
from bridge.sinks.nats import default_stream_subjects, render_subject
from tests.support.helpers import write_config

BASE = """
[bridge]
state_dir = "{state}"

[[sources.uptivity]]
name = "up"
host = "127.0.0.1"

[[sinks.nats]]
name = "js"
"""


def load_sink(tmp_path: Path, extra: str):
    path = write_config(tmp_path, BASE.replace("{state}", str(tmp_path / "state")) + extra)
    config = load(path)
    (sink,) = [c.component for c in config.sinks]
    return sink, config


def test_defaults_and_stream_settings(tmp_path: Path) -> None:
    sink, _ = load_sink(tmp_path, 'stream = "EVENTS"\ncreate_stream = true\nmax_age = 86400\n')
    assert sink.kind == "nats"
    assert sink.servers == ["nats://127.0.0.1:4222"]
    assert sink.subject == "events.{vendor}.{type}"
    assert sink.create_stream is not None
    assert sink.create_stream.subjects == ["events.>"]
    assert (sink.create_stream.duplicate_window, sink.create_stream.max_age) == (120.0, 86400.0)
    assert sink.settings.verify_tls is True


def test_password_and_token_are_registered_as_secrets(tmp_path: Path) -> None:
    _, config = load_sink(tmp_path, 'user = "bridge"\npassword = "hunter2-long"\n')
    assert "hunter2-long" in config.secrets.values
    _, config = load_sink(tmp_path, 'token = "tok-123456"\n')
    assert "tok-123456" in config.secrets.values


@pytest.mark.parametrize(
    ("extra", "key", "words"),
    [
        ('subject = "events.{vendr}.{type}"', "sinks.nats[0].subject", "unknown placeholder {vendr}"),
        ('subject = "events..{type}"', "sinks.nats[0].subject", "valid NATS subject"),
        ('subject = "events.*.{type}"', "sinks.nats[0].subject", "valid NATS subject"),
        ("create_stream = true", "sinks.nats[0].create_stream", 'stream = "EVENTS"'),
        ('servers = ["http://127.0.0.1:4222"]', "sinks.nats[0].servers[0]", "nats://host:port"),
        ('servers = ["nats://u:p@127.0.0.1:4222"]', "sinks.nats[0].servers[0]", "not in the URL"),
        ('user = "a"\ntoken = "tok-123456"', "sinks.nats[0].token", "one authentication method"),
        ('password = "secret-pw"', "sinks.nats[0].password", "needs user"),
        ('creds_file = "/nonexistent/bridge.creds"', "sinks.nats[0].creds_file", "does not exist"),
        ('stream = "EV ENTS"', "sinks.nats[0].stream", "not a valid stream name"),
    ],
)
def test_errors_name_the_key(tmp_path: Path, extra: str, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_sink(tmp_path, extra + "\n")
    assert info.value.key == key
    assert words in info.value.message


def test_subject_template_placeholders_are_made_safe() -> None:
    event = {
        "id": "abc",
        "type": "call.started",
        "subject": "call 42.7*",
        "data": {"vendor": "uptivity"},
    }
    assert render_subject("events.{vendor}.{type}", event, "up") == "events.uptivity.call.started"
    assert render_subject("ev.{source}.{subject}.{id}", event, "site.a") == "ev.site_a.call_42_7_.abc"
    assert render_subject("ev.{subject}", {"type": "x"}, "up") == "ev._"
    assert render_subject("ev.{type}", {"type": "vendor..odd"}, "up") == "ev.vendor._.odd"
    assert default_stream_subjects("bridge.events.{vendor}.{type}") == ["bridge.events.>"]
    assert default_stream_subjects("{vendor}.{type}") == [">"]


def test_ha_example_loads() -> None:
    config = load(Path(__file__).parents[2] / "config" / "nats-ha.example.toml")
    (source,) = [c.component for c in config.sources]
    (sink,) = [c.component for c in config.sinks]
    assert source.name == "uptivity-main"
    assert sink.stream == "EVENTS" and sink.create_stream is not None
    assert sink.create_stream.duplicate_window == 3600.0
    assert len(sink.servers) == 3


def test_old_names_still_work_with_a_deprecation_warning(tmp_path: Path) -> None:
    sink, config = load_sink(
        tmp_path, "max_inflight = 8\nretry_min = 0.1\nretry_max = 2\npublish_timeout = 3\n"
    )
    s = sink.settings
    assert (s.max_in_flight, s.reconnect_min, s.reconnect_max, s.timeout) == (8, 0.1, 2.0, 3.0)
    assert sink.max_in_flight == 8
    for old, new in (
        ("max_inflight", "max_in_flight"),
        ("retry_min", "reconnect_min"),
        ("publish_timeout", "timeout"),
    ):
        assert any(f"sinks.nats[0].{old}: is deprecated, call it {new!r}" in w for w in config.warnings)
    with pytest.raises(ConfigError) as info:
        load_sink(tmp_path, "max_inflight = 8\nmax_in_flight = 9\n")
    assert info.value.key == "sinks.nats[0].max_inflight"


@pytest.mark.parametrize(
    ("extra", "warned"),
    [
        (
            'servers = ["nats://nats.example.com:4222"]\nuser = "bridge"\npassword = "hunter2-long"',
            "password",
        ),
        ('servers = ["nats://10.0.0.5:4222"]\ntoken = "tok-123456"', "token"),
        ('servers = ["tls://nats.example.com:4222"]\ntoken = "tok-123456"', None),
        ('servers = ["nats://nats.example.com:4222"]\ntls = true\ntoken = "tok-123456"', None),
        ('servers = ["nats://127.0.0.1:4222"]\ntoken = "tok-123456"', None),  # never leaves the host
        ('servers = ["nats://nats.example.com:4222"]', None),  # nothing secret to send
    ],
)
def test_a_password_or_token_without_tls_is_warned_about(
    tmp_path: Path, extra: str, warned: str | None, capsys
) -> None:
    _, config = load_sink(tmp_path, extra + "\n")
    clear = [w for w in config.warnings if "sent in clear" in w]
    if warned is None:
        assert clear == []
    else:
        assert len(clear) == 1 and clear[0].startswith(f"sinks.nats[0].{warned}: ")
        assert "tok-123456" not in clear[0] and "hunter2-long" not in clear[0]
        # check-config prints it
        from bridge import cli

        path = tmp_path / "bridge.toml"
        assert cli.main(["check-config", "--config", str(path)]) == 0
        assert "sent in clear" in capsys.readouterr().err
