"""The Encore simulator as its own process, logging when each port's status was answered.

Runs :class:`bridge.simulators.encore.EncoreSimulator` (as ``event-bridge simulate
encore`` does) and records ``(monotonic time, port)`` for every ``PortStatusEX`` it
answers, and counts the GetURL lookups (the cost of telling recordings apart). On
SIGTERM/SIGINT it writes them as JSON to ``--out`` and exits, so the bench can compute
the sweep time (how long until the same port is asked again).

    python bench/encore_sim.py --ports 1000 --latency 0.005 --active 100 --out polls.json
"""

from __future__ import annotations

import argparse
import json
import signal
import time
from typing import Any

import trio

from bridge.simulators.encore import EncoreSimulator, Reply


class RecordingSimulator(EncoreSimulator):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.polls: list[tuple[float, str]] = []

    def handle(self, op: str, params: dict[str, str]) -> Reply:
        if op.startswith("PortStatus"):
            self.polls.append((time.monotonic(), params.get("Port", "")))
        return super().handle(op, params)


async def main(args: argparse.Namespace) -> None:
    sim = RecordingSimulator(latency=args.latency, ports_per_unit=args.ports)
    for n in range(1, args.active + 1):
        sim.start(1, n)
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            port = await nursery.start(sim.serve, "127.0.0.1", 0)
            print(f"PORT {port}", flush=True)
            async for _ in signals:
                break
            nursery.cancel_scope.cancel()
    with open(args.out, "w") as out:
        json.dump(
            {"polls": sim.polls, "max_concurrency": sim.max_concurrency, "geturl": sim.calls["GetURL"]}, out
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ports", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.005)
    parser.add_argument("--active", type=int, default=0, help="ports recording from the start")
    parser.add_argument("--out", required=True)
    trio.run(main, parser.parse_args())
