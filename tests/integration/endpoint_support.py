"""Shared pieces of the endpoint-control tests (tests/integration/test_endpoint_*.py):
a bridge with no vendor source (events are handed to its committer, as a source would),
webhook sinks pointed at real loopback receivers, the admin listener for /readyz."""

from __future__ import annotations

import base64
import socket
import textwrap
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import trio

from bridge import logs
from bridge.admin import attach
from bridge.committer import SourceEmitter
from bridge.config import BridgeConfig, load
from bridge.model import Event, utcnow
from bridge.service import Bridge
from bridge.simulators.uptivity import UptivitySimulator

SECRET = "whsec_" + base64.b64encode(b"endpoint-controls-test-secret-0123").decode()
FAST = {  # retries and probes in fractions of a second
    "retry_schedule": "[" + ", ".join(["0.05"] * 40) + "]",
    "reconnect_min": "0.05",
    "reconnect_max": "0.2",
    "timeout": "3.0",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sink_table(name: str, url: str, options: str = "", **overrides: str) -> str:
    settings = {**FAST, **overrides}
    given = {line.split("=", 1)[0].strip() for line in options.splitlines() if "=" in line}
    lines = "\n".join(f"{k} = {v}" for k, v in settings.items() if k not in given)
    return (
        f'\n[[sinks.webhook]]\nname = "{name}"\nurl = "{url}"\nsecrets = ["{SECRET}"]\n{lines}\n{options}\n'
    )


async def start_source(nursery: trio.Nursery, port: int = 0) -> int:
    """A quiet Uptivity simulator (no events of its own) for the bridge's one source."""
    return int(await nursery.start(UptivitySimulator(rate=0, count=0, port=port).serve))


def write_config(tmp_path: Path, sinks: str, source_port: int, admin_port: int | None = None) -> Path:
    admin = f'listen = "127.0.0.1:{admin_port}"' if admin_port else "enabled = false"
    source = (
        f'[[sources.uptivity]]\nname = "up"\nhost = "127.0.0.1"\nport = {source_port}\n'
        "reconnect_min = 0.02\nreconnect_max = 0.2\n"
    )
    path = tmp_path / "bridge.toml"
    text = (
        f'[bridge]\nstate_dir = "{tmp_path / "state"}"\n\n'
        f"[admin]\n{admin}\n\n{source}{textwrap.dedent(sinks)}"
    )
    path.write_text(text)
    return path


def events(count: int, *, subjects: int = 1, first: int = 0) -> list[Event]:
    return [
        Event(
            source_name="src",
            vendor="uptivity",
            type="call.started",
            subject=f"dev{i % subjects}",
            time=utcnow(),
            data={"n": i},
            identity={"n": i},
        )
        for i in range(first, first + count)
    ]


async def emit(bridge: Bridge, batch: Sequence[Event]) -> None:
    """What a source does: hand events to the committer (durably)."""
    await SourceEmitter(bridge.committer, "src").emit(batch, durable=True)


@asynccontextmanager
async def running(
    config: Path | BridgeConfig, *, prepare: Callable[[BridgeConfig], Any] | None = None, grace: float = 1.0
) -> AsyncIterator[Bridge]:
    """The real service in-process, with the admin listener when [admin] is enabled."""
    if isinstance(config, Path):
        config = load(config)
    if prepare is not None:
        prepare(config)
    logs.redactor.update(config.secrets.values)
    bridge = Bridge(config, shutdown_grace=grace)
    attach(bridge)
    async with trio.open_nursery() as nursery:
        await nursery.start(bridge.run)
        try:
            yield bridge
        finally:
            bridge.request_stop()


def sink_component(config: BridgeConfig, name: str) -> Any:
    return next(c.component for c in config.sinks if c.name == name)


async def readyz(port: int) -> tuple[int, dict[str, Any]]:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://127.0.0.1:{port}/readyz")
    return response.status_code, response.json()


def numbers(requests: Sequence[Any]) -> list[int]:
    """The ``data.n`` of every event a receiver accepted, in arrival order."""
    return [e["data"]["n"] for r in requests if 200 <= r.status < 300 for e in r.events()]
