"""``event-bridge demo``: the whole pipeline on one machine, nothing else to install.

Reads a config (by default the shipped example), starts the built-in simulator for
every source it declares (on the host/port the config names) and any demo receivers
the sinks ask for, then runs the real bridge against them until Ctrl-C or
``--duration`` seconds. A simulator module opts in with ``for_source(source)``; a sink
module with ``demo_receiver(sink)``: a new vendor or sink needs no edit here.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from typing import Any

import structlog
import trio

from bridge import admin, logs, registry
from bridge.config import load
from bridge.service import Bridge, run_with_signals

log = structlog.get_logger("bridge.demo")

EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "bridge.example.toml"


def _optional(module_name: str, attribute: str) -> Any:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError:
        return None
    return getattr(module, attribute, None)


async def run_demo(config_path: Path, duration: float | None) -> None:
    config = load(config_path)
    logs.redactor.update(config.secrets.values)
    async with trio.open_nursery() as nursery:
        for configured in config.sources:
            source, vendor_module = configured.component, configured.kind
            simulator_module = registry.SOURCES[vendor_module].simulator
            factory = _optional(simulator_module, "for_source") if simulator_module else None
            if factory is None:
                log.warning("demo_no_simulator", source=source.name, vendor=vendor_module)
                continue
            simulator = factory(source)
            port = await nursery.start(simulator.serve)
            log.info("demo_simulator_started", source=source.name, vendor=vendor_module, port=port)
        for configured in config.sinks:
            receiver = getattr(registry.sink_kind(configured.kind), "demo_receiver", None)
            if receiver is None:
                receiver = _optional(registry.SINKS[configured.kind].module, "demo_receiver")
            if receiver is not None:
                await nursery.start(receiver, configured.component)
        bridge = Bridge(config)
        admin.attach(bridge)  # the console and /metrics at [admin] listen, as with `run`
        if duration:
            nursery.start_soon(_stop_after, bridge, duration)
        await run_with_signals(bridge)
        nursery.cancel_scope.cancel()


async def _stop_after(bridge: Bridge, seconds: float) -> None:
    await trio.sleep(seconds)
    bridge.request_stop()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", "-c", default=str(EXAMPLE), help="config to run (default: the shipped example)"
    )
    parser.add_argument("--duration", type=float, default=None, help="stop after this many seconds")


def cmd_demo(args: argparse.Namespace) -> int:
    logs.configure(args.log_level or "info")
    trio.run(run_demo, Path(args.config), args.duration)
    return 0
