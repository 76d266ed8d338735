"""Operational events (bridge.*) reach the sink that asked for them, once per state change,
and no other sink; `receive` shows them as BRIDGE NOTICE lines."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest
import trio

from bridge.asgi import serve_asgi
from bridge.receiver import WebhookVerifier, event_line, is_operational
from bridge.simulators.uptivity import UptivitySimulator
from tests.integration.endpoint_support import (
    SECRET,
    emit,
    events,
    numbers,
    running,
    sink_table,
    start_source,
    write_config,
)
from tests.support.helpers import wait_for
from tests.support.receivers import Receiver


def accepted(receiver: Receiver) -> list[dict]:
    return [e for r in receiver.requests if 200 <= r.status < 300 for e in r.events()]


@pytest.mark.slow
async def test_operational_events_once_per_state_change_only_where_asked(tmp_path: Path, nursery) -> None:
    async def flaky(receiver: Receiver, headers: dict, body: bytes) -> int:
        return 503 if len(receiver.requests) < 6 else 204

    ops, vendor, failing = Receiver(), Receiver(), Receiver(flaky)
    ports = [await nursery.start(serve_asgi, r.app) for r in (ops, vendor, failing)]
    sinks = (
        sink_table(
            "ops", f"http://127.0.0.1:{ports[0]}/ops", 'types = ["bridge.*"]\nsources = ["uptivity-*"]'
        )
        + sink_table("vendor", f"http://127.0.0.1:{ports[1]}/hook")
        + sink_table(
            "failing", f"http://127.0.0.1:{ports[2]}/hook", "breaker_threshold = 3\nmax_in_flight = 1"
        )
    )
    sim_scope = trio.CancelScope()

    async def recorder(task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        with sim_scope:
            await UptivitySimulator(rate=0, count=0).serve(task_status=task_status)

    port = await nursery.start(recorder)
    async with running(write_config(tmp_path, sinks, port)) as bridge:
        bridge.operational.min_interval = 0.5  # the default minute, shortened for the test
        await wait_for(lambda: any(e["type"] == "bridge.source.connected" for e in accepted(ops)))
        await emit(bridge, events(4, subjects=2))
        await wait_for(lambda: len(numbers(failing.requests)) == 4 and len(numbers(vendor.requests)) == 4)
        await wait_for(lambda: any(e["type"] == "bridge.sink.recovered" for e in accepted(ops)))
        sim_scope.cancel()  # the recorder goes away…
        await wait_for(lambda: any(e["type"] == "bridge.source.disconnected" for e in accepted(ops)))
        await trio.sleep(1.0)
        await start_source(nursery, port)  # …and comes back on the same port
        await wait_for(
            lambda: [e["type"] for e in accepted(ops)].count("bridge.source.connected") == 2, timeout=15
        )
        await trio.sleep(1.5)  # time for duplicates, were there any
    got = accepted(ops)
    by_subject: dict[str, list[str]] = defaultdict(list)
    for event in got:
        by_subject[event["subject"]].append(event["type"])
    assert by_subject == {
        "failing": ["bridge.sink.failing", "bridge.sink.recovered"],  # 6 failed requests, one event
        "up": ["bridge.source.connected", "bridge.source.disconnected", "bridge.source.connected"],
    }
    failing_event = next(e for e in got if e["type"] == "bridge.sink.failing")
    assert failing_event["data"]["failures"] == 3 and failing_event["data"]["status"] == 503
    assert failing_event["source"] == "/event-bridge/bridge/bridge"
    reconnected = [e for e in got if e["type"] == "bridge.source.connected"][1]
    assert reconnected["data"]["down_seconds"] > 0
    disconnected = next(e for e in got if e["type"] == "bridge.source.disconnected")
    assert disconnected["data"]["reason"]
    # Vendor endpoints with the default types = ["*"] never see them.
    assert not any(is_operational(e) for e in accepted(vendor) + accepted(failing))
    assert sorted(numbers(vendor.requests)) == [0, 1, 2, 3]
    # Signed like every webhook; the receiver prints them apart.
    verifier = WebhookVerifier([SECRET])
    for request in ops.requests:
        for event in verifier.verify(request.body, request.headers):
            line = event_line(event, request.headers)
            assert line.startswith("BRIDGE NOTICE") and event["type"] in line
    assert event_line(accepted(vendor)[0], vendor.requests[0].headers).startswith("webhook received")
