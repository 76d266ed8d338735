"""The README's example receiver, run exactly as printed (but on a free port), verifies
and prints what a real bridge delivers to it, and tells a bad signature (401) from a bad
body (400) and an oversized one (413) by the exception's type, as the README says.

The code is extracted from README.md on every run: there is no copy to drift."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import trio

from bridge.simulators.uptivity import UptivitySimulator
from tests.support.helpers import running_bridge, wait_for, write_config

ROOT = Path(__file__).resolve().parents[2]


def readme_receiver() -> str:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    (code,) = [b for b in blocks if "WebhookVerifier" in b and "HTTPServer" in b]
    return code


async def test_readme_receiver_verifies_and_prints_events(tmp_path: Path, nursery) -> None:
    code = readme_receiver()
    secret = re.search(r'WebhookVerifier\(\["(whsec_[^"]+)"\]', code).group(1)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = tmp_path / "receiver.py"
    script.write_text(code.replace('("127.0.0.1", 8080)', f'("127.0.0.1", {port})'))
    out = tmp_path / "receiver.out"
    proc = subprocess.Popen(
        [sys.executable, "-u", str(script)], stdout=out.open("w"), stderr=subprocess.STDOUT
    )
    try:
        sim = UptivitySimulator(rate=0, count=14, numbered=True)
        sim_port = await nursery.start(sim.serve)
        config = write_config(
            tmp_path,
            f"""
            [bridge]
            state_dir = "{tmp_path / "state"}"
            [[sources.uptivity]]
            name = "up"
            host = "127.0.0.1"
            port = {sim_port}
            [[sinks.webhook]]
            name = "readme"
            url = "http://127.0.0.1:{port}/"
            secrets = ["{secret}"]
            mode = "batch"
            retry_schedule = [0.1, 0.2, 0.3, 0.5, 0.5, 0.5, 0.5]
            """,
        )
        async with running_bridge(config) as bridge:
            await wait_for(lambda: bridge.sinks["readme"].health.delivered >= 14, timeout=30)
        await trio.sleep(0.2)
        lines = out.read_text().splitlines()
        assert sum(1 for line in lines if line.startswith("recording.")) == 10
        assert sum(1 for line in lines if line.startswith("call.")) == 4
        # A forged request is refused by the same receiver.
        async with httpx.AsyncClient() as client:
            forged = await client.post(
                f"http://127.0.0.1:{port}/",
                content=b"{}",
                headers={"webhook-id": "x", "webhook-timestamp": "1", "webhook-signature": "v1,AAAA"},
            )
            assert forged.status_code == 401
            # Signed by hand per the Standard Webhooks spec: the signature is good, the rest is not.
            not_json = b"not json"
            bad_body = await client.post(
                f"http://127.0.0.1:{port}/",
                content=not_json,
                headers={"content-type": "application/cloudevents+json", **sign(secret, "m1", not_json)},
            )
            data = b'{"device_id": "1111"}'
            binary = {
                "content-type": "application/json",
                "ce-specversion": "1.0",
                "ce-source": "/x",
                "ce-type": "recording.deleted",
                **sign(secret, "evt-1", data),
            }
            retargeted = await client.post(
                f"http://127.0.0.1:{port}/", content=data, headers={**binary, "ce-id": "evt-2"}
            )
            bound = await client.post(
                f"http://127.0.0.1:{port}/", content=data, headers={**binary, "ce-id": "evt-1"}
            )
            too_large = await trio.to_thread.run_sync(declare_too_large, port, secret)
        assert bad_body.status_code == 400 and "not JSON" in bad_body.text
        assert retargeted.status_code == 401 and "ce-id" in retargeted.text
        assert bound.status_code == 204
        assert too_large.startswith(b"HTTP/1.0 413"), too_large
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


def sign(secret: str, msg_id: str, body: bytes) -> dict[str, str]:
    ts = str(int(time.time()))
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": ts,
        "webhook-signature": "v1," + base64.b64encode(mac).decode(),
    }


def declare_too_large(port: int, secret: str) -> bytes:
    """Headers announcing a 2 MiB body, and no body: the receiver must answer without reading it."""
    headers = {"content-type": "application/cloudevents+json", **sign(secret, "m2", b"")}
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = f"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: {2 * 1024 * 1024}\r\n{head}\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request.encode())
        return sock.recv(4096)
