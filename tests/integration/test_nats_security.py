"""NATS sink authentication and TLS against a real nats-server: wrong credentials or an
untrusted certificate keep every event pending (never dropped) and say why in health."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.simulators.uptivity import UptivitySimulator
from tests.support.helpers import running_bridge, wait_for, write_config
from tests.support.nats_server import NatsServer, read_stream, running_server

pytestmark = [pytest.mark.needs_nats]

TOKEN = "s3cret-token-for-tests"


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def config(tmp_path: Path, sim_port: int, url: str, sink: str) -> Path:
    return write_config(
        tmp_path,
        f"""
[bridge]
state_dir = "{tmp_path / "state"}"

[admin]
enabled = false

[[sources.uptivity]]
name = "up"
host = "127.0.0.1"
port = {sim_port}

[[sinks.nats]]
name = "js"
servers = ["{url}"]
stream = "EVENTS"
create_stream = true
reconnect_min = 0.05
reconnect_max = 0.3
connect_timeout = 2
{sink}
""",
    )


@pytest.fixture
def token_server(tmp_path: Path) -> Iterator[NatsServer]:
    yield from running_server(tmp_path, "--auth", TOKEN)


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[NatsServer]:
    cert, key = self_signed(tmp_path)
    yield from running_server(tmp_path, "--tls", "--tlscert", str(cert), "--tlskey", str(key), scheme="tls")


async def test_token_auth_and_a_wrong_token_keeps_events_pending(
    tmp_path, nursery, token_server, log_capture
) -> None:
    sim = UptivitySimulator(rate=0, count=7, numbered=True)
    sim_port = await nursery.start(sim.serve)
    bad = config(tmp_path, sim_port, token_server.url, 'token = "wrong-token-value"')
    async with running_bridge(bad) as bridge:
        sink = bridge.sinks["js"]
        await wait_for(lambda: sink.health.state == "retrying" and "uthorization" in sink.health.detail)
        await wait_for(lambda: bridge.committer.committed == 7)
        assert sink.health.delivered == 0
    assert "wrong-token-value" not in log_capture.getvalue()
    good = config(tmp_path, sim_port, token_server.url, f'token = "{TOKEN}"')
    async with running_bridge(good) as bridge:
        # The events committed while the token was wrong are delivered now.
        await wait_for(lambda: bridge.sinks["js"].health.delivered == 7)
    messages = await read_stream(token_server.url, "EVENTS", token=TOKEN)
    assert len(messages) == 7
    assert TOKEN not in log_capture.getvalue()


async def test_tls_is_verified_and_a_ca_file_can_be_trusted(tmp_path, nursery, tls_server) -> None:
    sim = UptivitySimulator(rate=0, count=5, numbered=True)
    sim_port = await nursery.start(sim.serve)
    untrusted = config(tmp_path, sim_port, tls_server.url, "")
    async with running_bridge(untrusted) as bridge:
        sink = bridge.sinks["js"]
        await wait_for(
            lambda: sink.health.state == "retrying" and "CERTIFICATE_VERIFY_FAILED" in sink.health.detail
        )
        assert sink.health.delivered == 0
    trusted = config(tmp_path, sim_port, tls_server.url, f'ca_file = "{tmp_path / "cert.pem"}"')
    async with running_bridge(trusted) as bridge:
        await wait_for(lambda: bridge.sinks["js"].health.delivered == 5)
        assert bridge.sinks["js"].health.extra["connected"] is True
