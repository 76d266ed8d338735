"""AnywhereNow end to end: the real bridge (outbox, committer, log sink) against the simulator."""

from __future__ import annotations

from pathlib import Path

import trio

from bridge.simulators.anywherenow import AnywhereNowSimulator
from tests.support.helpers import read_jsonl, running_bridge, wait_for, write_config

UCC = "ucc-demo-name"


def anywherenow_config(tmp_path: Path, sim: AnywhereNowSimulator) -> Path:
    return write_config(
        tmp_path,
        f"""
        [bridge]
        state_dir = "{tmp_path / "state"}"

        [[sources.anywherenow]]
        name = "anw"
        hub_url = "{sim.hub_url()}"
        rest_url = "{sim.rest_url()}"
        access_token = "e2e-token-0001"
        ucc_names = ["{UCC}"]
        reconnect_min = 0.01
        reconnect_max = 0.1
        ping_interval = 0.2
        server_timeout = 2.0

        [[sinks.log]]
        name = "events"
        path = "{tmp_path / "events.jsonl"}"
        """,
    )


def lines_for(tmp_path: Path, count: int) -> list[dict] | None:
    lines = read_jsonl(tmp_path / "events.jsonl")
    return lines if len(lines) >= count else None


async def test_live_events_reconnect_reconcile_and_restart(tmp_path: Path, nursery: trio.Nursery) -> None:
    sim = AnywhereNowSimulator(require_token="e2e-token-0001")
    await nursery.start(sim.serve)
    config = anywherenow_config(tmp_path, sim)
    async with running_bridge(config) as bridge:
        source = bridge.sources["anw"]
        await wait_for(lambda: source.health.ready and sim.connected_clients == 1)
        await sim.send_state(UCC, "call-1", "Start")
        await sim.send_state(UCC, "call-2", "Start")
        await sim.send_state(UCC, "call-2", "Pause")
        await wait_for(lambda: lines_for(tmp_path, 3))
        # Hub outage: call-1 stops while nobody listens.
        sim.available = False
        await sim.drop_connections("abort")
        await wait_for(lambda: not source.health.ready)
        sim.set_state(UCC, "call-1", "Stop")
        sim.available = True
        lines = await wait_for(lambda: lines_for(tmp_path, 4))
        assert source.health.reconnects >= 1
    # Bridge down: call-2 resumes. The persisted state (SQLite) drives reconciliation.
    sim.set_state(UCC, "call-2", "Start")
    async with running_bridge(config):
        lines = await wait_for(lambda: lines_for(tmp_path, 5))
    assert [(line["subject"], line["type"]) for line in lines] == [
        ("call-1", "recording.started"),
        ("call-2", "recording.started"),
        ("call-2", "recording.paused"),
        ("call-1", "recording.stopped"),
        ("call-2", "recording.resumed"),
    ]
    assert [line["data"].get("reconciled", False) for line in lines] == [False, False, False, True, True]
    assert all(line["source"] == "/event-bridge/anywherenow/anw" for line in lines)
    assert len({line["id"] for line in lines}) == 5
    assert lines[0]["data"]["raw"] == {"uccName": UCC, "correlationId": "call-1", "stateAction": "Start"}
