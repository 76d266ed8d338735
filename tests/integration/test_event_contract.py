"""The event contract over real sockets: every event a run of the three vendors' simulators
produces conforms to its schema in both CloudEvents modes (and in the log sink), and an
endpoint with ``redact = { "ani" = "mask" }`` receives masked numbers with valid signatures.

Signatures are checked with the Standard Webhooks reference library (``standardwebhooks``),
not with the bridge's own receiver.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from standardwebhooks import Webhook

from bridge import logs
from bridge.asgi import serve_asgi
from bridge.config import load
from bridge.service import Bridge
from tests.integration.operators import SECRET, _serve, simulator_for, three_vendor_config
from tests.support.helpers import read_jsonl, running_bridge, wait_for, write_config
from tests.support.nats_server import NatsServer, read_stream, running_server
from tests.support.receivers import Receiver
from tests.unit.contract.conformance import check_binary, check_structured

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "uptivity"
ANI = "+1 (555) 010-4567"


async def until(predicate: Any, what: str, timeout: float = 60) -> None:
    """wait_for with a message saying which condition never came true."""
    with trio.move_on_after(timeout):
        while not predicate():
            await trio.sleep(0.05)
        return
    raise AssertionError(f"not within {timeout}s: {what}")


def _vendor(event: dict[str, Any]) -> str:
    return str(event["source"]).split("/")[2]


async def test_every_event_of_a_three_vendor_run_conforms_in_both_modes(tmp_path: Path, nursery) -> None:
    structured, binary = Receiver(), Receiver()
    s_port = await nursery.start(serve_asgi, structured.app)
    b_port = await nursery.start(serve_asgi, binary.app)
    path = three_vendor_config(
        tmp_path, hooks={"structured": s_port}, admin_port=0, admin_extra="enabled = false"
    )
    path.write_text(
        path.read_text()
        + f"""
[[sinks.webhook]]
name = "binary"
url = "http://127.0.0.1:{b_port}/events"
secrets = ["{SECRET}"]
mode = "binary"
retry_schedule = [0.05, 0.1]

[[sinks.log]]
name = "log"
path = "{tmp_path / "events.jsonl"}"
"""
    )
    config = load(path)
    simulators = {c.name: simulator_for(c) for c in config.sources}
    scopes = {name: await nursery.start(_serve, sim) for name, sim in simulators.items()}
    logs.redactor.update(config.secrets.values)
    bridge = Bridge(config, shutdown_grace=1.0)
    await nursery.start(bridge.run)
    try:

        def seen() -> list[dict[str, Any]]:
            return [e for r in structured.requests for e in r.events()]

        def live() -> bool:
            return {_vendor(e) for e in seen()} >= {"uptivity", "anywherenow", "encore"} and bool(
                binary.requests
            )

        await until(live, "events of all three vendors in both modes")

        def open_call() -> bool:
            """A call the AnywhereNow simulator has recording and the bridge last saw started."""
            last: dict[str, str] = {}
            for e in seen():
                if _vendor(e) == "anywherenow":
                    last[e["subject"]] = e["type"]
            return any(
                call.recording in (1, 3)
                and last.get(call.correlation_id)
                in ("recording.started", "recording.paused", "recording.resumed")
                for call in simulators["anywherenow"].sim.calls.values()
            )

        await until(open_call, "an AnywhereNow call in progress")
        # Restart the AnywhereNow and Uptivity simulators now (no checkpoint since the check):
        # the sources reconnect and reconcile; the fresh AnywhereNow simulator does not know
        # the call in progress, so reconciliation announces its end (reconciled = true).
        restarted = [c for c in config.sources if c.kind in ("anywherenow", "uptivity")]
        for configured in restarted:
            scopes[configured.name].cancel()
        await until(
            lambda: not any(bridge.sources[c.name].health.ready for c in restarted), "sources saw the restart"
        )
        for configured in restarted:
            await nursery.start(_serve, simulator_for(configured))

        def reconciled() -> bool:
            return any(isinstance(e.get("data"), dict) and e["data"].get("reconciled") for e in seen())

        await until(reconciled, "a reconciled event after the restart")
        # Let both sinks catch up with what was committed so far.
        committed = bridge.committer.committed
        await until(
            lambda: len(structured.journal) >= committed and len(binary.journal) >= committed,
            f"both receivers got the {committed} committed events",
        )
    finally:
        bridge.request_stop()

    checked: dict[str, set[str]] = {"structured": set(), "binary": set(), "log": set()}
    for request in structured.requests:
        assert request.headers["content-type"] == "application/cloudevents+json"
        event = json.loads(request.body)
        check_structured(event)
        checked["structured"].add(event["type"])
    for request in binary.requests:
        check_binary(request.headers, request.body)
        checked["binary"].add(request.headers["ce-type"])
    for event in read_jsonl(tmp_path / "events.jsonl"):
        check_structured(event)
        checked["log"].add(event["type"])
    # The run covered starts, stops and pauses of all three vendors (not a vacuous pass).
    for mode, types in checked.items():
        assert {"recording.started", "recording.stopped", "recording.paused"} <= types, (mode, types)
    assert len(structured.requests) >= committed and len(binary.requests) >= committed
    assert any(json.loads(r.body)["data"].get("reconciled") for r in structured.requests), (
        "reconciled events were checked"
    )


async def proxy(document: bytes, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    """A minimal Event Proxy from the docs: answer EVENTS with API_OK, then send ``document``."""

    async def handle(stream: trio.SocketStream) -> None:
        request = b""
        while b"</REQUEST>" not in request:
            request += await stream.receive_some(4096)
        await stream.send_all((FIXTURES / "16.2-result-events-L2898.xml").read_bytes() + b"\r\n" + document)
        await trio.sleep_forever()

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(handle, listeners)


async def test_redact_mask_reaches_a_real_receiver_with_valid_signatures(tmp_path: Path, nursery) -> None:
    callstart = (FIXTURES / "16.2-callcopyevent-callstart-L2915.xml").read_bytes()
    assert b"<ANI></ANI>" in callstart
    port = await nursery.start(
        proxy, callstart.replace(b"<ANI></ANI>", f"<ANI>{ANI}</ANI>".encode()) + b"\r\n"
    )
    receivers = {mode: Receiver() for mode in ("structured", "binary")}
    ports = {mode: await nursery.start(serve_asgi, r.app) for mode, r in receivers.items()}
    sinks = "".join(
        f"""
[[sinks.webhook]]
name = "pci-{mode}"
url = "http://127.0.0.1:{ports[mode]}/events"
secrets = ["{SECRET}"]
mode = "{mode}"

[sinks.webhook.shape]
redact = {{ "ani" = "mask" }}
"""
        for mode in receivers
    )
    config = write_config(
        tmp_path,
        f"""
[bridge]
state_dir = "{tmp_path / "state"}"
timezone = "America/Chicago"

[admin]
enabled = false

[[sources.uptivity]]
name = "up"
host = "127.0.0.1"
port = {port}
{sinks}
[[sinks.log]]
name = "masked-log"
path = "{tmp_path / "masked.jsonl"}"

[sinks.log.shape]
redact = {{ "ani" = "mask" }}

[[sinks.log]]
name = "full-log"
path = "{tmp_path / "full.jsonl"}"
""",
    )
    async with running_bridge(config) as bridge:
        await wait_for(lambda: all(s.health.delivered >= 1 for s in bridge.sinks.values()), timeout=30)

    full = [e for e in read_jsonl(tmp_path / "full.jsonl") if e["type"] == "call.started"]
    assert len(full) == 1 and full[0]["data"]["ani"] == ANI  # the unshaped sink sees the number
    masked_ani = "*" * (len(ANI) - 4) + "4567"
    hook = Webhook(SECRET)
    seen = {}
    for mode, receiver in receivers.items():
        requests = [
            r for r in receiver.requests if b"CALLSTART" in r.body or "call.started" in str(r.headers)
        ]
        assert len(requests) == 1, mode
        request = requests[0]
        assert "555" not in request.body.decode(), f"{mode}: the number leaked"
        hook.verify(request.body, request.headers)  # raises unless the signature is valid
        tampered = request.body.replace(b"4567", b"4568", 1)
        try:
            hook.verify(tampered, request.headers)
        except Exception:
            pass
        else:
            raise AssertionError("a tampered body verified")
        data = json.loads(request.body)
        if mode == "structured":
            check_structured(data)
            assert data["id"] == full[0]["id"], "shaping leaves the deterministic id alone"
            data = data["data"]
        else:
            check_binary(request.headers, request.body)
            assert request.headers["ce-id"] == request.headers["webhook-id"] == full[0]["id"]
        assert data["ani"] == masked_ani
        assert data["raw"]["EVENTDATA"]["ANI"] == masked_ani
        assert {"field": "ani", "action": "mask"} in data["redacted"]
        seen[mode] = data
    assert seen["structured"] == seen["binary"]
    (logged,) = [e for e in read_jsonl(tmp_path / "masked.jsonl") if e["type"] == "call.started"]
    assert logged["data"]["ani"] == masked_ani and "555" not in json.dumps(logged)
    assert logged["id"] == full[0]["id"]


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    yield from running_server(tmp_path)


async def test_a_shaped_nats_sink_publishes_masked_conforming_events(
    tmp_path: Path, nursery, nats_server: NatsServer
) -> None:
    server = nats_server
    callstart = (FIXTURES / "16.2-callcopyevent-callstart-L2915.xml").read_bytes()
    document = callstart.replace(b"<ANI></ANI>", f"<ANI>{ANI}</ANI>".encode()) + b"\r\n"
    port = await nursery.start(proxy, document)
    config = write_config(
        tmp_path,
        f"""
[bridge]
state_dir = "{tmp_path / "state"}"
timezone = "America/Chicago"

[admin]
enabled = false

[[sources.uptivity]]
name = "up"
host = "127.0.0.1"
port = {port}

[[sinks.nats]]
name = "js"
servers = ["{server.url}"]
stream = "EVENTS"
create_stream = true

[sinks.nats.shape]
redact = {{ "ani" = "mask" }}
exclude_fields = ["user_fields"]
""",
    )
    async with running_bridge(config) as bridge:
        await wait_for(lambda: bridge.sinks["js"].health.delivered >= 1, timeout=30)
    messages = [
        m for m in await read_stream(server.url, "EVENTS") if m.headers.get("ce-type") == "call.started"
    ]
    assert len(messages) == 1
    (message,) = messages
    assert "555" not in message.body.decode()
    event = json.loads(message.body)
    check_structured(event)
    assert message.headers["Nats-Msg-Id"] == event["id"]
    assert event["data"]["ani"] == "*" * (len(ANI) - 4) + "4567"
    assert "user_fields" not in event["data"]
    assert {"field": "user_fields", "action": "drop"} in event["data"]["redacted"]
