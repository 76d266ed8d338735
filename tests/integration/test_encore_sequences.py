"""What happens on a port between two polls, against the Encore simulator over real SOAP.

Two simulator actions with no ``await`` between them land between two polls (the
simulator runs on the same trio loop as the bridge's poller). Expected values come from
the Web API docs: GetURL gives "the URL associated with the recording" (a new recording,
a new URL), a younger stateDuration means the state was entered again, PAUSE is entered
only by PauseRecording, and Appendix A's test service always answers stateDuration 20.
"""

from __future__ import annotations

import time
from pathlib import Path

import trio

from bridge.components import SourceContext
from bridge.quarantine import Quarantine
from bridge.simulators.encore import EncoreSimulator
from bridge.sources.encore import EncoreSource
from tests.integration.test_encore_source import RecordingLog, polls, settings_for, source_running, wait_for
from tests.support.helpers import MemoryEmitter


def recording_for(sim: EncoreSimulator, port: int, seconds: float = 60) -> str:
    """Start a recording that has been going for ``seconds`` when the bridge first looks."""
    assert sim.start(1, port) == 100
    sim.backdate(1, port, seconds)
    return sim.url_of(1, port)


async def test_stop_and_start_between_two_polls_are_stopped_then_started(tmp_path: Path) -> None:
    sim = EncoreSimulator()
    first = recording_for(sim, 1)
    async with source_running(sim, tmp_path, ports=[("1", "1")]) as h:
        await wait_for(lambda: h.emitter.events)
        await polls(sim, 3)
        assert sim.back_to_back(1, 1) == 100  # StopRecording + StartRecording, no poll between
        second = sim.url_of(1, 1)
        await wait_for(lambda: len(h.emitter.events) >= 3)
        await polls(sim, 5)
    started, stopped, started_again = h.emitter.events
    assert [e.type for e in h.emitter.events] == [
        "recording.started",
        "recording.stopped",
        "recording.started",
    ]
    assert started.data["recording_url"] == stopped.data["recording_url"] == first
    assert started_again.data["recording_url"] == second != first
    assert stopped.data["inferred"] is started_again.data["inferred"] is True
    assert stopped.time <= started_again.time
    assert stopped.data["url_lookup"] == started_again.data["url_lookup"] == "ok"
    assert started_again.data["raw"]["GetURL"]["URL"] == second  # the GetURL answer as sent


async def test_hold_and_retrieve_between_two_polls_is_never_a_plain_pause(tmp_path: Path) -> None:
    sim = EncoreSimulator()
    url = recording_for(sim, 1)
    async with source_running(sim, tmp_path, ports=[("1", "1")]) as h:
        await wait_for(lambda: h.emitter.events)
        await polls(sim, 3)
        assert sim.hold(1, 1) == 100 and sim.retrieve(1, 1) == 100
        await wait_for(lambda: len(h.emitter.events) >= 2)
        await polls(sim, 5)
    assert h.emitter.types() == ["recording.started", "recording.interrupted"]
    interrupted = h.emitter.events[1]
    assert interrupted.data["inferred"] is True and interrupted.data["inferred_kind"] == "pause_or_hold"
    assert interrupted.data["recording_url"] == url


async def test_a_real_hold_and_a_paused_call_on_hold_follow_the_state_table(tmp_path: Path) -> None:
    sim = EncoreSimulator()
    async with source_running(sim, tmp_path, ports=[("1", "1")]) as h:
        steps = [
            (sim.start, ["recording.started"]),
            (sim.pause, ["recording.paused"]),
            (sim.hold, []),  # a paused call put on hold stays PAUSE
            (sim.resume, ["recording.resumed", "recording.suspended"]),  # PAUSE -> SUSPENDED
            (sim.retrieve, ["recording.resumed"]),
            (sim.stop, ["recording.stopped"]),
        ]
        expected: list[str] = []
        for action, types in steps:
            assert action(1, 1) == 100
            expected += types
            await polls(sim, 3)
            count = len(expected)
            await wait_for(lambda n=count: len(h.emitter.events) >= n)
        assert h.emitter.types() == expected
        suspended = h.emitter.events[2:4]
        assert [(e.data["previousState"], e.data["state"]) for e in suspended] == [("PAUSE", "SUSPENDED")] * 2
        assert {e.data["recording_url"] for e in h.emitter.events} == {sim.url_of(1, 1)}


async def test_a_held_call_and_another_recording_on_one_port(tmp_path: Path) -> None:
    sim = EncoreSimulator()
    async with source_running(sim, tmp_path, ports=[("1", "1")]) as h:
        sim.start(1, 1)
        held = sim.url_of(1, 1)
        await wait_for(lambda: len(h.emitter.events) >= 1)  # seen recording: its URL is known
        sim.hold(1, 1)
        await wait_for(lambda: len(h.emitter.events) >= 2)
        assert sim.second_call(1, 1) == 100
        active = sim.url_of(1, 1)
        await wait_for(lambda: len(h.emitter.events) >= 3)
        sim.stop(1, 1)
        await wait_for(lambda: len(h.emitter.events) >= 5)
    types = h.emitter.types()
    assert (
        types == ["recording.started", "recording.suspended", "recording.started"] + ["recording.stopped"] * 2
    )
    second = h.emitter.events[2]
    assert second.data["recording_url"] == active != held and second.data["held_recording_url"] == held
    assert [e.data["recording_url"] for e in h.emitter.events[3:]] == [active, held]


async def test_geturl_658_falls_back_with_one_warning(tmp_path: Path) -> None:
    sim = EncoreSimulator(url_player=False)
    recording_for(sim, 1)
    recording_for(sim, 2)
    async with source_running(sim, tmp_path, ports=[("1", "1"), ("1", "2")]) as h:
        await wait_for(lambda: len(h.emitter.events) >= 2)
        await polls(sim, 4)
        assert sim.pause(1, 1) == 100 and sim.resume(1, 1) == 100
        assert sim.back_to_back(1, 2) == 100
        await wait_for(lambda: len(h.emitter.events) >= 4)
        await polls(sim, 10)
    assert len(h.log.named("encore_recording_urls_unavailable")) == 1
    assert sim.calls["GetURL"] == 1  # asked once, then off for this server
    for event in h.emitter.events:
        assert event.data["recording_url"] is None and event.data["url_lookup"] == "unavailable"
    later = h.emitter.events[2:]
    assert [e.type for e in later] == ["recording.interrupted"] * 2  # a pause, a hold or a new call
    assert {e.data["inferred_kind"] for e in later} == {"pause_hold_or_new_recording"}
    assert "recording.paused" not in h.emitter.types()


async def test_658_is_one_warning_per_server_even_with_two_sources(tmp_path: Path) -> None:
    sim = EncoreSimulator(url_player=False)
    recording_for(sim, 1)
    recording_for(sim, 2)
    emitter, logs = MemoryEmitter(), [RecordingLog(), RecordingLog()]
    async with trio.open_nursery() as nursery:
        port = await nursery.start(sim.serve)
        for n, log in enumerate(logs, start=1):
            settings = settings_for(port, name=f"s{n}", ports=[("1", str(n))])
            ctx = SourceContext(emitter, Quarantine(tmp_path / str(n)), {}, log)
            await nursery.start(EncoreSource(settings).run, ctx)
        await wait_for(lambda: len(emitter.events) >= 2)
        await polls(sim, 10)
        nursery.cancel_scope.cancel()
    assert sum(len(log.named("encore_recording_urls_unavailable")) for log in logs) == 1
    assert sim.calls["GetURL"] <= 2  # each source asked at most once (both may be queued at start)
    assert {e.data["url_lookup"] for e in emitter.events} == {"unavailable"}


async def test_a_fixed_duration_server_restarted_mid_recording_re_announces_nothing(tmp_path: Path) -> None:
    """Appendix A: the test service always answers stateDuration 20 for an active state."""
    sim = EncoreSimulator(fixed_duration=20)
    emitter = MemoryEmitter()
    async with trio.open_nursery() as nursery:
        await nursery.start(sim.serve)
        async with source_running(sim, tmp_path, emitter, ports=[("1", "1")], duration_tolerance=1.0) as h:
            await polls(sim, 2)
            before = time.time()
            sim.start(1, 1)
            await wait_for(lambda: h.source.duration_static)
            await polls(sim, 5)
        assert emitter.types() == ["recording.started"]
        started = emitter.events[0]
        assert started.time.timestamp() >= before - 1.0  # not 20 s early
        assert emitter.state["server:static_duration"] == "1"
        for _ in range(2):  # the bridge restarts twice while the call goes on
            async with source_running(
                sim, tmp_path, emitter, ports=[("1", "1")], duration_tolerance=1.0
            ) as h:
                assert h.source.duration_static  # remembered, not detected again
                await polls(sim, 10)
        assert emitter.types() == ["recording.started"]
        async with source_running(sim, tmp_path, emitter, ports=[("1", "1")], duration_tolerance=1.0) as h:
            stop_at = time.time()
            sim.stop(1, 1)
            await wait_for(lambda: len(emitter.events) == 2)
        nursery.cancel_scope.cancel()
    stopped = emitter.events[1]
    assert stopped.type == "recording.stopped" and stopped.data["time_source"] == "received"
    assert stopped.time.timestamp() >= stop_at - 0.5


async def test_two_sources_on_one_server_never_have_two_requests_in_flight(tmp_path: Path) -> None:
    sim = EncoreSimulator(latency=0.01)
    for port in range(1, 21, 4):
        recording_for(sim, port)
    emitter = MemoryEmitter()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(sim.serve)
        sources = []
        for name, ports in (("a", range(1, 11)), ("b", range(11, 21))):
            # Same server, spelled differently: the budget is per server, not per string.
            url = (
                f"http://127.0.0.1:{port}/WebAPI/ECAPI.svc"
                if name == "a"
                else f"HTTP://127.0.0.1:{port}/webapi/ecapi.svc"
            )
            settings = settings_for(
                port, name=name, url=url, ports=[("1", str(p)) for p in ports], interval=0.02
            )
            source = EncoreSource(settings)
            ctx = SourceContext(emitter, Quarantine(tmp_path / name), {}, RecordingLog())
            await nursery.start(source.run, ctx)
            sources.append(source)
        await wait_for(lambda: len(emitter.events) >= 5)
        for p in range(1, 21, 4):
            sim.back_to_back(1, p)  # GetURL traffic on both sources at once
        await wait_for(lambda: len(emitter.events) >= 15)
        await polls(sim, 60)
        nursery.cancel_scope.cancel()
    assert sim.max_concurrency == 1
    assert sim.calls["GetURL"] >= 10
    assert all(s.stats()["events_read"] > 0 for s in sources)


async def test_geturl_is_asked_only_where_it_decides_something(tmp_path: Path) -> None:
    sim = EncoreSimulator()
    recording_for(sim, 1)
    async with source_running(sim, tmp_path, ports=[("1", str(p)) for p in range(1, 6)]) as h:
        await wait_for(lambda: h.emitter.events)
        await polls(sim, 100)  # twenty sweeps of a steady port
        assert sim.calls["GetURL"] == 1
        stats = h.source.stats()
        assert stats["url_requests"] == 1 and stats["events_read"] >= 100
        assert stats["sweep_seconds"] > 0
        assert stats["parse_errors"] == 0


async def test_every_encore_event_is_documented_by_its_schema(tmp_path: Path) -> None:
    """Closed check: the bridge emits no field its shipped schema does not document."""
    from bridge.model import dataschema
    from tests.unit.contract.conformance import check_data

    sim = EncoreSimulator()
    recording_for(sim, 1)
    ports = [("1", "1"), ("1", "2")]
    async with source_running(sim, tmp_path, ports=ports, extensions=["1234"], duration_tolerance=1.0) as h:
        port = sim.stations["1234"]
        script = [
            (lambda: (sim.hold(1, 1), sim.retrieve(1, 1)), "recording.interrupted"),
            (lambda: trio.sleep(1.5), None),  # the state grows older than duration_tolerance
            (lambda: sim.back_to_back(1, 1), "recording.stopped"),  # inferred, window_start
            (lambda: sim.hold(1, 1), "recording.suspended"),
            (lambda: sim.second_call(1, 1), "recording.started"),  # held_recording_url
            (lambda: sim.pause(1, 1), "recording.paused"),
            (lambda: sim.resume(1, 1), "recording.resumed"),
            (lambda: (sim.start(1, port), sim.pause(1, port)), "recording.paused"),  # the extension
            (lambda: sim.cancel(1, 1), "recording.stopped"),
        ]
        await wait_for(lambda: h.emitter.events)
        for action, expected in script:
            await polls(sim, 4)  # the previous state is seen first
            count = len(h.emitter.events)
            if expected is None:
                await action()
                continue
            action()
            await wait_for(lambda n=count, t=expected: t in h.emitter.types()[n:])
    types = set(h.emitter.types())
    assert types >= {
        "recording.started",
        "recording.stopped",
        "recording.paused",
        "recording.resumed",
        "recording.suspended",
        "recording.interrupted",
    }, types
    for event in h.emitter.events:
        check_data(event.type, dataschema(event.type), event.data)
