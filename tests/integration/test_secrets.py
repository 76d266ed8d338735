"""No configured secret ever leaves the bridge: not in logs, quarantine, /metrics or the CLI.

The whole pipeline runs (real bridge process, all three vendor simulators, four webhook
endpoints) with distinctive secret strings in every place a secret can be configured:
webhook ``whsec_`` signing secrets, a custom Authorization header, the SignalR access
token, HTTP basic credentials in the Encore URL. Errors that are likely to quote them
are forced: a wrong hub token first, an unreachable endpoint, a receiver answering 500
and one answering 400 that echoes the request headers (which lands in the dead-letter
excerpt), TLS verification off (which logs the URL). Then every output is searched.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from bridge.asgi import serve_asgi
from bridge.receiver import WebhookVerifier
from bridge.simulators.anywherenow import AnywhereNowSimulator
from bridge.simulators.encore import EncoreSimulator
from bridge.simulators.uptivity import UptivitySimulator
from tests.support.helpers import LogCapture, running_bridge, wait_for, write_config
from tests.support.receivers import Receiver

WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"LEAKCHECK-webhook-signing-key-01").decode()
ROTATED_SECRET = "whsec_" + base64.b64encode(b"LEAKCHECK-webhook-rotated-key-02").decode()
AUTH_HEADER = "Bearer LEAKCHECK-hook-authorization-7f3a"
HUB_TOKEN = "LEAKCHECK-hub-token-right-5c1e"
WRONG_HUB_TOKEN = "LEAKCHECK-hub-token-wrong-9b2d"
ENCORE_PASSWORD = "LEAKCHECK-encore-basic-pass-4e8"
UCC = "ucc-secrets"


def needles() -> list[str]:
    """Every secret as configured, plus the decoded signing keys and header value alone."""
    out = [WEBHOOK_SECRET, ROTATED_SECRET, AUTH_HEADER, HUB_TOKEN, WRONG_HUB_TOKEN, ENCORE_PASSWORD]
    out += [base64.b64decode(s.removeprefix("whsec_")).decode() for s in (WEBHOOK_SECRET, ROTATED_SECRET)]
    out += [s.removeprefix("whsec_") for s in (WEBHOOK_SECRET, ROTATED_SECRET)]
    out.append(AUTH_HEADER.removeprefix("Bearer "))
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def echo_headers_400(receiver: Receiver, headers: dict[str, str], body: bytes) -> Any:
    """A receiver that refuses and quotes the request back, secrets included."""
    return 400, {"content-type": "text/plain"}, json.dumps(headers).encode()


async def fail_500(receiver: Receiver, headers: dict[str, str], body: bytes) -> Any:
    return 500, {}, f"internal error while handling {headers.get('authorization')}".encode()


def config_text(
    tmp_path: Path,
    *,
    up: int,
    anw: AnywhereNowSimulator,
    enc: int,
    hooks: dict[str, int],
    token: str,
    admin: int,
) -> str:
    sinks = "".join(
        f"""
[[sinks.webhook]]
name = "{name}"
url = "http://127.0.0.1:{port}/hook"
secrets = ["{WEBHOOK_SECRET}", "{ROTATED_SECRET}"]
headers = {{ Authorization = "{AUTH_HEADER}" }}
retry_schedule = [0.05, 0.1]
timeout = 2.0
breaker_cooldown = 0.2
"""
        for name, port in hooks.items()
    )
    return f"""
[bridge]
state_dir = "{tmp_path / "state"}"
log_level = "debug"

[admin]
listen = "127.0.0.1:{admin}"

[[sources.uptivity]]
name = "up"
host = "127.0.0.1"
port = {up}
reconnect_min = 0.05
reconnect_max = 0.2

[[sources.anywherenow]]
name = "anw"
hub_url = "{anw.hub_url()}"
rest_url = "{anw.rest_url()}"
access_token = "{token}"
ucc_names = ["{UCC}"]
backoff_base = 0.05
backoff_cap = 0.2

[[sources.encore]]
name = "enc"
url = "{encore_url(enc)}"
interval = 0.1
verify_tls = false
api_version = "7.1"

[[sources.encore.ports]]
unit = 1
port = 3
{sinks}
"""


def encore_url(port: int) -> str:
    return f"http://svc-user:{ENCORE_PASSWORD}@127.0.0.1:{port}/WebAPI/ECAPI.svc"


def run_receive(body: bytes, headers: dict[str, str], secret_file: Path) -> str:
    """`event-bridge receive` (secrets from a file and the environment) given one real
    delivery and one forged request: everything it printed."""
    port = free_port()
    env = {**os.environ, "EVENT_BRIDGE_WEBHOOK_SECRET": ROTATED_SECRET}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-u",
            "-m",
            "bridge",
            "receive",
            "--port",
            str(port),
            "--secret-file",
            str(secret_file),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        for _ in range(600):
            if _port_open(port):
                break
            time.sleep(0.05)
        good = httpx.post(f"http://127.0.0.1:{port}/", content=body, headers=headers, timeout=10)
        forged = httpx.post(
            f"http://127.0.0.1:{port}/",
            content=body,
            headers={**headers, "webhook-signature": "v1,AAAA"},
            timeout=10,
        )
        assert (good.status_code, forged.status_code) == (204, 401)
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    return out.decode("utf-8", "replace") + good.text + forged.text


def run_cli(*args: str) -> str:
    """A CLI command's whole output (stdout + stderr), whatever its exit status."""
    done = subprocess.run(
        [sys.executable, "-m", "bridge", *args], capture_output=True, text=True, timeout=60, check=False
    )
    return done.stdout + done.stderr


@pytest.mark.slow
async def test_no_secret_appears_in_any_output(
    tmp_path: Path, nursery: trio.Nursery, log_capture: LogCapture
) -> None:
    up_sim = UptivitySimulator(rate=20, numbered=True)
    up = await nursery.start(up_sim.serve)
    anw_sim = AnywhereNowSimulator(require_token=HUB_TOKEN)
    await nursery.start(anw_sim.serve)
    enc_sim = EncoreSimulator()
    enc = await nursery.start(serve_asgi, enc_sim.app)
    ok, five_hundred, echo = Receiver(), Receiver(fail_500), Receiver(echo_headers_400)
    hooks = {
        "ok": await nursery.start(serve_asgi, ok.app),
        "fails": await nursery.start(serve_asgi, five_hundred.app),
        "echo": await nursery.start(serve_asgi, echo.app),
        "down": free_port(),  # nothing listens there
    }
    admin = free_port()
    outputs: dict[str, str] = {}

    async def run_process(label: str, token: str, until: Any) -> None:
        config = write_config(
            tmp_path,
            config_text(tmp_path, up=up, anw=anw_sim, enc=enc, hooks=hooks, token=token, admin=admin),
            name=f"{label}.toml",
        )
        stderr = tmp_path / f"{label}.stderr"
        with stderr.open("wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "bridge", "run", "--config", str(config), "--shutdown-grace", "1"],
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
            try:
                await wait_for(until, timeout=30)
                async with httpx.AsyncClient() as client:
                    await wait_for(lambda: _port_open(admin), timeout=10)
                    for path in ("/metrics", "/readyz", "/healthz"):
                        outputs[f"{label} {path}"] = (
                            await client.get(f"http://127.0.0.1:{admin}{path}")
                        ).text
            finally:
                proc.send_signal(signal.SIGTERM)
                await trio.to_thread.run_sync(proc.wait)
        outputs[f"{label} stderr"] = stderr.read_text()
        outputs[f"{label} dlq list"] = run_cli("dlq", "list", "--config", str(config))
        outputs[f"{label} dlq list --json"] = run_cli("dlq", "list", "--config", str(config), "--json")
        outputs[f"{label} dlq retry (no such sink)"] = run_cli(
            "dlq", "retry", "--config", str(config), "--sink", "nope"
        )
        outputs[f"{label} check-config"] = run_cli("check-config", "--config", str(config))
        outputs[f"{label} tail"] = run_cli("tail", "--config", str(config), "--once", "--last", "1000")
        outputs[f"{label} tail --json"] = run_cli(
            "tail", "--config", str(config), "--once", "--last", "1000", "--json"
        )
        # A config error next to the secrets: the message quotes a URL with the password.
        broken = write_config(
            tmp_path,
            config.read_text().replace("interval = 0.1", f'interval = "{encore_url(enc)}"'),
            name=f"{label}-broken.toml",
        )
        outputs[f"{label} check-config (broken)"] = run_cli("check-config", "--config", str(broken))

    # 1. Wrong hub token: the hub refuses with 401, every webhook but "ok" fails its own way.
    await run_process(
        "wrong-token",
        WRONG_HUB_TOKEN,
        lambda: (
            len(ok.requests) >= 5
            and echo.requests
            and five_hundred.requests
            and any(r.kind == "http" and r.path.endswith("/negotiate") for r in anw_sim.requests)
        ),
    )
    # 2. The right token: the hub accepts; AnywhereNow events flow too.
    hub_calls = len(anw_sim.requests)

    async def hub_events() -> None:
        while True:
            if anw_sim.connected_clients:
                await anw_sim.send_state(UCC, "call-secret", "Start")
            await trio.sleep(0.2)

    nursery.start_soon(hub_events)
    await run_process(
        "right-token",
        HUB_TOKEN,
        lambda: (
            len(anw_sim.requests) > hub_calls
            and any(e["source"].endswith("/anw") for r in ok.requests for e in r.events())
        ),
    )
    # 3. The same, in-process, for the structlog capture itself.
    config = write_config(
        tmp_path,
        config_text(
            tmp_path, up=up, anw=anw_sim, enc=enc, hooks=hooks, token=WRONG_HUB_TOKEN, admin=free_port()
        ),
        name="in-process.toml",
    )
    async with running_bridge(config, grace=0.5):
        await wait_for(lambda: len(log_capture.events("anywherenow_connect_failed")) >= 2, timeout=30)
        await trio.sleep(1.0)
    outputs["in-process structlog"] = log_capture.getvalue()
    quarantine = tmp_path / "state" / "quarantine"
    for path in sorted(quarantine.rglob("*")) if quarantine.exists() else []:
        if path.is_file():
            outputs[f"quarantine {path.name}"] = path.read_bytes().decode("utf-8", "replace")

    # The receive command, on one of the real deliveries.
    secret_file = tmp_path / "webhook-secret"
    secret_file.write_text(WEBHOOK_SECRET + "\n")
    delivery = ok.requests[-1]
    outputs["receive"] = run_receive(delivery.body, dict(delivery.headers), secret_file)
    assert "webhook received" in outputs["receive"]

    # The errors really happened (so this test can fail), and events still flowed.
    everything = "\n".join(outputs.values())
    assert "negotiate answered HTTP 401" in everything
    assert "Connection refused" in everything or "ConnectError" in everything
    assert "status=500" in everything or '"status": 500' in everything
    assert "dead letter" in outputs["right-token dlq list"] and "echo" in outputs["right-token dlq list"]
    assert "event_bridge_events_received_total" in outputs["right-token /metrics"]
    assert "encore_tls_verification_disabled" in everything
    assert "interval" in outputs["right-token check-config (broken)"]
    assert "svc-user:***@" in outputs["right-token check-config (broken)"]
    assert (
        "recording." in outputs["right-token tail"] and '"specversion"' in outputs["right-token tail --json"]
    )
    verifier = WebhookVerifier([WEBHOOK_SECRET])
    assert verifier.verify(ok.requests[0].body, ok.requests[0].headers)
    assert echo.requests[0].headers["authorization"] == AUTH_HEADER  # the header was really sent

    leaks = [(where, secret) for where, text in outputs.items() for secret in needles() if secret in text]
    assert not leaks, f"secrets leaked: {leaks}"


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0
