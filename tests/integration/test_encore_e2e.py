"""The Encore source end to end: real simulator over loopback HTTP, real bridge, real SQLite."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bridge.simulators.encore import EncoreSimulator
from tests.support.helpers import read_jsonl, running_bridge, wait_for, write_config


def encore_config(tmp_path: Path, port: int) -> Path:
    return write_config(
        tmp_path,
        f"""
        [bridge]
        state_dir = "{tmp_path / "state"}"

        [[sources.encore]]
        name = "enc"
        url = "http://127.0.0.1:{port}/WebAPI/ECAPI.svc"
        interval = 0.05
        extensions = ["1234"]

        [[sources.encore.ports]]
        unit = 1
        port = 7

        [[sinks.log]]
        name = "events"
        path = "{tmp_path / "events.jsonl"}"
        """,
    )


def lines_at_least(path: Path, count: int) -> Any:
    lines = read_jsonl(path)
    return lines if len(lines) >= count else None


async def test_recording_lifecycle_is_logged_as_cloudevents(tmp_path: Path, nursery: Any) -> None:
    sim = EncoreSimulator()
    port = await nursery.start(sim.serve)
    events = tmp_path / "events.jsonl"
    steps = [sim.start, sim.pause, sim.resume, sim.hold, sim.retrieve, sim.stop]
    async with running_bridge(encore_config(tmp_path, port)):
        await wait_for(lambda: "1234" in sim.stations)
        for count, step in enumerate(steps, start=1):
            assert step(1, 7) == 100
            await wait_for(lambda n=count: lines_at_least(events, n))
    lines = read_jsonl(events)
    assert [line["type"] for line in lines] == [
        "recording.started",
        "recording.paused",
        "recording.resumed",
        "recording.suspended",
        "recording.resumed",
        "recording.stopped",
    ]
    assert {line["subject"] for line in lines} == {"1/7"}
    assert {line["source"] for line in lines} == {"/event-bridge/encore/enc"}
    assert all(line["specversion"] == "1.0" for line in lines)
    assert len({line["id"] for line in lines}) == len(lines)
    assert [line["data"]["state"] for line in lines][-1] == "NOT RECORDING"
    assert sim.max_concurrency == 1


async def test_restart_announces_downtime_changes_once(tmp_path: Path, nursery: Any) -> None:
    sim = EncoreSimulator()
    port = await nursery.start(sim.serve)
    events = tmp_path / "events.jsonl"
    config = encore_config(tmp_path, port)
    async with running_bridge(config):
        await wait_for(lambda: "1234" in sim.stations)
        extension_port = sim.stations["1234"]
        sim.start(1, 7)
        sim.start(1, extension_port)
        await wait_for(lambda: lines_at_least(events, 2))
    # While the bridge is down: port 7 stops; the extension's call keeps recording.
    sim.stop(1, 7)
    async with running_bridge(config):
        await wait_for(lambda: lines_at_least(events, 3))
        calls = sim.calls["PortStatusEX"]
        await wait_for(lambda: sim.calls["PortStatusEX"] > calls + 10)
    lines = read_jsonl(events)
    summary = sorted((line["subject"], line["type"]) for line in lines)
    assert summary == sorted(
        [
            ("1/7", "recording.started"),
            (f"1/{extension_port}", "recording.started"),
            ("1/7", "recording.stopped"),
        ]
    )
    extension_event = next(line for line in lines if line["subject"] == f"1/{extension_port}")
    assert extension_event["data"]["extension"] == "1234"
