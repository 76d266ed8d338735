"""Auto-disable and `event-bridge endpoint enable|disable|status`, against real receivers."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import trio

from bridge.asgi import serve_asgi
from bridge.cli import main as cli
from bridge.outbox import DEAD, Outbox
from tests.integration.endpoint_support import (
    emit,
    events,
    free_port,
    numbers,
    readyz,
    running,
    sink_component,
    sink_table,
    start_source,
    write_config,
)
from tests.support.helpers import wait_for
from tests.support.receivers import Receiver

DAY = 86400.0


class FakeClock:
    """The sink's wall clock, moved by the test: days of downtime pass in a moment."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def bridge_types(receiver: Receiver) -> list[tuple[str, str, dict]]:
    return [
        (e["type"], e["subject"], e["data"]) for r in receiver.requests if r.status < 300 for e in r.events()
    ]


async def test_410_gone_dead_letters_at_once_disables_and_enable_resumes_in_order(
    tmp_path: Path, nursery, capsys
) -> None:
    answer = {"status": 410}

    async def gone(receiver: Receiver, headers: dict, body: bytes) -> int:
        return answer["status"]

    hook, ops = Receiver(gone), Receiver()
    hook_port = await nursery.start(serve_asgi, hook.app)
    ops_port = await nursery.start(serve_asgi, ops.app)
    admin_port = free_port()
    sinks = sink_table("hook", f"http://127.0.0.1:{hook_port}/hook", "max_in_flight = 1") + sink_table(
        "ops", f"http://127.0.0.1:{ops_port}/ops", 'types = ["bridge.*"]'
    )
    path = write_config(tmp_path, sinks, await start_source(nursery), admin_port)
    async with running(path) as bridge:
        await emit(bridge, events(5))
        await wait_for(lambda: bridge.sinks["hook"].health.state == "disabled")
        await trio.sleep(1.5)  # time for more requests, if anything were still sending
        assert len(hook.requests) == 1  # the 410 disabled the endpoint at once
        status, body = await readyz(admin_port)
        assert status == 503 and body["sinks"]["hook"]["state"] == "disabled"
        assert "endpoint enable hook" in body["sinks"]["hook"]["detail"]
        await wait_for(lambda: any(t == "bridge.sink.disabled" for t, _, _ in bridge_types(ops)))
        capsys.readouterr()
        assert cli(["endpoint", "status", "hook", "--config", str(path), "--json"]) == 0
        shown = json.loads(capsys.readouterr().out)
        assert shown["enabled"] is False and shown["reason"] == "gone" and shown["pending"] == 4
        answer["status"] = 204
        assert cli(["endpoint", "enable", "hook", "--config", str(path)]) == 0
        await wait_for(lambda: len(numbers(hook.requests)) == 4)
        status, body = await readyz(admin_port)
        assert body["sinks"]["hook"]["state"] == "ok"
    assert numbers(hook.requests) == [1, 2, 3, 4]  # resumed where it stopped, in order
    box = Outbox(tmp_path / "state" / "outbox.sqlite3")
    box.open()
    (dead,) = box.deliveries(sink="hook", state=DEAD)
    box.close()
    assert dead["last_status"] == 410
    disabled = [(s, d) for t, s, d in bridge_types(ops) if t == "bridge.sink.disabled"]
    assert disabled == [
        ("hook", {"sink": "hook", "kind": "webhook", "reason": "gone", "error": disabled[0][1]["error"]})
    ]
    assert disabled[0][1]["error"].startswith("HTTP 410")
    dead_letters = [d for t, _, d in bridge_types(ops) if t == "bridge.delivery.dead_lettered"]
    assert [(d["event_id"], d["status"], d["attempts"]) for d in dead_letters] == [(dead["id"], 410, 1)]


@pytest.mark.slow
async def test_down_past_disable_after_is_disabled_stays_disabled_across_a_restart_and_enable_delivers_all(
    tmp_path: Path, nursery
) -> None:
    state = {"up": False}

    async def down(receiver: Receiver, headers: dict, body: bytes) -> int:
        return 204 if state["up"] else 503

    hook = Receiver(down)
    hook_port = await nursery.start(serve_asgi, hook.app)
    sinks = sink_table(
        "hook", f"http://127.0.0.1:{hook_port}/hook", "max_in_flight = 1\nbreaker_threshold = 2"
    )
    path = write_config(tmp_path, sinks, await start_source(nursery))
    clock = FakeClock()

    def fake_clock(config) -> None:
        sink_component(config, "hook").clock = clock

    async with running(path, prepare=fake_clock) as bridge:
        sink = bridge.sinks["hook"]
        await emit(bridge, events(6))
        await wait_for(lambda: len(hook.requests) >= 3)
        assert sink.health.state != "disabled"  # failing, but for seconds, not days
        clock.offset += 4 * DAY
        sink.wake()
        await wait_for(lambda: len(hook.requests) >= 5)
        assert sink.health.state != "disabled"
        clock.offset += 1 * DAY + 60  # past disable_after (5 days, the default) since the first failure
        sink.wake()
        await wait_for(lambda: sink.health.state == "disabled")
        assert sink.controls.disabler.state.reason == "disable_after"
        seen = len(hook.requests)
        clock.offset += 30 * DAY
        sink.wake()
        await trio.sleep(1.5)
        assert len(hook.requests) == seen  # disabled: no probes, whatever the clock says
    state["up"] = True
    async with running(path) as bridge:  # a restart: still disabled, nothing sent
        await trio.sleep(1.5)
        assert bridge.sinks["hook"].health.state == "disabled"
        assert len(hook.requests) == seen
        assert cli(["endpoint", "enable", "hook", "--config", str(path)]) == 0
        await wait_for(lambda: len(numbers(hook.requests)) == 6)
        await emit(bridge, events(2, first=6))
        await wait_for(lambda: len(numbers(hook.requests)) == 8)
    assert numbers(hook.requests) == list(range(8))  # everything, in commit order, once
    box = Outbox(tmp_path / "state" / "outbox.sqlite3")
    box.open()
    assert box.deliveries(sink="hook", state=DEAD) == []
    box.close()


async def test_disable_after_failures_and_operator_disable(tmp_path: Path, nursery, capsys) -> None:
    state = {"up": False}

    async def down(receiver: Receiver, headers: dict, body: bytes) -> int:
        return 204 if state["up"] else 500

    hook = Receiver(down)
    hook_port = await nursery.start(serve_asgi, hook.app)
    sinks = sink_table(
        "hook", f"http://127.0.0.1:{hook_port}/hook", "disable_after_failures = 3\nmax_in_flight = 1"
    )
    path = write_config(tmp_path, sinks, await start_source(nursery))
    async with running(path) as bridge:
        await emit(bridge, events(3))
        await wait_for(lambda: bridge.sinks["hook"].health.state == "disabled")
        assert len(hook.requests) == 3
        state["up"] = True
        assert cli(["endpoint", "enable", "hook", "--config", str(path)]) == 0
        await wait_for(lambda: len(numbers(hook.requests)) == 3)
        assert cli(["endpoint", "disable", "hook", "--config", str(path)]) == 0
        await wait_for(lambda: bridge.sinks["hook"].health.state == "disabled")
        await emit(bridge, events(2, first=3))
        await trio.sleep(1.5)
        assert len(numbers(hook.requests)) == 3  # kept in the outbox while disabled
        capsys.readouterr()
        assert cli(["endpoint", "status", "--config", str(path)]) == 0
        out = capsys.readouterr().out
        assert "DISABLED" in out and "reason=operator" in out and "pending=2" in out
        assert cli(["endpoint", "enable", "hook", "--config", str(path)]) == 0
        await wait_for(lambda: len(numbers(hook.requests)) == 5)
    assert numbers(hook.requests) == [0, 1, 2, 3, 4]
    assert cli(["endpoint", "enable", "nope", "--config", str(path)]) == 2
