"""Encore sweep timing: many ports, injected server latency, one request in flight.

Not a test (no thresholds): it prints how the poller actually paces itself so the
numbers can be compared with the configured interval.

    .venv/bin/python bench/encore_sweep.py --ports 288 --interval 1 --latency 0.002 --seconds 10
    .venv/bin/python bench/encore_sweep.py --ports 288 --interval 1 --latency 0.01  # server too slow

With latency * ports > interval the sweep stretches to about latency * ports (the server
is the bottleneck and there is never more than max_in_flight request outstanding);
otherwise requests are spaced interval / ports apart and a sweep takes ``interval``.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from tempfile import TemporaryDirectory

import structlog
import trio

from bridge.model import Event
from bridge.quarantine import Quarantine
from bridge.simulators.encore import EncoreSimulator
from bridge.sources.base import SourceContext
from bridge.sources.encore import EncoreSettings, EncoreSource


class CountingEmitter:
    def __init__(self) -> None:
        self.events = 0

    async def emit(
        self, events: Sequence[Event], *, state: Mapping[str, str | None] | None = None, durable: bool = False
    ) -> None:
        self.events += len(events)


async def bench(args: argparse.Namespace) -> None:
    sim = EncoreSimulator(latency=args.latency, ports_per_unit=max(288, args.ports))
    emitter = CountingEmitter()
    with TemporaryDirectory() as tmp:
        async with trio.open_nursery() as nursery:
            port = await nursery.start(sim.serve)
            settings = EncoreSettings(
                name="bench",
                url=f"http://127.0.0.1:{port}/WebAPI/ECAPI.svc",
                interval=args.interval,
                max_in_flight=args.max_in_flight,
                ports=[("1", str(n)) for n in range(1, args.ports + 1)],
            )
            source = EncoreSource(settings)
            ctx = SourceContext(emitter, Quarantine(Path(tmp)), {}, structlog.get_logger("bench"))
            await nursery.start(source.run, ctx)
            # Some activity so the state machine does real work too.
            for n in range(1, args.ports + 1, 3):
                sim.start(1, n)
            await trio.sleep(args.seconds)
            nursery.cancel_scope.cancel()
    report(sim, args, emitter)


def report(sim: EncoreSimulator, args: argparse.Namespace, emitter: CountingEmitter) -> None:
    polls = [(op, p["Port"]) for op, p in sim.requests if op == "PortStatusEX"]
    per_port = Counter(port for _, port in polls)
    arrivals = list(sim.arrivals)[1:]  # skip the version probe
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    sweeps = min(per_port.values()) if per_port else 0
    print(f"ports={args.ports} interval={args.interval}s latency={args.latency}s "
          f"max_in_flight={args.max_in_flight} ran={args.seconds}s")  # fmt: skip
    print(f"status requests: {len(polls)} ({len(polls) / args.seconds:.0f}/s); events: {emitter.events}")
    if sweeps:
        print(
            f"full sweeps: {sweeps} -> {args.seconds / sweeps:.3f}s per sweep (configured {args.interval}s)"
        )
    if gaps:
        quantiles = statistics.quantiles(gaps, n=100)
        print(
            f"gap between request arrivals: median {statistics.median(gaps) * 1000:.2f} ms, "
            f"p1 {quantiles[0] * 1000:.2f} ms, p99 {quantiles[98] * 1000:.2f} ms "
            f"(target spacing {args.interval / args.ports * 1000:.2f} ms)"
        )
    print(f"max requests in flight at the server: {sim.max_concurrency}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ports", type=int, default=288)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--latency", type=float, default=0.002)
    parser.add_argument("--max-in-flight", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    started = time.monotonic()
    trio.run(bench, args)
    print(f"(wall {time.monotonic() - started:.1f}s)")


if __name__ == "__main__":
    main()
