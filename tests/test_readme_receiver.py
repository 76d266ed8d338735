"""The README's example receiver, run exactly as printed (but on a free port), verifies
and prints what a real bridge delivers to it."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import trio

from bridge.simulators.uptivity import UptivitySimulator
from tests.helpers import running_bridge, wait_for, write_config

ROOT = Path(__file__).resolve().parent.parent


def readme_receiver() -> str:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    (code,) = [b for b in blocks if "WebhookVerifier" in b and "HTTPServer" in b]
    return code


async def test_readme_receiver_verifies_and_prints_events(tmp_path: Path, nursery) -> None:
    code = readme_receiver()
    secret = re.search(r'WebhookVerifier\(\["(whsec_[^"]+)"\]\)', code).group(1)
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
    finally:
        proc.kill()
        proc.wait()
