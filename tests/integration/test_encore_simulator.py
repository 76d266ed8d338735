"""The Encore simulator behaves as Appendix A of the Web API 7.1 docs describes."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

from bridge.simulators import encore as encore_sim
from bridge.simulators.encore import EncoreSimulator
from bridge.sources.encore.soap import SoapClient, SoapFault


@asynccontextmanager
async def client_for(sim: EncoreSimulator, **kw: object) -> AsyncIterator[SoapClient]:
    async with trio.open_nursery() as nursery:
        port = await nursery.start(sim.serve)
        client = SoapClient(f"http://127.0.0.1:{port}/WebAPI/ECAPI.svc", **kw)  # type: ignore[arg-type]
        try:
            yield client
        finally:
            await client.aclose()
            nursery.cancel_scope.cancel()


def unit_port(port: int) -> list[tuple[str, str]]:
    return [("Unit", "1"), ("Port", str(port))]


async def code(client: SoapClient, op: str, port: int = 1) -> int | None:
    params = unit_port(port) + ([("maxRecordingTimeInSeconds", "0")] if op == "StartRecording" else [])
    return (await client.call(op, params)).code


async def test_init_station_and_init_user_hand_out_stable_next_ports() -> None:
    sim = EncoreSimulator()
    async with client_for(sim) as client:
        first = await client.call("InitStation", [("Extension", "1234")])
        second = await client.call("InitUser", [("Machine", "pc-7"), ("User", "smith")])
        again = await client.call("InitStation", [("Extension", "1234")])
        other_pc = await client.call("InitUser", [("Machine", "pc-9"), ("User", "smith")])
        missing = await client.call("InitUser", [("User", "smith")])
        empty = await client.call("InitStation", [("Extension", "")])
    assert (first.get("Unit"), first.get("Port")) == ("1", "1")
    assert (second.get("Unit"), second.get("Port")) == ("1", "2")
    assert again.get("Port") == "1" and other_pc.get("Port") == "2"  # machine is informational
    assert (missing.code, empty.code) == (654, 659)


async def test_recording_state_machine_answers_as_appendix_a_says() -> None:
    sim = EncoreSimulator()
    async with client_for(sim) as c:
        assert await code(c, "PauseRecording") == 608  # nothing to pause
        assert await code(c, "ResumeRecording") == 627  # not in pause mode
        assert await code(c, "StopRecording") == 608
        assert await code(c, "StartRecording") == 100
        assert await code(c, "StartRecording") == 609  # already recording
        assert await code(c, "ResumeRecording") == 627
        assert await code(c, "PauseRecording") == 100
        assert await code(c, "StopRecording") == 608  # the simulator stops only RECORD
        assert await code(c, "ResumeRecording") == 100
        assert await code(c, "StopRecording") == 100
        assert await code(c, "CancelRecording") == 100  # always succeeds
        status = await c.call("PortStatus", unit_port(1))
    assert status.get("portStatus") == "NOT RECORDING"


async def test_hold_puts_a_recording_in_suspended_over_soap_too() -> None:
    sim = EncoreSimulator()
    async with client_for(sim) as c:
        assert await code(c, "SimHold") == 608  # nothing recorded to hold
        await code(c, "StartRecording")
        assert await code(c, "SimHold") == 100
        held = await c.call("PortStatusEX", unit_port(1))
        assert await code(c, "StartRecording") == 609
        assert await code(c, "SimRetrieve") == 100
        back = await c.call("PortStatus", unit_port(1))
    assert held.get("portStatus") == "SUSPENDED" and back.get("portStatus") == "RECORD"


async def test_state_duration_counts_seconds_in_the_state() -> None:
    sim = EncoreSimulator()
    async with client_for(sim) as c:
        idle = await c.call("PortStatusEX", unit_port(3))
        sim.start(1, 3)
        sim.backdate(1, 3, 75)
        busy = await c.call("PortStatusEX", unit_port(3))
        sim.pause(1, 3)
        paused = await c.call("PortStatusEX", unit_port(3))
    assert (idle.get("portStatus"), idle.get("stateDuration")) == ("NOT RECORDING", "0")
    assert busy.get("portStatus") == "RECORD" and int(busy.get("stateDuration") or 0) >= 75
    assert paused.get("portStatus") == "PAUSE" and int(paused.get("stateDuration") or 99) < 75


async def test_fixed_duration_reproduces_the_vendor_test_service() -> None:
    sim = EncoreSimulator(fixed_duration=20)
    async with client_for(sim) as c:
        sim.start(1, 1)
        sim.backdate(1, 1, 500)
        answer = await c.call("PortStatusEX", unit_port(1))
    assert answer.get("stateDuration") == "20"


async def test_get_url_and_fields_need_an_active_recording() -> None:
    sim = EncoreSimulator()
    async with client_for(sim) as c:
        assert (await c.call("GetURL", unit_port(2))).code == 608
        sim.start(1, 2)
        url = (await c.call("GetURL", unit_port(2))).get("URL") or ""
        assigned = await c.call(
            "AssignField", [*unit_port(2), ("fieldName", "fldClientID"), ("fieldValue", "42")]
        )
        field = await c.call("GetField", [*unit_port(2), ("fieldName", "fldClientID")])
        default = await c.call("GetField", [*unit_port(2), ("fieldName", "fldCampaign")])
    assert url.startswith("https://") and "urlplayer.aspx?fldCallIndex=" in url
    assert assigned.code == 100 and field.get("fieldValue") == "42" and default.get("fieldValue") == "123"


async def test_units_and_ports_outside_the_system_answer_606_and_611() -> None:
    sim = EncoreSimulator(units=1, ports_per_unit=288)
    async with client_for(sim) as c:
        no_unit = await c.call("PortStatusEX", [("Unit", "2"), ("Port", "1")])
        no_port = await c.call("PortStatusEX", [("Unit", "1"), ("Port", "289")])
    assert (no_unit.code, no_port.code) == (606, 611)
    assert no_port.message == "Error: Port does not exist"


async def test_version_70_has_no_portstatusex_and_old_inituser_names() -> None:
    sim = EncoreSimulator(api_version="7.0")
    async with client_for(sim) as c:
        with pytest.raises(SoapFault) as info:
            await c.call("PortStatusEX", unit_port(1))
        old = await c.call("InitUser", [("userName", "smith"), ("machineName", "pc")])
        new = await c.call("InitUser", [("Machine", "pc"), ("User", "smith")])
        plain = await c.call("PortStatus", unit_port(1))
    assert info.value.action_not_supported and info.value.status == 500
    assert old.code == 100 and new.code == 654
    assert plain.get("portStatus") == "NOT RECORDING" and plain.get("stateDuration") is None


async def test_max_concurrency_counts_overlapping_requests() -> None:
    sim = EncoreSimulator(latency=0.05)
    async with client_for(sim, max_in_flight=4) as c, trio.open_nursery() as nursery:
        for port in range(1, 5):
            nursery.start_soon(c.call, "PortStatus", unit_port(port))
    assert sim.max_concurrency == 4 and sim.in_flight == 0


async def test_nightly_reset_starts_port_allocation_again() -> None:
    sim = EncoreSimulator()
    async with client_for(sim) as c:
        await c.call("InitStation", [("Extension", "1000")])
        await c.call("InitStation", [("Extension", "2000")])
        sim.reset_day()
        after = await c.call("InitStation", [("Extension", "2000")])
    assert after.get("Port") == "1"


def test_cli_options_build_the_simulator() -> None:
    parser = argparse.ArgumentParser()
    encore_sim.add_arguments(parser)
    args = parser.parse_args(
        ["--api-version", "7.0", "--latency", "0.2", "--fixed-duration", "20", "--unassigned-extension", "9"]
    )
    sim = encore_sim.build(args)
    assert (sim.api_version, sim.latency, sim.fixed_duration) == ("7.0", 0.2, 20)
    assert sim.resolution_errors == {"ext:9": 660}


async def test_event_bridge_simulate_encore_serves_soap(tmp_path: object) -> None:
    command = [sys.executable, "-m", "bridge", "simulate", "encore", "--port", "0"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            line = await trio.to_thread.run_sync(proc.stdout.readline)
            url = line.strip().rsplit(" ", 1)[-1]
            assert url.startswith("http://127.0.0.1:") and url.endswith("/WebAPI/ECAPI.svc")
            client = SoapClient(url)
            try:
                answer = await client.call("InitStation", [("Extension", "1234")])
            finally:
                await client.aclose()
            assert (answer.code, answer.get("Port")) == (100, "1")
        finally:
            proc.terminate()
            proc.wait(timeout=10)


async def test_every_recording_gets_its_own_url_and_back_to_back_calls_differ() -> None:
    """Appendix A: GetURL in RECORD or PAUSE gives the recording's URL (fldCallIndex=…)."""
    sim = EncoreSimulator()
    async with client_for(sim) as c:
        sim.start(1, 4)
        first = (await c.call("GetURL", unit_port(4))).get("URL")
        sim.pause(1, 4)
        paused = (await c.call("GetURL", unit_port(4))).get("URL")
        sim.resume(1, 4)
        assert sim.back_to_back(1, 4) == 100
        second = (await c.call("GetURL", unit_port(4))).get("URL")
        sim.hold(1, 4)
        held = await c.call("GetURL", unit_port(4))
    assert first == paused and first != second
    assert first is not None and "fldCallIndex=" in first and first.endswith("&siteid=1")
    assert held.code == 608  # "Valid Recording States: RECORD, PAUSE"


async def test_a_service_without_url_player_answers_658() -> None:
    sim = EncoreSimulator(url_player=False)
    async with client_for(sim) as c:
        sim.start(1, 1)
        answer = await c.call("GetURL", unit_port(1))
    assert answer.code == 658
    assert answer.message == "Error: URL player address is not defined in ECAPI Web service's Web.config"


async def test_hold_while_paused_and_a_second_call_while_held_follow_the_docs() -> None:
    sim = EncoreSimulator()
    async with client_for(sim) as c:
        sim.start(1, 2)
        sim.pause(1, 2)
        assert sim.hold(1, 2) == 100 and sim.state_of(1, 2) == "PAUSE"  # a paused call stays PAUSE
        assert await code(c, "ResumeRecording", 2) == 100
        # ResumeRecording: "Exit State on Success: RECORD, SUSPENDED" (the call is on hold).
        assert (await c.call("PortStatus", unit_port(2))).get("portStatus") == "SUSPENDED"
        held_url = sim.url_of(1, 2)
        assert sim.second_call(1, 2) == 100  # another call recorded while one is held
        active = await c.call("GetURL", unit_port(2))
        assert (await c.call("PortStatus", unit_port(2))).get("portStatus") == "RECORD"
        assert sim.stop(1, 2) == 100
        idle = await c.call("PortStatusEX", unit_port(2))
    assert active.get("URL") != held_url
    assert (idle.get("portStatus"), idle.get("stateDuration")) == ("NOT RECORDING", "0")


def test_the_simulator_does_not_import_the_source() -> None:
    """Independent counterparts: no shared parser, namespace or constant."""
    code = (
        "import sys, bridge.simulators.encore\n"
        "print(','.join(sorted(m for m in sys.modules if m.startswith('bridge.'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    loaded = set(out.split(","))
    assert "bridge.simulators.encore.protocol" in loaded  # the check sees what was imported
    assert not {m for m in loaded if m.startswith("bridge.sources")}, loaded
