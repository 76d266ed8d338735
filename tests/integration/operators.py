"""Shared by the operators'-view tests: a bridge on all three simulators, with its admin listener."""

from __future__ import annotations

import importlib
import socket
from pathlib import Path
from typing import Any

import trio

from bridge import registry
from bridge.config import BridgeConfig

SECRET = "whsec_b3BlcmF0b3JzLXZpZXctdGVzdC1zZWNyZXQ="


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def three_vendor_config(
    tmp_path: Path, *, hooks: dict[str, int], admin_port: int, admin_extra: str = "", poll: str = ""
) -> Path:
    """Uptivity, AnywhereNow and Encore sources on free ports, one webhook sink per hook."""
    up, anw, enc = free_port(), free_port(), free_port()
    text = f"""
[bridge]
state_dir = "{tmp_path / "state"}"
timezone = "UTC"

[admin]
listen = "127.0.0.1:{admin_port}"
refresh_interval = 0.5
{admin_extra}

[[sources.uptivity]]
name = "uptivity"
host = "127.0.0.1"
port = {up}
reconnect_min = 0.05
reconnect_max = 0.2

[[sources.anywherenow]]
name = "anywherenow"
hub_url = "http://127.0.0.1:{anw}/attendantservice/recordinghub"
rest_url = "http://127.0.0.1:{anw}/attendantservice"
ucc_names = ["ucc-demo-name"]

[[sources.encore]]
name = "encore"
url = "http://127.0.0.1:{enc}/WebAPI/ECAPI.svc"
{poll}
[[sources.encore.ports]]
unit = 1
port = 7
"""
    for name, port in hooks.items():
        text += f"""
[[sinks.webhook]]
name = "{name}"
url = "http://127.0.0.1:{port}/events"
secrets = ["{SECRET}"]
retry_schedule = [0.05, 0.1]
"""
    path = tmp_path / "bridge.toml"
    path.write_text(text)
    return path


def simulator_for(configured: Any) -> Any:
    """The vendor's own simulator listening where the configured source connects."""
    module_name = registry.SOURCES[configured.kind].simulator
    assert module_name is not None
    module = importlib.import_module(module_name)
    return module.for_source(configured.component)


async def start_simulators(nursery: trio.Nursery, config: BridgeConfig) -> dict[str, trio.CancelScope]:
    """Start every source's simulator; returns a cancel scope per source (to stop it)."""
    scopes: dict[str, trio.CancelScope] = {}
    for configured in config.sources:
        scopes[configured.name] = await nursery.start(_serve, simulator_for(configured))
    return scopes


async def _serve(simulator: Any, *, task_status: trio.TaskStatus[trio.CancelScope]) -> None:
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as inner:
            await inner.start(simulator.serve)
            task_status.started(scope)
