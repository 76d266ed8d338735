"""Uptivity over real loopback sockets: state recovered through the API's status requests,
values as the real proxy sends them, liveness without churn, RESULT handling.

Ground truth is the simulator's own device table and journal (which changes it made
silently, i.e. with no event on the wire), never the bridge's counters.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from functools import partial
from pathlib import Path

import trio

from bridge.simulators.uptivity import UptivitySimulator
from bridge.sources.uptivity.api import enable_keepalive
from tests.support.faults import FaultProxy
from tests.support.helpers import LogCapture, read_jsonl, running_bridge, wait_for, write_config

CHICAGO = "America/Chicago"


def config(tmp_path: Path, port: int, *, zone: str | None = CHICAGO, **options: object) -> Path:
    extra = "".join(f"{k} = {v!r}\n".replace("'", '"') for k, v in options.items())
    bridge_zone = f'timezone = "{zone}"' if zone else ""
    return write_config(
        tmp_path,
        f"""
[bridge]
state_dir = "{tmp_path / "state"}"
{bridge_zone}

[[sources.uptivity]]
name = "up"
host = "127.0.0.1"
port = {port}
reconnect_min = 0.02
reconnect_max = 0.2
{extra}
[[sinks.log]]
name = "events"
path = "{tmp_path / "events.jsonl"}"
""",
    )


def events(tmp_path: Path) -> list[dict]:
    return read_jsonl(tmp_path / "events.jsonl")


def reconciled(tmp_path: Path) -> list[dict]:
    return [e for e in events(tmp_path) if e["data"].get("reconciled")]


def live(tmp_path: Path) -> list[dict]:
    return [e for e in events(tmp_path) if not e["data"].get("reconciled")]


async def _start_recording(tmp_path: Path, bridge, sim: UptivitySimulator) -> None:
    """Events 1-2 (CALLSTART, RECORDINGSTARTED on 1111) delivered, baseline reconciled."""
    await wait_for(lambda: len(live(tmp_path)) >= 2)
    await wait_for(lambda: bridge.sources["up"].reconciliations >= 1)
    assert sim.table.devices["1111"].state == "recording"


async def _outage(
    proxy: FaultProxy, bridge, sim: UptivitySimulator, change: str, *more: tuple[str, str]
) -> None:
    """Cut the bridge off, change device 1111 (and ``more``) silently, let it back in."""
    proxy.mode = "refuse"
    await proxy.reset_all()
    await wait_for(lambda: bridge.sources["up"].health.state == "disconnected")
    await wait_for(lambda: not sim.subscribers)
    for device, state in (("1111", change), *more):
        sim.set_device_state(device, state)
        assert sim.table.journal[-1].silent and not sim.subscribers  # no event could carry it
    proxy.mode = "pass"


async def test_recording_stopped_while_disconnected_is_reconciled_after_reconnect(
    tmp_path: Path, nursery
) -> None:
    sim = UptivitySimulator(rate=0, count=2, numbered=True, zone=CHICAGO)
    proxy = FaultProxy(await nursery.start(sim.serve))
    await nursery.start(proxy.serve)
    async with running_bridge(config(tmp_path, proxy.port)) as bridge:
        await _start_recording(tmp_path, bridge, sim)
        assert reconciled(tmp_path) == []  # the first pass only records the baseline
        await _outage(proxy, bridge, sim, "idle")
        await wait_for(lambda: reconciled(tmp_path))
        assert bridge.sources["up"].stats()["reconciled"] == 1
    (event,) = reconciled(tmp_path)
    device = sim.table.devices["1111"]
    assert event["type"] == "recording.stopped" and event["subject"] == "1111"
    assert event["source"] == "/event-bridge/uptivity/up"
    data = event["data"]
    assert data["reconciled"] is True and data["reconcile_reason"] == "reconnect"
    assert (data["last_seen"], data["recording_state"]) == ("recording", "idle")
    assert data["device_id"] == "1111" and data["device_alias"] == "DESK1"
    assert data["filename"] == device.filename
    assert data["raw"]["RECORDING"]["ISRECORDING"] == "N"
    assert data["raw"]["STOPTIME"] == device.stop_time
    # STOPTIME is the recorder's Chicago wall time; the event's time is that instant.
    assert data["time_source"] == "vendor" and event["time"].endswith(("-06:00", "-05:00"))
    assert sim.api_requests_of("DEVICELIST") >= 2


async def test_pause_while_disconnected_is_reconciled_from_deviceRecordingStatus(
    tmp_path: Path, nursery
) -> None:
    """DEVICELIST has no STATUS; the pause is found by DEVICERECORDINGSTATUS (recordpaused)."""
    sim = UptivitySimulator(rate=0, count=2, numbered=True, zone=CHICAGO)
    proxy = FaultProxy(await nursery.start(sim.serve))
    await nursery.start(proxy.serve)
    async with running_bridge(config(tmp_path, proxy.port)) as bridge:
        await _start_recording(tmp_path, bridge, sim)
        await _outage(proxy, bridge, sim, "paused")
        await wait_for(lambda: reconciled(tmp_path))
    (event,) = reconciled(tmp_path)
    assert event["type"] == "recording.paused" and event["subject"] == "1111"
    assert event["data"]["raw"]["RECORDING"]["STATUS"] == "recordpaused"
    assert (event["data"]["last_seen"], event["data"]["recording_state"]) == ("recording", "paused")
    assert sim.api_requests_of("DEVICERECORDINGSTATUS") >= 1


async def test_recording_stopped_while_the_bridge_was_down_is_reconciled_at_restart(
    tmp_path: Path, nursery
) -> None:
    sim = UptivitySimulator(rate=0, count=2, numbered=True, zone=CHICAGO)
    port = await nursery.start(sim.serve)
    async with running_bridge(config(tmp_path, port)) as bridge:
        await _start_recording(tmp_path, bridge, sim)
    await wait_for(lambda: not sim.subscribers)
    sim.set_device_state("1111", "idle")  # while no bridge runs at all
    async with running_bridge(config(tmp_path, port)) as bridge:
        await wait_for(lambda: reconciled(tmp_path))
        assert bridge.sources["up"].known == {}
    (event,) = reconciled(tmp_path)
    assert event["type"] == "recording.stopped" and event["data"]["last_seen"] == "recording"
    assert event["data"]["reconcile_reason"] == "startup"
    # The state was persisted with that event: a third start reports nothing again.
    async with running_bridge(config(tmp_path, port)) as bridge:
        await wait_for(lambda: bridge.sources["up"].reconciliations >= 1)
    assert len(reconciled(tmp_path)) == 1


async def test_a_recording_that_began_and_ended_inside_the_outage_cannot_be_recovered(
    tmp_path: Path, nursery
) -> None:
    """What the README says cannot be recovered: the API reports states, not history."""
    sim = UptivitySimulator(rate=0, count=2, numbered=True, devices=2, zone=CHICAGO)
    proxy = FaultProxy(await nursery.start(sim.serve))
    await nursery.start(proxy.serve)
    async with running_bridge(config(tmp_path, proxy.port)) as bridge:
        await _start_recording(tmp_path, bridge, sim)
        # 1111 stops (recoverable); 1112 records and stops, all inside the outage (not).
        await _outage(proxy, bridge, sim, "idle", ("1112", "recording"), ("1112", "idle"))
        await wait_for(lambda: reconciled(tmp_path))
        await wait_for(lambda: bridge.sources["up"].reconciliations >= 2)
    assert [(e["subject"], e["type"]) for e in reconciled(tmp_path)] == [("1111", "recording.stopped")]
    silent = [c for c in sim.table.journal if c.silent]
    assert [(c.device_id, c.state) for c in silent] == [
        ("1111", "idle"),
        ("1112", "recording"),
        ("1112", "idle"),
    ]


async def test_a_change_the_stream_reports_right_after_the_subscription_is_not_announced_twice(
    tmp_path: Path, nursery
) -> None:
    """The proxy sends the pause, resume and stop (events 3-5) the moment the bridge is
    subscribed again, before its DEVICELIST is answered: the answer (idle) and the live
    stream say the same thing, and the stop is reported once, live."""
    sim = UptivitySimulator(rate=0, count=2, numbered=True, zone=CHICAGO)
    proxy = FaultProxy(await nursery.start(sim.serve))
    await nursery.start(proxy.serve)
    async with running_bridge(config(tmp_path, proxy.port)) as bridge:
        await _start_recording(tmp_path, bridge, sim)
        proxy.mode = "refuse"
        await proxy.reset_all()
        await wait_for(lambda: not sim.subscribers)
        sim.count = 5  # produced as soon as a subscriber is back
        proxy.mode = "pass"
        await wait_for(lambda: len(live(tmp_path)) >= 5)
        await wait_for(lambda: bridge.sources["up"].reconciliations >= 2)
        superseded = bridge.sources["up"].superseded
    assert sim.table.devices["1111"].state == "idle"
    assert [e["type"] for e in live(tmp_path)][2:] == [
        "recording.paused",
        "recording.resumed",
        "recording.stopped",
    ]
    stops = [e for e in events(tmp_path) if e["type"] == "recording.stopped"]
    assert len(stops) == 1 and not stops[0]["data"].get("reconciled")
    assert reconciled(tmp_path) == [] and superseded == 1


async def test_a_value_with_an_unescaped_ampersand_is_delivered_as_sent(tmp_path: Path, nursery) -> None:
    sim = UptivitySimulator(rate=0, count=7, group="Sales & Marketing")
    assert b"<GROUP>Sales & Marketing</GROUP>" in sim.document(1)  # unescaped on the wire
    port = await nursery.start(sim.serve)
    async with running_bridge(config(tmp_path, port)):
        await wait_for(lambda: len(live(tmp_path)) >= 7)
    with_group = [e for e in live(tmp_path) if "GROUP" in e["data"]["raw"].get("EVENTDATA", {})]
    assert len(with_group) == 5  # the docs' RECORDINGSTOPPED and RECORDINGUPDATE have no GROUP
    for event in with_group:
        assert event["data"]["group"] == "Sales & Marketing"
        assert event["data"]["raw"]["EVENTDATA"]["GROUP"] == "Sales & Marketing"
    assert not (tmp_path / "state" / "quarantine" / "up").exists()


async def test_a_quiet_subscription_is_not_rebuilt(tmp_path: Path, nursery) -> None:
    """Silence for many times a short probe interval: probes are answered, the
    subscription stays (the old 300 s idle timeout rebuilt it; it is off by default now)."""
    sim = UptivitySimulator(rate=0, count=0)
    port = await nursery.start(sim.serve)
    async with running_bridge(config(tmp_path, port, probe_interval=0.1)) as bridge:
        assert bridge.config.sources[0].settings.idle_timeout == 0.0
        await wait_for(lambda: sim.api_requests_of("TEST") >= 8)
        source = bridge.sources["up"]
        assert source.health.state == "connected" and source.health.reconnects == 0
        assert sim.connections == 1 and len(sim.subscribers) == 1


async def test_a_quiet_subscription_with_no_probe_is_not_rebuilt_either(tmp_path: Path, nursery) -> None:
    sim = UptivitySimulator(rate=0, count=0)
    port = await nursery.start(sim.serve)
    async with running_bridge(config(tmp_path, port, probe_interval=0.0, timeout=0.2)) as bridge:
        await wait_for(lambda: bridge.sources["up"].reconciliations >= 1)
        # Far longer than the request timeout and the old idle timeout given here:
        # nothing watches the silence, so nothing may end the subscription.
        before = sim.api_requests_of("DEVICELIST")
        await trio.sleep(1.0)
        assert sim.connections == 1 and bridge.sources["up"].health.reconnects == 0
        assert sim.api_requests_of("DEVICELIST") == before and sim.api_requests_of("TEST") == 0


async def test_permanent_refusal_marks_the_source_failed_and_retries_slowly(
    tmp_path: Path, nursery, log_capture: LogCapture
) -> None:
    sim = UptivitySimulator(result_code=30)  # API_EVENT_TYPE_INVALID: retrying cannot help
    port = await nursery.start(sim.serve)
    async with running_bridge(config(tmp_path, port, refused_retry=0.3)) as bridge:
        await wait_for(lambda: sim.connections >= 2)
        health = bridge.sources["up"].health
        assert health.state == "error"
        assert "ERROR (30) API_EVENT_TYPE_INVALID" in health.detail and "retrying every 0.3s" in health.detail
        assert not health.ready  # what /readyz reports, with this detail
    refused = log_capture.events("uptivity_events_refused")
    assert refused[0]["permanent"] is True and refused[0]["result_code"] == "30"


async def test_transient_refusal_backs_off_and_is_not_marked_failed(
    tmp_path: Path, nursery, log_capture: LogCapture
) -> None:
    sim = UptivitySimulator(result_code=48)  # API_TOO_MANY_CLIENTS: may clear by itself
    port = await nursery.start(sim.serve)
    async with running_bridge(config(tmp_path, port, refused_retry=3600.0)) as bridge:
        await wait_for(lambda: sim.connections >= 3)  # not the hour a permanent refusal waits
        assert bridge.sources["up"].health.state == "disconnected"
    assert log_capture.events("uptivity_events_refused")[0]["permanent"] is False


async def test_a_result_for_another_request_is_not_taken_as_the_answer(
    tmp_path: Path, nursery, log_capture: LogCapture
) -> None:
    """A proxy that answers with another REQUESTID: the bridge does not subscribe on it."""
    wrong = (
        b"<RESULT>\n  <REQUESTTYPE>EVENTS</REQUESTTYPE>\n  <REQUESTID>999</REQUESTID>\n"
        b"  <RESULTTYPE>API_OK</RESULTTYPE>\n  <RESULTCODE>20</RESULTCODE>\n"
        b"  <RESULTMSG>API_OK</RESULTMSG>\n</RESULT>\r\n"
    )

    async def handler(stream: trio.SocketStream) -> None:
        with trio.move_on_after(5):
            await stream.receive_some(4096)
            await stream.send_all(wrong)
            await trio.sleep_forever()

    listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
    port = listeners[0].socket.getsockname()[1]
    async with running_bridge(config(tmp_path, port, timeout=0.3)) as bridge:
        await wait_for(lambda: log_capture.events("uptivity_unmatched_result"))
        await wait_for(lambda: "no RESULT to the EVENTS request" in bridge.sources["up"].health.detail)
        assert not bridge.sources["up"].health.ready
    assert log_capture.events("uptivity_unmatched_result")[0]["request_id"] == "999"


async def test_no_time_zone_is_warned_by_check_config_and_said_in_readyz(tmp_path: Path, nursery) -> None:
    sim = UptivitySimulator(rate=0, count=0)
    port = await nursery.start(sim.serve)
    path = config(tmp_path, port, zone=None)
    proc = subprocess.run(
        [sys.executable, "-m", "bridge", "check-config", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "sources.uptivity[0].timezone" in proc.stderr and "read as UTC" in proc.stderr
    async with running_bridge(path) as bridge:
        await wait_for(lambda: bridge.sources["up"].health.state == "connected")
        detail = bridge.sources["up"].health.detail  # the /readyz detail of this source
    assert "times in UTC (default (UTC))" in detail


def test_tcp_keepalive_is_set_so_a_vanished_peer_is_found_by_the_kernel() -> None:
    """What finds a peer that is really gone (power cut, cable pulled) without any probe."""
    server = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(server.getsockname())
    try:
        enable_keepalive(client, 7, 3, 4)
        assert client.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        if hasattr(socket, "TCP_KEEPIDLE"):
            assert client.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 7
            assert client.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 3
            assert client.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 4
    finally:
        client.close()
        server.close()


async def test_events_that_arrive_with_the_result_are_delivered_when_reconciliation_fails(
    tmp_path: Path, nursery, log_capture: LogCapture
) -> None:
    """RESULT and the first events in one read, the API server unreachable: the events
    read with the RESULT are still delivered (reconciliation failing costs no event)."""
    from bridge.simulators.uptivity import EVENTS_RESULT, numbered_event

    async def handler(stream: trio.SocketStream) -> None:
        request = await stream.receive_some(4096)
        request_id = request.split(b"<REQUESTID>")[1].split(b"</REQUESTID>")[0]
        result = EVENTS_RESULT.replace(
            b"<REQUESTID>0</REQUESTID>", b"<REQUESTID>" + request_id + b"</REQUESTID>"
        )
        await stream.send_all(result + b"\r\n" + numbered_event(1) + b"\r\n" + numbered_event(2) + b"\r\n")
        await trio.sleep_forever()

    listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
    port = listeners[0].socket.getsockname()[1]
    closed = socket.create_server(("127.0.0.1", 0))
    dead_port = closed.getsockname()[1]
    closed.close()  # nothing listens there: the API server is unreachable
    async with running_bridge(config(tmp_path, port, api_port=dead_port, timeout=1.0)) as bridge:
        await wait_for(lambda: len(live(tmp_path)) >= 2)
        assert "reconcile failed" in bridge.sources["up"].health.detail
        assert bridge.sources["up"].health.ready  # the subscription itself is fine
    assert [e["data"]["raw"]["EVENTXREF"] for e in live(tmp_path)] == ["1", "2"]
    assert log_capture.events("uptivity_reconcile_failed")


async def test_a_devicelist_too_large_falls_back_to_devicerecordingstatus_per_known_device(
    tmp_path: Path, nursery
) -> None:
    sim = UptivitySimulator(rate=0, count=2, numbered=True, devices=40, zone=CHICAGO)
    assert len(sim.answer(b"<REQUEST><TYPE>DEVICELIST</TYPE><REQUESTID>1</REQUESTID></REQUEST>")) > 4096
    proxy = FaultProxy(await nursery.start(sim.serve))
    await nursery.start(proxy.serve)
    async with running_bridge(config(tmp_path, proxy.port, max_answer_bytes=4096)) as bridge:
        await wait_for(lambda: len(live(tmp_path)) >= 2)
        await wait_for(lambda: bridge.sources["up"].reconciliations >= 1)
        before = sim.api_requests_of("DEVICERECORDINGSTATUS")
        await _outage(proxy, bridge, sim, "idle")
        await wait_for(lambda: reconciled(tmp_path))
    (event,) = reconciled(tmp_path)
    assert event["type"] == "recording.stopped" and event["subject"] == "1111"
    assert sim.api_requests_of("DEVICERECORDINGSTATUS") == before + 1  # only the one known device
