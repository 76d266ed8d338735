"""Shared test helpers: run the real bridge in-process against real loopback servers."""

from __future__ import annotations

import io
import json
import textwrap
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from bridge import logs
from bridge.config import BridgeConfig, load
from bridge.model import Event
from bridge.service import Bridge


class MemoryEmitter:
    """The Emitter protocol without the outbox: keeps events and the committed source state."""

    def __init__(self, state: Mapping[str, str] | None = None) -> None:
        self.events: list[Event] = []
        self.state: dict[str, str] = dict(state or {})

    async def emit(
        self,
        events: Sequence[Event],
        *,
        state: Mapping[str, str | None] | None = None,
        durable: bool = False,
    ) -> None:
        self.events.extend(events)
        for key, value in (state or {}).items():
            if value is None:
                self.state.pop(key, None)
            else:
                self.state[key] = value

    def types(self, subject: str | None = None) -> list[str]:
        return [e.type for e in self.events if subject is None or e.subject == subject]


class LogCapture(io.StringIO):
    """Collects the bridge's structlog JSON lines for assertions."""

    def isatty(self) -> bool:
        return False

    def records(self) -> list[dict[str, Any]]:
        out = []
        for line in self.getvalue().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out

    def events(self, name: str) -> list[dict[str, Any]]:
        return [r for r in self.records() if r.get("event") == name]


def capture_logs(level: str = "debug") -> LogCapture:
    capture = LogCapture()
    logs.configure(level, json_output=True, stream=capture)
    return capture


def write_config(directory: Path, body: str, name: str = "bridge.toml") -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(body))
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Poll ``predicate`` until truthy; fail the test after ``timeout`` seconds."""
    with trio.fail_after(timeout):
        while True:
            value = predicate()
            if value:
                return value
            await trio.sleep(interval)


@asynccontextmanager
async def running_bridge(config: BridgeConfig | Path, *, grace: float = 2.0) -> AsyncIterator[Bridge]:
    """Run the real service in-process; stop it gracefully on exit."""
    if isinstance(config, Path):
        config = load(config)
    logs.redactor.update(config.secrets.values)
    bridge = Bridge(config, shutdown_grace=grace)
    async with trio.open_nursery() as nursery:
        await nursery.start(bridge.run)
        try:
            yield bridge
        finally:
            bridge.request_stop()
