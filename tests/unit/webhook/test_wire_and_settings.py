"""Webhook wire format and settings: signatures a reference verifier accepts, warnings."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from standardwebhooks import Webhook

from bridge.config import ConfigError, load
from bridge.outbox import Row
from bridge.sinks.webhook.settings import DEMO_SECRET
from bridge.sinks.webhook.wire import Signer, encode
from tests.support.helpers import write_config

SECRET = "whsec_" + base64.b64encode(b"a-test-secret-of-some-length").decode()


def test_signatures_verify_with_the_reference_library_for_each_secret() -> None:
    other = "whsec_" + base64.b64encode(b"another-secret-0123456789").decode()
    body = json.dumps({"id": "x", "data": {"n": "é"}}, ensure_ascii=False).encode()
    now = datetime.now(UTC)
    headers = Signer([SECRET, other]).headers("msg_1", body, now)
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (SECRET, other):
        Webhook(secret).verify(body, headers)  # raises when wrong
    # Byte-for-byte: the reference library's own signature for the same input.
    assert Webhook(SECRET).sign("msg_1", now, body.decode()) == headers["webhook-signature"].split(" ")[0]


def test_binary_mode_puts_attributes_in_headers_and_data_in_the_body() -> None:
    envelope = {"specversion": "1.0", "id": "e1", "type": "t", "source": "/s", "subject": "a b%",
                "datacontenttype": "application/json", "data": {"k": "v"}}  # fmt: skip
    row = Row(1, "e1", "s", "t", "a b%", 0.0, json.dumps(envelope).encode())
    msg_id, headers, body = encode([row], "binary")
    assert msg_id == "e1" and headers["ce-subject"] == "a%20b%25"
    assert headers["content-type"] == "application/json" and json.loads(body) == {"k": "v"}
    assert "ce-data" not in headers


GOOD = """
[bridge]
state_dir = "{state}"
timezone = "UTC"

[[sources.uptivity]]
name = "up"
host = "127.0.0.1"

[[sinks.webhook]]
name = "hook"
{extra}
"""


def load_hook(tmp_path: Path, extra: str) -> tuple[object, list[str]]:
    path = write_config(tmp_path, GOOD.replace("{state}", str(tmp_path / "s")).replace("{extra}", extra))
    config = load(path)
    return config.sinks[0].component, config.warnings


def test_a_careful_config_gives_no_warning(tmp_path: Path) -> None:
    sink, warnings = load_hook(tmp_path, f'url = "https://hooks.example.com/x"\nsecrets = ["{SECRET}"]')
    assert warnings == []
    assert sink.max_in_flight == 4  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("extra", "key", "words"),
    [
        ('url = "https://hooks.example.com/x"', "sinks.webhook[0].secrets", "not signed"),
        (f'url = "http://10.1.2.3/x"\nsecrets = ["{SECRET}"]', "sinks.webhook[0].url", "plain http://"),
        (
            f'url = "https://hooks.example.com/x"\nsecrets = ["{SECRET}"]\nverify_tls = false',
            "sinks.webhook[0].verify_tls",
            "impersonate",
        ),
    ],
)
def test_insecure_setups_are_warned(tmp_path: Path, extra: str, key: str, words: str) -> None:
    _, warnings = load_hook(tmp_path, extra)
    assert any(w.startswith(key) and words in w for w in warnings), warnings


def test_http_to_loopback_is_not_warned(tmp_path: Path) -> None:
    _, warnings = load_hook(tmp_path, f'url = "http://127.0.0.1:9/x"\nsecrets = ["{SECRET}"]')
    assert warnings == []


def test_the_demo_secret_is_refused_outside_loopback(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="well-known demo secret"):
        load_hook(tmp_path, f'url = "https://hooks.example.com/x"\nsecrets = ["{DEMO_SECRET}"]')
    load_hook(tmp_path, f'url = "http://127.0.0.1:8080/events"\nsecrets = ["{DEMO_SECRET}"]')


def test_old_names_still_work_with_a_deprecation_warning(tmp_path: Path) -> None:
    sink, warnings = load_hook(
        tmp_path,
        f'url = "https://h.example.com/"\nsecrets = ["{SECRET}"]\n'
        "max_concurrency = 9\nbreaker_cooldown = 1.5",
    )
    assert sink.max_in_flight == 9 and sink.breaker.base == 1.5  # type: ignore[attr-defined]
    assert sum("deprecated" in w for w in warnings) == 2


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        ('url = "ftp://x/"', "http:// or https://"),
        ('url = "https://x/"\nsecrets = ["nope"]', "whsec_"),
        ('url = "https://x/"\nsecrets = ["whsec_!!!"]', "base64"),
        ('url = "https://x/"\nretry_schedule = []', "non-empty"),
        ('url = "https://x/"\nmax_in_flight = 0', "at least 1"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, extra: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_hook(tmp_path, extra)
