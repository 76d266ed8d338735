"""``event-bridge simulate uptivity``: the Event Proxy and API server, from the docs alone.

Never imports :mod:`bridge.sources`: wire formats are written from the vendor docs
(see :mod:`.examples`, :mod:`.protocol`), so the bridge is tested against an
independent counterpart.
"""

from __future__ import annotations

import argparse
from typing import Any

import structlog
import trio

from bridge.simulators.uptivity.devices import DeviceTable
from bridge.simulators.uptivity.examples import EVENTS_RESULT, EXAMPLES
from bridge.simulators.uptivity.server import (
    CALL_ORDER,
    SEPARATORS,
    UptivitySimulator,
    _replace,
    documented_event,
    event_device,
    event_number,
    numbered_event,
)

__all__ = [
    "CALL_ORDER",
    "EVENTS_RESULT",
    "EXAMPLES",
    "DeviceTable",
    "UptivitySimulator",
    "_replace",
    "add_arguments",
    "documented_event",
    "event_device",
    "event_number",
    "for_source",
    "main",
    "numbered_event",
]

log = structlog.get_logger("bridge.simulators.uptivity")


def for_source(source: Any) -> UptivitySimulator:
    """A demo simulator listening where ``source`` (an UptivitySource) connects."""
    return UptivitySimulator(host=source.host, port=source.port, rate=2.0)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=5620, help="TCP port (default 5620, 0 = any free port)")
    parser.add_argument("--rate", type=float, default=2.0, help="events per second (0 = as fast as possible)")
    parser.add_argument("--count", type=int, default=None, help="stop producing after this many events")
    parser.add_argument(
        "--numbered", action="store_true", help="number events (EVENTXREF) and vary calls/devices"
    )
    parser.add_argument("--devices", type=int, default=1, help="with --numbered: spread calls over N devices")
    parser.add_argument(
        "--split", action="store_true", help="split every document into random small TCP writes"
    )
    parser.add_argument("--drop-after", type=int, default=None, help="drop each connection after N events")
    parser.add_argument(
        "--separator", choices=sorted(SEPARATORS), default="crlf", help="bytes between documents"
    )
    parser.add_argument(
        "--result-code", type=int, default=20, help="RESULTCODE to answer EVENTS with (20 = API_OK)"
    )
    parser.add_argument(
        "--min-subscribers", type=int, default=1, help="wait for N subscribers before producing"
    )
    parser.add_argument(
        "--group", default=None, help='GROUP value written unescaped into events, e.g. "Sales & Marketing"'
    )
    parser.add_argument("--zone", default="UTC", help="zone of the STARTTIME/STOPTIME the API answers with")


async def main(args: argparse.Namespace) -> None:
    sim = UptivitySimulator(
        host=args.host,
        port=args.port,
        rate=args.rate,
        count=args.count,
        numbered=args.numbered,
        devices=args.devices,
        split=args.split,
        drop_after=args.drop_after,
        separator=args.separator,
        result_code=args.result_code,
        min_subscribers=args.min_subscribers,
        group=args.group,
        zone=args.zone,
    )
    async with trio.open_nursery() as nursery:
        port = await nursery.start(sim.serve)
        log.info("uptivity_simulator_listening", host=args.host, port=port, rate=args.rate, count=args.count)
