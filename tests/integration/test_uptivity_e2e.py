"""The Uptivity source end to end: real simulator over loopback TCP, real bridge, real SQLite."""

from __future__ import annotations

from pathlib import Path

import trio

from bridge.simulators.uptivity import UptivitySimulator, event_number
from tests.support.helpers import LogCapture, read_jsonl, running_bridge, wait_for, write_config


def uptivity_config(tmp_path: Path, port: int, **extra: object) -> Path:
    options = "".join(f"{k} = {v!r}\n" for k, v in extra.items()).replace("'", '"')
    return write_config(
        tmp_path,
        f"""
        [bridge]
        state_dir = "{tmp_path / "state"}"
        timezone = "America/Chicago"

        [[sources.uptivity]]
        name = "up"
        host = "127.0.0.1"
        port = {port}
        reconnect_min = 0.02
        reconnect_max = 0.2
        {options}
        [[sinks.log]]
        name = "events"
        path = "{tmp_path / "events.jsonl"}"
        """,
    )


def numbers(lines: list[dict]) -> list[int]:
    """EVENTXREF of the live events (reconciled ones carry the status answer, not an event)."""
    return [int(line["data"]["raw"]["EVENTXREF"]) for line in lines if not line["data"].get("reconciled")]


async def test_all_documented_examples_are_logged_as_cloudevents(tmp_path: Path, nursery) -> None:
    sim = UptivitySimulator(rate=0, count=7, split=True, seed=1)
    port = await nursery.start(sim.serve)
    async with running_bridge(uptivity_config(tmp_path, port)):
        lines = await wait_for(
            lambda: len(read_jsonl(tmp_path / "events.jsonl")) >= 7 and read_jsonl(tmp_path / "events.jsonl")
        )
    assert [line["type"] for line in lines] == [
        "call.started",
        "recording.started",
        "recording.paused",
        "recording.resumed",
        "recording.stopped",
        "recording.saved",
        "call.ended",
    ]
    assert all(line["specversion"] == "1.0" and line["subject"] == "1111" for line in lines)
    assert lines[0]["time"] == "2011-01-31T14:39:49.000-06:00"
    assert len({line["id"] for line in lines}) == 7
    assert sim.requests[0].endswith(b"\r\n") and b"<TYPE>EVENTS</TYPE>" in sim.requests[0]


async def test_reconnects_after_the_proxy_drops_the_connection(tmp_path: Path, nursery) -> None:
    sim = UptivitySimulator(rate=200, count=60, numbered=True, drop_after=20)
    port = await nursery.start(sim.serve)
    async with running_bridge(uptivity_config(tmp_path, port)) as bridge:
        await wait_for(lambda: len(sim.all_written()) == 60)
        lines = await wait_for(
            lambda: (
                (got := read_jsonl(tmp_path / "events.jsonl"))
                and set(numbers(got)) >= set(sim.all_written())
                and got
            )
        )
        assert bridge.sources["up"].health.reconnects >= 1
    assert sim.connections >= 3
    # Every event written to a connection the bridge had open is logged, in order.
    assert numbers(lines) == sim.all_written()
    # Events produced while no connection was up are gone for every subscriber: the
    # proxy has no replay. The simulator pauses while nobody listens, so none here.
    assert sim.all_written() == list(range(1, 61))


async def test_restarted_proxy_is_picked_up_without_restarting_the_bridge(tmp_path: Path) -> None:
    port_holder: list[int] = []
    async with trio.open_nursery() as outer:
        first = UptivitySimulator(rate=100, count=10, numbered=True)
        first_scope = trio.CancelScope()
        outer.start_soon(_serve, first, port_holder, first_scope)
        await wait_for(lambda: port_holder)
        async with running_bridge(uptivity_config(tmp_path, port_holder[0])):
            await first.wait_produced(10)
            await wait_for(lambda: len(read_jsonl(tmp_path / "events.jsonl")) >= 10)
            first_scope.cancel()  # the proxy process dies
            await trio.sleep(0.2)
            second = UptivitySimulator(port=port_holder[0], rate=100, count=10, numbered=True)
            await outer.start(second.serve)
            await second.wait_produced(10)
            await wait_for(lambda: len(read_jsonl(tmp_path / "events.jsonl")) >= 20)
        outer.cancel_scope.cancel()
    lines = read_jsonl(tmp_path / "events.jsonl")
    assert numbers(lines) == list(range(1, 11)) * 2
    # The same content seen again is a new occurrence: it gets a new id.
    assert len({line["id"] for line in lines}) == len(lines)
    # Events 8-10 left device 1111 paused; the new proxy knows it idle: reconciliation
    # reports the stop the bridge never saw, once, before the new proxy's events.
    reconciled = [line for line in lines if line["data"].get("reconciled")]
    assert [(r["type"], r["subject"], r["data"]["last_seen"]) for r in reconciled] == [
        ("recording.stopped", "1111", "paused")
    ]
    assert lines.index(reconciled[0]) == 10


async def _serve(sim: UptivitySimulator, port_holder: list[int], scope: trio.CancelScope) -> None:
    with scope:
        async with trio.open_nursery() as nursery:
            port_holder.append(await nursery.start(sim.serve))


async def test_refused_subscription_is_logged_and_retried(
    tmp_path: Path, nursery, log_capture: LogCapture
) -> None:
    sim = UptivitySimulator(result_code=48)
    port = await nursery.start(sim.serve)
    async with running_bridge(uptivity_config(tmp_path, port)) as bridge:
        await wait_for(lambda: sim.connections >= 2)
        health = bridge.sources["up"].health
        assert not health.ready
    refused = log_capture.events("uptivity_events_refused")
    assert refused and refused[0]["result_code"] == "48"
    assert refused[0]["result_type"] == "ERROR" and refused[0]["result_msg"] == "API_TOO_MANY_CLIENTS"


async def test_hostile_input_is_quarantined_and_the_connection_survives(
    tmp_path: Path, nursery, log_capture: LogCapture
) -> None:
    sim = UptivitySimulator(rate=0, count=7, numbered=True)
    sim.pause()
    port = await nursery.start(sim.serve)
    async with running_bridge(uptivity_config(tmp_path, port, max_document_bytes=65536)):
        await sim.wait_subscribers(1)
        await sim.inject(b'<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>')
        await sim.inject(b"<CALLCOPYEVENT><EVENTTYPE>&xxe;</EVENTTYPE></CALLCOPYEVENT>\r\n")
        await sim.inject(b"<CALLCOPYEVENT><EVENTTYPE>X</WRONG></CALLCOPYEVENT>\r\n")
        await sim.inject(b"<CALLCOPYEVENT><EVENTDATA>" + b"A" * 200_000)
        await sim.inject(b"</EVENTDATA></CALLCOPYEVENT>\r\n")
        sim.pause(False)
        lines = await wait_for(
            lambda: len(read_jsonl(tmp_path / "events.jsonl")) >= 7 and read_jsonl(tmp_path / "events.jsonl")
        )
    assert numbers(lines) == list(range(1, 8))
    assert sim.connections == 1  # never reconnected: the connection survived
    bad = log_capture.events("uptivity_bad_input")
    assert len(bad) >= 4
    quarantined = sorted((tmp_path / "state" / "quarantine" / "up").glob("*.bin"))
    assert len(quarantined) == len(bad)
    kept = b"".join(p.read_bytes() for p in quarantined)
    assert b"file:///etc/passwd" in kept and b"</WRONG>" in kept
    assert all("reason:" in p.with_suffix(".txt").read_text() for p in quarantined)
    assert "root:" not in (tmp_path / "events.jsonl").read_text()


async def test_silent_peer_is_detected_by_the_idle_timeout(
    tmp_path: Path, nursery, log_capture: LogCapture
) -> None:
    sim = UptivitySimulator(rate=0, count=0)
    port = await nursery.start(sim.serve)
    async with running_bridge(uptivity_config(tmp_path, port, idle_timeout=0.3)):
        await wait_for(lambda: sim.connections >= 2)
    reasons = [r["reason"] for r in log_capture.events("uptivity_disconnected")]
    assert any("idle timeout" in r for r in reasons)  # opt-in: only because idle_timeout is set


async def test_event_numbers_survive_a_split_stream_without_separators(tmp_path: Path, nursery) -> None:
    sim = UptivitySimulator(rate=0, count=50, numbered=True, devices=5, split=True, separator="none", seed=7)
    port = await nursery.start(sim.serve)
    async with running_bridge(uptivity_config(tmp_path, port)):
        lines = await wait_for(
            lambda: len(read_jsonl(tmp_path / "events.jsonl")) >= 50 and read_jsonl(tmp_path / "events.jsonl")
        )
    assert numbers(lines) == list(range(1, 51))
    assert {line["subject"] for line in lines} == {str(1111 + i) for i in range(5)}
    assert event_number(b"<EVENTXREF> 12 </EVENTXREF>") == 12
