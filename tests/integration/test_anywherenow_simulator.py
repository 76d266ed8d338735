"""The AnywhereNow simulator speaks real SignalR and the documented REST API.

The decisive test runs the official Microsoft JavaScript client (@microsoft/signalr,
installed by ``npm ci --prefix tests/js``) against it with node. Missing node_modules is
a failure, not a skip: the proof that the simulator is real SignalR must not vanish.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Request, TextMessage

from bridge.simulators.anywherenow import AnywhereNowSimulator
from tests.support.helpers import wait_for

JS_DIR = Path(__file__).parents[1] / "js"
RS = "\x1e"


def js_client_ready() -> None:
    node = shutil.which("node")
    assert node, "node is not installed; the SignalR interoperability test needs it"
    assert (JS_DIR / "node_modules" / "@microsoft" / "signalr").is_dir(), (
        "tests/js/node_modules is missing: run `npm ci --prefix tests/js` first"
    )


async def read_json_line(stream: trio.abc.ReceiveStream, buffer: bytearray) -> dict[str, Any]:
    while b"\n" not in buffer:
        chunk = await stream.receive_some(65536)
        assert chunk, f"node client exited early; output so far: {bytes(buffer)!r}"
        buffer.extend(chunk)
    line, _, rest = bytes(buffer).partition(b"\n")
    buffer[:] = rest
    return json.loads(line)


@pytest.mark.needs_node
@pytest.mark.needs_node
async def test_official_javascript_client_receives_an_event_and_a_close(nursery: trio.Nursery) -> None:
    js_client_ready()
    sim = AnywhereNowSimulator(require_token="js-token-123", ping_interval=0.2)
    await nursery.start(sim.serve)
    process = await trio.lowlevel.open_process(
        [
            "node",
            str(JS_DIR / "anywherenow_client.mjs"),
            sim.hub_url(),
            "RecordingStateChangedEvent",
            "js-token-123",
        ],
        stdout=subprocess.PIPE,
        cwd=str(JS_DIR),
    )
    assert process.stdout is not None
    buffer = bytearray()
    try:
        with trio.fail_after(30):
            hello = await read_json_line(process.stdout, buffer)
            assert "connected" in hello, hello
            await sim.wait_for_clients(1)
            await trio.sleep(0.5)  # a few pings go by; the client must keep the connection
            assert sim.connected_clients == 1
            assert await sim.send_state("ucc-demo-name", "js-call", 1) == 1
            got = await read_json_line(process.stdout, buffer)
            assert got == {
                "event": {"uccName": "ucc-demo-name", "correlationId": "js-call", "stateAction": 1}
            }
            await sim.drop_connections("close", error="Simulated shutdown")
            closed = await read_json_line(process.stdout, buffer)
            assert "Simulated shutdown" in (closed["closed"] or ""), closed
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    negotiate = next(r for r in sim.requests if r.path.endswith("/negotiate"))
    assert negotiate.query["negotiateVersion"] == ["1"]
    assert negotiate.headers["authorization"] == "Bearer js-token-123"
    websocket = next(r for r in sim.requests if r.kind == "websocket")
    assert websocket.headers["x-js-client"] == "microsoft-signalr"


async def raw_hub_client(
    sim: AnywhereNowSimulator, negotiate_version: int | None
) -> tuple[trio.SocketStream, WSConnection, str]:
    """A minimal hand-rolled client: negotiate, upgrade, handshake (for protocol details)."""
    async with httpx.AsyncClient() as client:
        query = "" if negotiate_version is None else f"?negotiateVersion={negotiate_version}"
        answer = (await client.post(sim.hub_url() + "/negotiate" + query)).json()
    ident = answer.get("connectionToken") or answer["connectionId"]
    stream = await trio.open_tcp_stream("127.0.0.1", sim.port)
    ws = WSConnection(ConnectionType.CLIENT)
    await stream.send_all(ws.send(Request(host="127.0.0.1", target=f"{sim.hub_path}?id={ident}")))
    events: list[Any] = []
    while not any(isinstance(e, AcceptConnection) for e in events):
        ws.receive_data(await stream.receive_some(65536))
        events.extend(ws.events())
    await stream.send_all(ws.send(TextMessage(data=json.dumps({"protocol": "json", "version": 1}) + RS)))
    return stream, ws, json.dumps(answer)


async def next_records(stream: trio.SocketStream, ws: WSConnection) -> list[Any]:
    while True:
        for event in ws.events():
            if isinstance(event, TextMessage):
                return [json.loads(r) for r in event.data.split(RS) if r]
            if isinstance(event, CloseConnection):
                return [("closed", event.code)]
        ws.receive_data(await stream.receive_some(65536))


async def test_negotiate_versions_handshake_ping_invocation_and_close(nursery: trio.Nursery) -> None:
    sim = AnywhereNowSimulator(ping_interval=0.05, casing="pascal", action_as_name=True)
    await nursery.start(sim.serve)
    with trio.fail_after(10):
        for version in (None, 1):
            stream, ws, answer = await raw_hub_client(sim, version)
            negotiated = json.loads(answer)
            if version is None:
                assert negotiated["negotiateVersion"] == 0 and "connectionToken" not in negotiated
            else:
                assert negotiated["negotiateVersion"] == 1 and negotiated["connectionToken"]
            assert negotiated["availableTransports"][0]["transport"] == "WebSockets"
            assert await next_records(stream, ws) == [{}]  # handshake response
            assert await next_records(stream, ws) == [{"type": 6}]  # ping
            await sim.wait_for_clients(1)
            await sim.send_state("u", "c", 3)
            records = await next_records(stream, ws)
            while records == [{"type": 6}]:
                records = await next_records(stream, ws)
            assert records == [
                {
                    "type": 1,
                    "target": "RecordingStateChangedEvent",
                    "arguments": [{"UccName": "u", "CorrelationId": "c", "StateAction": "Pause"}],
                }
            ]
            await sim.drop_connections("close", error="bye")
            records = await next_records(stream, ws)
            while records == [{"type": 6}]:
                records = await next_records(stream, ws)
            assert records == [{"type": 7, "error": "bye", "allowReconnect": True}]
            assert await next_records(stream, ws) == [("closed", 1000)]
            await stream.aclose()
            await wait_for(lambda: sim.connected_clients == 0)


async def test_websocket_with_an_unknown_connection_id_is_refused(nursery: trio.Nursery) -> None:
    sim = AnywhereNowSimulator()
    await nursery.start(sim.serve)
    stream = await trio.open_tcp_stream("127.0.0.1", sim.port)
    ws = WSConnection(ConnectionType.CLIENT)
    await stream.send_all(ws.send(Request(host="127.0.0.1", target=f"{sim.hub_path}?id=forged")))
    with trio.fail_after(5):
        data = await stream.receive_some(65536)
    assert data.startswith(b"HTTP/1.1 403")
    await stream.aclose()


async def test_rest_state_set_and_capabilities(nursery: trio.Nursery) -> None:
    sim = AnywhereNowSimulator(agent_can_edit=True)
    await nursery.start(sim.serve)
    base = sim.rest_url()
    async with httpx.AsyncClient() as client:
        missing = await client.get(f"{base}/api/v2/recording/ucc-demo-name/nope")
        assert missing.status_code == 404 and missing.json()["ErrorMessage"]["Message"]
        for prefix in ("/api/recording", "/api/v2/recording"):
            body = {
                "Action": "Mark",
                "RequesterSipUri": "sip:agent@domain.com",
                "CorrelationId": "c1",
                "UCCName": "ucc-demo-name",
            }
            answer = await client.post(f"{base}{prefix}/set", json=body)
            assert answer.status_code == 200 and answer.json()["ErrorMessage"] is None
            answer = await client.post(f"{base}{prefix}/set", json={**body, "Action": 1})
            assert answer.json()["RecordingState"] == 1
        state = (await client.get(f"{base}/api/recording/ucc-demo-name/c1")).json()
        assert state == {
            "CorrelationId": "c1",
            "RecordingState": 1,
            "MarkingState": 1,
            "SavingState": 0,
            "ErrorMessage": None,
            "UCCName": "ucc-demo-name",
        }
        bad = await client.post(f"{base}/api/v2/recording/set", json={"Action": "Explode"})
        assert bad.status_code == 400 and bad.json()["ErrorMessage"]["ErrorType"] == 2
        caps = (await client.get(f"{base}/api/v2/recording/capabilities/ucc-demo-name")).json()
        assert caps == {"AgentCanEditRecordings": True, "ErrorMessage": None, "UCCName": "ucc-demo-name"}
        sim.agent_can_edit = False
        refused = (await client.post(f"{base}/api/v2/recording/set", json={**body, "Action": 2})).json()
        assert refused["ErrorMessage"]["ErrorType"] == 1
        assert sim.calls[("ucc-demo-name", "c1")].recording == 1
        sim.v2_enabled = False
        assert (await client.get(f"{base}/api/v2/recording/ucc-demo-name/c1")).status_code == 404


async def test_rest_answer_variants_the_doc_allows(nursery: trio.Nursery) -> None:
    """Not-found as 200 or 404 with an ErrorMessage, RecordingState 0 for a live call,
    camelCase answers, silent changes, and an Azure-style negotiate redirect."""
    sim = AnywhereNowSimulator(not_found="200", report_uninitialized=True, rest_casing="camel")
    await nursery.start(sim.serve)
    base = sim.rest_url()
    async with httpx.AsyncClient() as client:
        missing = await client.get(f"{base}/api/v2/recording/ucc-demo-name/nope")
        assert missing.status_code == 200 and missing.json()["ErrorMessage"]["Message"]
        sim.not_found = "404"
        assert (await client.get(f"{base}/api/v2/recording/ucc-demo-name/nope")).status_code == 404
        assert await sim.send_state("ucc-demo-name", "live", "Start") == 0  # nobody listening
        sim.set_state("ucc-demo-name", "live", "Mark")  # silent: no hub message at all
        sim.set_state("ucc-demo-name", "live", "Save")
        state = (await client.get(f"{base}/api/v2/recording/ucc-demo-name/live")).json()
        assert state == {
            "correlationId": "live",
            "recordingState": 0,
            "markingState": 1,
            "savingState": 1,
            "errorMessage": None,
            "uccName": "ucc-demo-name",
        }
        sim.redirect = ("https://elsewhere.example/client/?hub=h", "issued-token")
        answer = (await client.post(f"{sim.hub_url()}/negotiate?negotiateVersion=1")).json()
        assert answer == {"url": "https://elsewhere.example/client/?hub=h", "accessToken": "issued-token"}
