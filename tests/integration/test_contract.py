"""The component contract from outside: registry errors, and a toy sink in its own package."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import trio

from bridge import registry
from bridge.config import ConfigError, load
from tests.support.helpers import running_bridge, wait_for, write_config

# From uptivity-api-5.3.txt, "Request Result Schema" and "CALLSTART Event" (trimmed).
RESULT = (
    b"<RESULT>\r\n  <REQUESTTYPE>EVENTS</REQUESTTYPE>\r\n  <REQUESTID>0</REQUESTID>\r\n"
    b"  <RESULTTYPE>API_OK</RESULTTYPE>\r\n  <RESULTCODE>20</RESULTCODE>\r\n"
    b"  <RESULTMSG>API_OK</RESULTMSG>\r\n  <EVENTXREF>0</EVENTXREF>\r\n"
    b"  <EVENTCLASS>ALL</EVENTCLASS>\r\n  <EVENTTYPE></EVENTTYPE>\r\n</RESULT>\r\n"
)
CALLSTART = (
    b"<CALLCOPYEVENT>\r\n<EVENTCLASS>CALL</EVENTCLASS>\r\n<EVENTTYPE>CALLSTART</EVENTTYPE>\r\n"
    b"<MODULE>Api</MODULE>\r\n<EVENTXREF>0</EVENTXREF>\r\n<EVENTDATA>\r\n"
    b"<DEVICEID>1111</DEVICEID>\r\n<AGENTID>16</AGENTID>\r\n</EVENTDATA>\r\n</CALLCOPYEVENT>\r\n"
)


def config(tmp_path: Path, sink_kind: str, port: int = 5620) -> Path:
    return write_config(
        tmp_path,
        f"""
        [bridge]
        state_dir = "{tmp_path / "state"}"
        timezone = "UTC"

        [[sources.uptivity]]
        name = "up"
        host = "127.0.0.1"
        port = {port}

        [[sinks.{sink_kind}]]
        name = "toy"
        """,
    )


def test_a_helper_module_is_not_a_kind(tmp_path: Path) -> None:
    """`[[sinks.webhook_wire]]` named a helper module and crashed with AttributeError."""
    with pytest.raises(ConfigError) as caught:
        load(config(tmp_path, "webhook_wire"))
    message = str(caught.value)
    assert "there is no sink kind called 'webhook_wire'" in message
    for kind in registry.SINKS:
        assert kind in message


def test_unknown_kind_is_one_line_and_exit_2(tmp_path: Path) -> None:
    path = config(tmp_path, "webhook_wire")
    proc = subprocess.run(
        [sys.executable, "-m", "bridge", "check-config", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "known kinds: log, nats, webhook" in proc.stderr


async def proxy(
    port_box: list[int], *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """A minimal Event Proxy from the docs: answer EVENTS with API_OK, then one CALLSTART."""

    async def handle(stream: trio.SocketStream) -> None:
        request = b""
        while b"</REQUEST>" not in request:
            request += await stream.receive_some(4096)
        await stream.send_all(RESULT + CALLSTART)
        await trio.sleep_forever()

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port_box.append(listeners[0].socket.getsockname()[1])
    task_status.started()
    await trio.serve_listeners(handle, listeners)


async def test_a_toy_sink_needs_one_registry_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, nursery
) -> None:
    monkeypatch.setitem(registry.SINKS, "toy", registry.Entry("tests.support.toy_sink"))
    port: list[int] = []
    await nursery.start(proxy, port)
    async with running_bridge(config(tmp_path, "toy", port[0])) as bridge:
        sink = bridge.sinks["toy"]
        await wait_for(lambda: sink.received, timeout=20)
    assert sink.received == ["call.started"]
