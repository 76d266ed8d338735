"""The admin listener over real HTTP: cheap probes, the bearer token, CSRF, console data."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import trio

from bridge import admin, logs
from bridge.admin.cache import ReadOnlyOutbox
from bridge.config import load
from bridge.model import Event
from bridge.service import Bridge
from tests.support.helpers import wait_for

TOKEN = "t0ken-for-the-admin-listener-tests"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write(tmp_path: Path, admin_table: str) -> Path:
    path = tmp_path / "bridge.toml"
    path.write_text(
        f"""
[bridge]
state_dir = "{tmp_path / "state"}"
timezone = "UTC"

[admin]
{admin_table}

[[sources.uptivity]]
name = "up"
host = "127.0.0.1"
port = {free_port()}

[[sinks.log]]
name = "log"
path = "{tmp_path / "events.jsonl"}"
"""
    )
    return path


@asynccontextmanager
async def bridge_with_admin(path: Path) -> AsyncIterator[tuple[Bridge, str]]:
    config = load(path)
    logs.redactor.update(config.secrets.values)
    bridge = Bridge(config, shutdown_grace=1.0)
    admin.attach(bridge)
    async with trio.open_nursery() as nursery:
        await nursery.start(bridge.run)
        try:
            yield bridge, f"http://{config.admin.listen}"
        finally:
            bridge.request_stop()


def event(type_: str, subject: str) -> Event:
    return Event(
        source_name="up",
        vendor="uptivity",
        type=type_,
        subject=subject,
        time=datetime.now(UTC),
        data={"device_id": subject},
    )


class Counting:
    """Counts calls made through a callable attribute (the outbox's writer queue, the reader)."""

    def __init__(self, target: Any, attribute: str) -> None:
        self.names: list[str] = []
        inner = getattr(target, attribute)

        async def counted(fn: Any, *args: Any, **kwargs: Any) -> Any:
            self.names.append(getattr(fn, "__name__", repr(fn)))
            return await inner(fn, *args, **kwargs)

        setattr(target, attribute, counted)


async def test_readyz_and_metrics_do_no_outbox_work_per_request(tmp_path: Path) -> None:
    path = write(tmp_path, f'listen = "127.0.0.1:{free_port()}"\nrefresh_interval = 300')
    async with bridge_with_admin(path) as (bridge, base):
        await bridge.committer.emit(
            "up", [event("call.started", "1001"), event("call.ended", "1001")], durable=True
        )
        cache = bridge.admin.cache
        writer = Counting(bridge.outbox, "call")
        reader = Counting(cache.outbox, "run")
        async with httpx.AsyncClient(base_url=base) as client:
            answers: list[httpx.Response] = []

            async def scrape(p: str) -> None:
                answers.append(await client.get(p))

            async with trio.open_nursery() as scrapers:
                for _ in range(16):
                    scrapers.start_soon(scrape, "/readyz")
                    scrapers.start_soon(scrape, "/metrics")
        assert len(answers) == 32 and all(a.status_code in (200, 503) for a in answers)
        assert all(a.json()["outbox"]["ok"] for a in answers if a.url.path == "/readyz")
        # 32 requests, and not one count or write probe on the committer's queue or the reader
        # (commits and delivery marks of the two events may go through the writer meanwhile).
        assert not {"stats", "probe_writable"} & set(writer.names), writer.names
        assert reader.names == []

        # The counts come from the background refresh (read-only connection).
        await cache.refresh()
        assert reader.names == ["stats"]
        async with httpx.AsyncClient(base_url=base) as client:
            metrics = (await client.get("/metrics")).text
        assert "event_bridge_outbox_events 2.0" in metrics
        assert 'event_bridge_outbox_pending{sink="log"}' in metrics


async def test_write_probe_runs_only_when_no_commit_proved_the_disk_writable(tmp_path: Path) -> None:
    path = write(tmp_path, f'listen = "127.0.0.1:{free_port()}"\nrefresh_interval = 300')
    async with bridge_with_admin(path) as (bridge, _):
        cache = bridge.admin.cache
        probes = cache.probes
        await bridge.committer.emit("up", [event("call.started", "7")], durable=True)
        await cache.refresh()
        assert cache.probes == probes  # a commit went through: no probe needed
        await cache.refresh()
        assert cache.probes == probes + 1  # idle since: ask the disk
        assert cache.outbox_problem() is None


async def test_read_only_connection_cannot_write(tmp_path: Path) -> None:
    path = write(tmp_path, f'listen = "127.0.0.1:{free_port()}"')
    async with bridge_with_admin(path) as (bridge, _):
        reader = ReadOnlyOutbox(bridge.outbox.sync.path)
        try:
            failed = False
            try:
                await reader.run(lambda view: view.db.execute("DELETE FROM events"))
            except Exception as exc:
                failed = "readonly" in str(exc) or "read-only" in str(exc)
            assert failed
        finally:
            await reader.close()


async def test_bearer_token_guards_metrics_and_data_and_actions_need_csrf(tmp_path: Path) -> None:
    path = write(tmp_path, f'listen = "127.0.0.1:{free_port()}"\ntoken = "{TOKEN}"')
    async with bridge_with_admin(path) as (_, base):
        auth = {"authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(base_url=base) as client:
            assert (await client.get("/healthz")).status_code == 200
            assert (await client.get("/readyz")).status_code in (200, 503)  # probes need no token
            page = await client.get("/")
            assert page.status_code == 200 and "console.js" in page.text
            assert "default-src 'none'" in page.headers["content-security-policy"]
            for p in ("/metrics", "/api/summary", "/api/dlq", "/api/events", "/api/session"):
                answer = await client.get(p)
                assert answer.status_code == 401, p
                assert answer.headers["www-authenticate"] == "Bearer"
                wrong = await client.get(p, headers={"authorization": "Bearer not-the-token-at-all"})
                assert wrong.status_code == 401
                assert (await client.get(p, headers=auth)).status_code == 200, p
            session = (await client.get("/api/session", headers=auth)).json()
            assert session["actions"] is True and len(session["csrf"]) > 20
            body = {"sink": "log", "seqs": [1]}
            no_csrf = await client.post("/api/actions/retry", json=body, headers=auth)
            assert no_csrf.status_code == 403 and "CSRF" in no_csrf.json()["error"]
            csrf = {**auth, "x-csrf-token": session["csrf"]}
            no_token = await client.post(
                "/api/actions/retry", json=body, headers={"x-csrf-token": session["csrf"]}
            )
            assert no_token.status_code == 401
            elsewhere = await client.post(
                "/api/actions/retry", json=body, headers={**csrf, "origin": "http://evil.example"}
            )
            assert elsewhere.status_code == 403
            form = await client.post(
                "/api/actions/retry",
                content=b"sink=log",
                headers={**csrf, "content-type": "application/x-www-form-urlencoded"},
            )
            assert form.status_code == 415
            done = await client.post("/api/actions/retry", json=body, headers=csrf)
            assert done.status_code == 200 and done.json() == {"action": "retry", "sink": "log", "count": 0}
            unknown = await client.post(
                "/api/actions/retry", json={"sink": "nope", "seqs": [1]}, headers=csrf
            )
            assert unknown.status_code == 404


async def test_without_a_token_data_is_open_on_loopback_and_actions_are_off(tmp_path: Path) -> None:
    path = write(tmp_path, f'listen = "127.0.0.1:{free_port()}"')
    async with bridge_with_admin(path) as (bridge, base):
        await bridge.committer.emit(
            "up", [event("recording.started", "dev<1>"), event("call.ended", "x")], durable=True
        )
        async with httpx.AsyncClient(base_url=base) as client:
            session = (await client.get("/api/session")).json()
            assert session == {"actions": False, "csrf": None}
            refused = await client.post(
                "/api/actions/retry", json={"sink": "log", "seqs": [1]}, headers={"x-csrf-token": "x"}
            )
            assert refused.status_code == 403 and "[admin] token" in refused.json()["error"]
            events = (await client.get("/api/events", params={"type": "recording.*"})).json()["events"]
            assert [e["subject"] for e in events] == ["dev<1>"]
            detail = (await client.get("/api/event", params={"seq": events[0]["seq"]})).json()
            assert detail["event"]["subject"] == "dev<1>"
            assert [d["sink"] for d in detail["deliveries"]] == ["log"]
            await wait_for(lambda: "up" in bridge.admin.cache.last_event)
            summary = (await client.get("/api/summary")).json()
            assert [s["name"] for s in summary["sources"]] == ["up"]
            assert summary["sources"][0]["last_event_at"] is not None
            assert summary["sinks"][0]["name"] == "log" and "latency" in summary["sinks"][0]


def test_token_is_a_secret_and_a_public_listener_is_warned_about(tmp_path: Path) -> None:
    config = load(write(tmp_path, f'listen = "0.0.0.0:9108"\ntoken = "{TOKEN}"'))
    assert TOKEN in config.secrets.values
    assert any("admin.listen" in w and "not a loopback address" in w for w in config.warnings)
    open_config = load(write(tmp_path, 'listen = "[::]:9108"'))
    assert any("set [admin] token" in w for w in open_config.warnings)
    quiet = load(write(tmp_path, 'listen = "127.0.0.1:9108"'))
    assert not any("admin" in w for w in quiet.warnings)


async def test_console_actions_replay_drop_and_endpoint_toggle(tmp_path: Path, nursery: trio.Nursery) -> None:
    from bridge.asgi import serve_asgi
    from bridge.sinks.webhook import disable as endpoint_state
    from tests.support.receivers import Receiver

    refusing = True

    async def behaviour(receiver: Receiver, headers: dict[str, str], body: bytes) -> int:
        return 422 if refusing else 204

    receiver = Receiver(behaviour)
    hook = await nursery.start(serve_asgi, receiver.app)
    path = write(tmp_path, f'listen = "127.0.0.1:{free_port()}"\ntoken = "{TOKEN}"')
    path.write_text(
        path.read_text()
        + f"""
[[sinks.webhook]]
name = "crm"
url = "http://127.0.0.1:{hook}/events"
secrets = ["whsec_b3BlcmF0b3JzLXZpZXctdGVzdC1zZWNyZXQ="]
"""
    )
    async with bridge_with_admin(path) as (bridge, base):
        await bridge.committer.emit("up", [event("call.started", "a"), event("call.started", "b")])
        view = bridge.outbox.sync
        await wait_for(lambda: len(view.deliveries(sink="crm", state=2)) == 2, timeout=30)
        auth = {"authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(base_url=base, headers=auth) as client:
            csrf = {"x-csrf-token": (await client.get("/api/session")).json()["csrf"]}
            dead = (await client.get("/api/dlq")).json()["dead_letters"]
            assert {d["last_status"] for d in dead} == {422}
            first, second = sorted(d["seq"] for d in dead)

            dropped = await client.post(
                "/api/actions/drop", json={"sink": "crm", "seqs": [second]}, headers=csrf
            )
            assert dropped.json()["count"] == 1
            assert [d["seq"] for d in view.deliveries(sink="crm", state=2)] == [first]

            disabled = await client.post("/api/actions/disable", json={"sink": "crm"}, headers=csrf)
            assert disabled.status_code == 200
            state = endpoint_state.load(view.db, "crm")
            assert state is not None and state.enabled is False and state.reason == "operator"
            cannot = await client.post("/api/actions/disable", json={"sink": "log"}, headers=csrf)
            assert cannot.status_code == 409
            enabled = await client.post("/api/actions/enable", json={"sink": "crm"}, headers=csrf)
            assert enabled.status_code == 200
            state = endpoint_state.load(view.db, "crm")
            assert state is not None and state.enabled is True

            refusing = False
            since = datetime.fromtimestamp(0, UTC).isoformat()
            replayed = await client.post(
                "/api/actions/replay", json={"sink": "crm", "since": since}, headers=csrf
            )
            assert replayed.json()["count"] == 2  # both events, also the dropped one, same ids
            await wait_for(lambda: len(receiver.delivered_ids()) == 2, timeout=30)
            ids = {row["id"] for row in view.deliveries(sink="crm")}
            assert set(receiver.delivered_ids()) == ids
            bad = await client.post(
                "/api/actions/replay", json={"sink": "crm", "since": "yesterday"}, headers=csrf
            )
            assert bad.status_code == 400 and "ISO 8601" in bad.json()["error"]


async def test_a_loopback_listener_refuses_foreign_host_names(tmp_path: Path) -> None:
    """DNS rebinding: evil.example resolving to 127.0.0.1 must not read the console."""
    port = free_port()
    path = write(tmp_path, f'listen = "127.0.0.1:{port}"')
    async with bridge_with_admin(path) as (_, base), httpx.AsyncClient(base_url=base) as client:
        for host in (f"evil.example:{port}", "evil.example", f"127.0.0.1.evil.example:{port}"):
            answer = await client.get("/api/summary", headers={"host": host})
            assert answer.status_code == 421, host
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", f"[::1]:{port}"):
            assert (await client.get("/api/summary", headers={"host": host})).status_code == 200, host
