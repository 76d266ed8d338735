"""Webhook sink against real loopback HTTP receivers."""

from __future__ import annotations

import base64
import json
import random
from collections import defaultdict
from pathlib import Path

import pytest
import trio
from cloudevents.core.bindings.http import HTTPMessage, from_http_event
from cloudevents.core.formats.json import JSONFormat
from standardwebhooks import Webhook

from bridge.asgi import serve_asgi
from bridge.cli import main as cli
from bridge.outbox import DEAD, SKIPPED, Outbox
from bridge.simulators.uptivity import UptivitySimulator
from tests.support.helpers import read_jsonl, running_bridge, wait_for, write_config
from tests.support.receivers import Receiver
from tests.support.reliability import record

SECRET_OLD = "whsec_" + base64.b64encode(b"old-secret-0123456789abcdef").decode()
SECRET_NEW = "whsec_" + base64.b64encode(b"new-secret-0123456789abcdef").decode()


def config(tmp_path: Path, sim_port: int, hooks: dict[str, tuple[int, str]], **extra: object) -> Path:
    sinks = ""
    for name, (port, options) in hooks.items():
        defaults = {
            "retry_schedule": "[0.05, 0.1, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2]",
            "breaker_cooldown": "0.1",
            "breaker_max_cooldown": "0.3",
            "timeout": "2.0",
        }
        lines = "\n".join(f"{k} = {v}" for k, v in defaults.items() if f"{k} =" not in options)
        sinks += f"""
[[sinks.webhook]]
name = "{name}"
url = "http://127.0.0.1:{port}/hook"
secrets = ["{SECRET_OLD}", "{SECRET_NEW}"]
{lines}
{options}
"""
    return write_config(
        tmp_path,
        f"""
[bridge]
state_dir = "{tmp_path / "state"}"

[[sources.uptivity]]
name = "up"
host = "127.0.0.1"
port = {sim_port}
reconnect_min = 0.02
reconnect_max = 0.2

[[sinks.log]]
name = "log"
path = "{tmp_path / "events.jsonl"}"
{sinks}
""",
    )


async def start_receiver(nursery: trio.Nursery, receiver: Receiver) -> int:
    return await nursery.start(serve_asgi, receiver.app)


def numbers(events: list[dict]) -> list[int]:
    return [int(e["data"]["raw"]["EVENTXREF"]) for e in events]


@pytest.mark.parametrize("mode", ["structured", "binary", "batch"])
async def test_signed_per_standard_webhooks_and_parsed_by_the_cloudevents_sdk(
    tmp_path, nursery, mode
) -> None:
    sim = UptivitySimulator(rate=0, count=14, numbered=True)
    sim_port = await nursery.start(sim.serve)
    receiver = Receiver()
    port = await start_receiver(nursery, receiver)
    async with running_bridge(config(tmp_path, sim_port, {"hook": (port, f'mode = "{mode}"')})):
        await wait_for(lambda: len(receiver.delivered_ids()) >= 14)
    logged = read_jsonl(tmp_path / "events.jsonl")
    sdk_events = []
    for request in receiver.requests:
        for secret in (SECRET_OLD, SECRET_NEW):  # rotation: each secret alone verifies
            Webhook(secret).verify(request.body, request.headers)
        signatures = request.headers["webhook-signature"].split(" ")
        assert len(signatures) == 2 and all(s.startswith("v1,") for s in signatures)
        if mode == "batch":
            assert request.headers["content-type"] == "application/cloudevents-batch+json"
            for item in json.loads(request.body):
                sdk_events.append(JSONFormat().read(None, json.dumps(item).encode()))
        else:
            if mode == "structured":
                assert request.headers["content-type"] == "application/cloudevents+json"
            else:
                assert request.headers["ce-specversion"] == "1.0"
            event = from_http_event(HTTPMessage(headers=request.headers, body=request.body))
            assert request.headers["webhook-id"] == event.get_id()
            sdk_events.append(event)
    assert [e.get_id() for e in sdk_events] == [line["id"] for line in logged]
    assert [e.get_type() for e in sdk_events] == [line["type"] for line in logged]
    assert [e.get_data()["raw"]["EVENTXREF"] for e in sdk_events] == [str(n) for n in range(1, 15)]
    if mode == "batch":
        assert len(receiver.requests) < 14


async def test_server_error_then_success_redelivers_with_the_same_webhook_id(tmp_path, nursery) -> None:
    async def flaky(receiver: Receiver, headers: dict, body: bytes) -> int:
        seen = [r for r in receiver.requests if r.headers["webhook-id"] == headers["webhook-id"]]
        return 500 if not seen else 204

    sim = UptivitySimulator(rate=0, count=3, numbered=True)
    sim_port = await nursery.start(sim.serve)
    receiver = Receiver(flaky)
    port = await start_receiver(nursery, receiver)
    async with running_bridge(config(tmp_path, sim_port, {"hook": (port, "")})):
        await wait_for(lambda: len(receiver.delivered_ids()) >= 3)
    by_id = defaultdict(list)
    for request in receiver.requests:
        by_id[request.headers["webhook-id"]].append(request.status)
    assert list(by_id.values()) == [[500, 204]] * 3
    assert list(by_id) == [e["id"] for e in read_jsonl(tmp_path / "events.jsonl")]
    record(
        "receiver: webhook",
        "HTTP 500 on the first attempt of every event",
        injected=3,
        sent=3,
        delivered=len(set(receiver.delivered_ids())),
        duplicated=len(receiver.delivered_ids()) - len(set(receiver.delivered_ids())),
        observed="each retried once with the same webhook-id, then delivered; order kept",
    )


async def test_timeout_then_success(tmp_path, nursery) -> None:
    async def slow_once(receiver: Receiver, headers: dict, body: bytes) -> int:
        if headers["webhook-id"] not in receiver.timed_out:
            receiver.timed_out.add(headers["webhook-id"])
            await trio.sleep(1.0)  # longer than the sink's timeout
        return 204

    sim = UptivitySimulator(rate=0, count=2, numbered=True)
    sim_port = await nursery.start(sim.serve)
    receiver = Receiver(slow_once)
    receiver.timed_out = set()
    port = await start_receiver(nursery, receiver)
    async with running_bridge(config(tmp_path, sim_port, {"hook": (port, "timeout = 0.3")})) as bridge:
        await wait_for(lambda: bridge.sinks["hook"].health.delivered >= 2)
        assert bridge.sinks["hook"].health.retried >= 2
    ids = [e["id"] for e in read_jsonl(tmp_path / "events.jsonl")]
    assert receiver.timed_out == set(ids)
    record(
        "receiver: webhook",
        "timeout (receiver answers after 1 s, sink timeout 0.3 s) on each first attempt",
        injected=2,
        sent=2,
        delivered=len(set(receiver.delivered_ids())),
        duplicated=len(receiver.delivered_ids()) - len(set(receiver.delivered_ids())),
        observed="attempt abandoned at the timeout and retried with the same id; delivered",
    )


async def test_client_error_dead_letters_then_dlq_retry_delivers(tmp_path, nursery, capsys) -> None:
    answers = {"status": 400}

    async def refuse(receiver: Receiver, headers: dict, body: bytes):
        return answers["status"], {"content-type": "text/plain"}, b"bad tenant " + b"x" * 10_000

    sim = UptivitySimulator(rate=0, count=2, numbered=True)
    sim_port = await nursery.start(sim.serve)
    receiver = Receiver(refuse)
    port = await start_receiver(nursery, receiver)
    path = config(tmp_path, sim_port, {"hook": (port, "max_response_bytes = 512")})
    async with running_bridge(path) as bridge:
        await wait_for(lambda: bridge.sinks["hook"].health.dead >= 2)
        # health counts an outcome as it is decided; the outbox has it once the write ends
        await wait_for(lambda: len(bridge.outbox.sync.deliveries(sink="hook", state=DEAD)) == 2)
        assert len(receiver.requests) == 2  # not retried
        capsys.readouterr()
        assert cli(["dlq", "list", "--config", str(path), "--json"]) == 0
        listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert [d["last_status"] for d in listed] == [400, 400]
        assert all(d["last_error"].startswith("HTTP 400: bad tenant") for d in listed)
        assert all(len(d["last_error"]) <= 512 + len("HTTP 400: ") for d in listed)
        answers["status"] = 204
        assert cli(["dlq", "retry", "--config", str(path), "--sink", "hook"]) == 0
        await wait_for(lambda: len(receiver.delivered_ids()) == 2)
    assert receiver.delivered_ids() == [d["id"] for d in listed]
    box = Outbox(tmp_path / "state" / "outbox.sqlite3")
    box.open()
    assert box.deliveries(sink="hook", state=DEAD) == []
    box.close()


async def test_per_subject_order_holds_under_concurrency(tmp_path, nursery) -> None:
    rng = random.Random(3)

    async def jittery(receiver: Receiver, headers: dict, body: bytes) -> int:
        await trio.sleep(rng.uniform(0, 0.02))
        return 503 if rng.random() < 0.1 else 204

    sim = UptivitySimulator(rate=0, count=140, numbered=True, devices=6)
    sim_port = await nursery.start(sim.serve)
    receiver = Receiver(jittery)
    port = await start_receiver(nursery, receiver)
    async with running_bridge(config(tmp_path, sim_port, {"hook": (port, "max_concurrency = 8")})):
        await wait_for(lambda: len(set(receiver.delivered_ids())) >= 140, timeout=30)
    per_subject: dict[str, list[int]] = defaultdict(list)
    for request in receiver.requests:
        if request.status == 204:
            for event in request.events():
                per_subject[event["subject"]].append(int(event["data"]["raw"]["EVENTXREF"]))
    assert len(per_subject) == 6
    for sequence in per_subject.values():
        assert sequence == sorted(sequence)
    assert receiver.max_concurrent > 1  # subjects really went in parallel


async def test_endpoint_down_then_back_gets_everything_and_others_are_not_slowed(tmp_path, nursery) -> None:
    state = {"up": False}

    async def down_until_told(receiver: Receiver, headers: dict, body: bytes) -> int:
        return 204 if state["up"] else 503

    sim = UptivitySimulator(rate=200, count=40, numbered=True, devices=3)
    sim_port = await nursery.start(sim.serve)
    failing = Receiver(down_until_told)
    healthy = Receiver()
    failing_port = await start_receiver(nursery, failing)
    healthy_port = await start_receiver(nursery, healthy)
    hooks = {
        "failing": (
            failing_port,
            (
                "retry_schedule = [0.05, 0.1, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, "
                "0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2]"
            ),
        ),
        "healthy": (healthy_port, ""),
    }
    async with running_bridge(config(tmp_path, sim_port, hooks)) as bridge:
        await wait_for(lambda: len(healthy.delivered_ids()) >= 40)
        assert failing.delivered_ids() == []
        await wait_for(lambda: bridge.sinks["failing"].breaker.is_open)
        assert bridge.sinks["failing"].health.state == "open"
        state["up"] = True
        await wait_for(lambda: len(set(failing.delivered_ids())) >= 40, timeout=20)
        assert bridge.sinks["failing"].health.state == "ok"
    assert set(failing.delivered_ids()) == set(healthy.delivered_ids())
    # While open, the breaker let through only single probes, not the whole backlog.
    failed = [r for r in failing.requests if r.status == 503]
    assert len(failed) < 40 * 3
    record(
        "receiver: webhook",
        "endpoint down (503) then back, second endpoint healthy",
        injected=1,
        sent=40,
        delivered=len(set(failing.delivered_ids())),
        duplicated=len(failing.delivered_ids()) - len(set(failing.delivered_ids())),
        observed=f"healthy endpoint got all 40 while the other failed; breaker opened ({len(failed)} failed "
        "attempts, single probes); everything delivered after recovery",
    )


async def test_redirects_are_not_followed(tmp_path, nursery) -> None:
    async def redirect(receiver: Receiver, headers: dict, body: bytes):
        return 307, {"location": "http://127.0.0.1:1/elsewhere"}, b""

    sim = UptivitySimulator(rate=0, count=1, numbered=True)
    sim_port = await nursery.start(sim.serve)
    receiver = Receiver(redirect)
    port = await start_receiver(nursery, receiver)
    async with running_bridge(config(tmp_path, sim_port, {"hook": (port, "")})) as bridge:
        await wait_for(lambda: bridge.sinks["hook"].health.dead == 1)
    assert len(receiver.requests) == 1
    box = Outbox(tmp_path / "state" / "outbox.sqlite3")
    box.open()
    (dead,) = box.deliveries(sink="hook", state=DEAD)
    box.close()
    assert dead["last_status"] == 307 and "not followed" in dead["last_error"]
    record(
        "receiver: webhook",
        "redirect (307)",
        injected=1,
        sent=1,
        delivered=0,
        observed="not followed: dead-lettered at once with 'redirects are not followed; fix the URL' "
        "(kept in the outbox for 'dlq retry', so not lost)",
    )


async def test_retry_after_is_honoured(tmp_path, nursery) -> None:
    async def throttle_once(receiver: Receiver, headers: dict, body: bytes):
        return (429, {"retry-after": "1"}, b"slow down") if not receiver.requests else 204

    sim = UptivitySimulator(rate=0, count=1, numbered=True)
    sim_port = await nursery.start(sim.serve)
    receiver = Receiver(throttle_once)
    port = await start_receiver(nursery, receiver)
    async with running_bridge(config(tmp_path, sim_port, {"hook": (port, "retry_schedule = [5.0]")})):
        await wait_for(lambda: receiver.delivered_ids())
    first, second = receiver.requests
    assert second.at - first.at >= 0.9  # waited for Retry-After, not the jittered schedule alone
    record(
        "receiver: webhook",
        "429 with Retry-After: 1",
        injected=1,
        sent=1,
        delivered=len(receiver.delivered_ids()),
        observed=f"retry waited {second.at - first.at:.2f} s (>= Retry-After), then delivered",
    )


async def test_type_and_source_filters(tmp_path, nursery) -> None:
    sim = UptivitySimulator(rate=0, count=7, numbered=True)
    sim_port = await nursery.start(sim.serve)
    recordings, nothing = Receiver(), Receiver()
    hooks = {
        "recordings": (await start_receiver(nursery, recordings), 'types = ["recording.*"]'),
        "other-source": (await start_receiver(nursery, nothing), 'sources = ["encore-*"]'),
    }
    async with running_bridge(config(tmp_path, sim_port, hooks)):
        await wait_for(lambda: len(recordings.delivered_ids()) >= 5)
        box = Outbox(tmp_path / "state" / "outbox.sqlite3")
        box.open()
        await wait_for(lambda: len(box.deliveries(sink="other-source", state=SKIPPED)) == 7)
        box.close()
    types = [e["type"] for r in recordings.requests for e in r.events()]
    assert types == [
        "recording.started", "recording.paused", "recording.resumed", "recording.stopped", "recording.saved",
    ]  # fmt: skip
    assert nothing.requests == []


async def test_endless_response_body_is_cut_off(tmp_path, nursery) -> None:
    async def huge(receiver: Receiver, headers: dict, body: bytes):
        return (500, {}, b"E" * 5_000_000) if not receiver.requests else 204

    sim = UptivitySimulator(rate=0, count=1, numbered=True)
    sim_port = await nursery.start(sim.serve)
    receiver = Receiver(huge)
    port = await start_receiver(nursery, receiver)
    async with running_bridge(config(tmp_path, sim_port, {"hook": (port, "max_response_bytes = 1000")})):
        await wait_for(lambda: receiver.delivered_ids())
    box = Outbox(tmp_path / "state" / "outbox.sqlite3")
    box.open()
    (row,) = box.deliveries(sink="hook")
    box.close()
    assert row["attempts"] == 2 and row["last_error"] is None
    record(
        "receiver: webhook",
        "5 MB error body (max_response_bytes 1000)",
        injected=1,
        sent=1,
        delivered=len(receiver.delivered_ids()),
        observed="body cut off at the limit; 500 retried; delivered on the second attempt",
    )
