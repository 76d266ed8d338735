"""`tail` and `dlq list` cannot be made to print forged lines (issue 15, item 12).

A hostile Uptivity server sends a DEVICEID with ``&#10;`` (and a carriage return, a C1
CSI and a right-to-left override), and a hostile receiver refuses with an error page
that carries the same; both CLI commands then run as real processes on the outbox.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import trio

from bridge.asgi import serve_asgi
from bridge.simulators.uptivity import UptivitySimulator
from tests.support.helpers import running_bridge, wait_for, write_config
from tests.support.receivers import Receiver

FORGED = "2026-12-01T00:00:00.000 recording.deleted   /up  subject=9999"
DEVICE_XML = "1111&#10;" + FORGED + "&#13;&#x9b;&#x202e;"
RAW = ("\n", "\r", "\x9b", "\u202e", "\x1b")


async def refuse_with_forged_page(receiver: Receiver, headers: dict[str, str], body: bytes) -> Any:
    page = f"bad request\n{FORGED}\x1b[2J\r\u202e done"
    return 400, {"content-type": "text/plain; charset=utf-8"}, page.encode()


def cli(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "bridge", *args], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout


async def test_tail_and_dlq_list_escape_control_characters(tmp_path: Path, nursery: trio.Nursery) -> None:
    sim = UptivitySimulator(rate=0, count=0)
    sim_port = await nursery.start(sim.serve)
    hostile = Receiver(refuse_with_forged_page)
    hook_port = await nursery.start(serve_asgi, hostile.app)
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
        name = "hook"
        url = "http://127.0.0.1:{hook_port}/"
        secrets = ["whsec_ZXNjYXBpbmctdGVzdC1zZWNyZXQta2V5LTAwMDE="]
        """,
    )
    async with running_bridge(config) as bridge:
        await sim.wait_subscribers()
        doc = re.sub(
            rb"<DEVICEID>[^<]*</DEVICEID>", f"<DEVICEID>{DEVICE_XML}</DEVICEID>".encode(), sim.document(1)
        )
        await sim.inject(doc + sim.separator)
        await wait_for(lambda: bridge.sinks["hook"].health.dead >= 1, timeout=30)

    tail = cli("tail", "--config", str(config), "--last", "10", "--once")
    as_json = cli("tail", "--config", str(config), "--last", "10", "--once", "--json")
    dlq = cli("dlq", "list", "--config", str(config))

    # The event really carried the hostile device id (so this test can fail) ...
    events = [json.loads(line) for line in as_json.splitlines()]
    assert len(events) == 1
    assert events[0]["data"]["device_id"].startswith("1111\n" + FORGED)
    # ... and no output has a raw control character or a line the peer wrote.
    for output in (tail, as_json, dlq):
        assert not any(c in output for c in RAW[1:]), output
        assert not any(line.startswith(FORGED) for line in output.splitlines()), output
    assert len(tail.splitlines()) == 1 and "1111\\u000a2026-12-01" in tail
    assert "\\u009b\\u202e" in as_json
    assert dlq.splitlines()[0] == "1 dead letter(s)" and len(dlq.splitlines()) == 3, dlq
    assert "bad request\\u000a" + FORGED + "\\u001b[2J\\u000d\\u202e done" in dlq
