"""Encore sweep cost: many ports, injected server latency, one request in flight, and what
the GetURL lookups add.

Not a test (no thresholds): it measures, in one run, the sweep time of the real source
against the simulator in three scenarios and prints each as a ratio of the floor
``N x latency`` (one request in flight: a sweep cannot be faster than that):

* ``steady``: recordings going on, nothing changing (GetURL only for the first look);
* ``churn``: every sweep a share of the ports starts a new call back to back (each such
  change costs one GetURL: the one that tells a new recording from an interruption);
* ``churn, recording_urls = false``: the same churn without GetURL (the baseline that
  shows what the lookups cost).

    .venv/bin/python bench/encore_sweep.py --ports 288 --latency 0.002 --churn 0.1
    .venv/bin/python bench/encore_sweep.py --ports 288 --interval 1 --latency 0.002 --seconds 10
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from tempfile import TemporaryDirectory

import trio

from bridge.components import SourceContext
from bridge.model import Event
from bridge.quarantine import Quarantine
from bridge.simulators.encore import EncoreSimulator
from bridge.sources.encore import EncoreSettings, EncoreSource, PortSettings


class Quiet:
    """A logger that says nothing (the bench prints its own table)."""

    def __getattr__(self, level: str) -> object:
        return lambda *args, **kwargs: None


class CountingEmitter:
    def __init__(self) -> None:
        self.events = 0

    async def emit(
        self, events: Sequence[Event], *, state: Mapping[str, str | None] | None = None, durable: bool = False
    ) -> None:
        self.events += len(events)


async def scenario(args: argparse.Namespace, *, churn: float, urls: bool) -> dict[str, float]:
    sim = EncoreSimulator(latency=args.latency, ports_per_unit=max(288, args.ports))
    for n in range(1, args.ports + 1, 3):  # a third of the ports record, long since
        sim.start(1, n)
        sim.backdate(1, n, 600)
    emitter = CountingEmitter()
    sweeps: list[float] = []
    with TemporaryDirectory() as tmp:
        async with trio.open_nursery() as nursery:
            port = await nursery.start(sim.serve)
            settings = EncoreSettings(
                name="bench",
                url=f"http://127.0.0.1:{port}/WebAPI/ECAPI.svc",
                interval=args.interval,
                max_in_flight=args.max_in_flight,
                recording_urls=urls,
                ports=tuple(PortSettings(unit="1", port=str(n)) for n in range(1, args.ports + 1)),
            )
            source = EncoreSource(settings)
            ctx = SourceContext(emitter, Quarantine(Path(tmp)), {}, Quiet())
            await nursery.start(source.run, ctx)
            while source.poller.sweeps < 1:  # the first sweep asks every recording's URL
                await trio.sleep(0.01)
            geturl_before, sweeps_before = sim.calls["GetURL"], source.poller.sweeps
            recording = list(range(1, args.ports + 1, 3))
            step = max(1, int(len(recording) * churn)) if churn else 0
            offset = 0
            deadline = trio.current_time() + args.seconds
            seen = source.poller.sweeps
            while trio.current_time() < deadline:
                await trio.sleep(0.005)
                if source.poller.sweeps == seen:
                    continue
                seen = source.poller.sweeps
                if source.last_sweep_seconds is not None:
                    sweeps.append(source.last_sweep_seconds)
                for n in recording[offset : offset + step]:
                    sim.back_to_back(1, n)  # a new call: only GetURL can tell
                offset = (offset + step) % max(1, len(recording))
            done = source.poller.sweeps - sweeps_before
            geturls = sim.calls["GetURL"] - geturl_before
            nursery.cancel_scope.cancel()
    floor = args.ports * args.latency / args.max_in_flight
    median = statistics.median(sweeps) if sweeps else float("nan")
    return {
        "sweeps": float(done),
        "median_sweep_s": median,
        "floor_s": floor,
        "ratio": median / floor if floor else float("nan"),
        "geturl_per_sweep": geturls / done if done else 0.0,
        "events": float(emitter.events),
        "max_concurrency": float(sim.max_concurrency),
    }


async def bench(args: argparse.Namespace) -> None:
    results = {
        "steady": await scenario(args, churn=0.0, urls=True),
        f"churn {args.churn:.0%}": await scenario(args, churn=args.churn, urls=True),
        f"churn {args.churn:.0%}, recording_urls = false": await scenario(args, churn=args.churn, urls=False),
    }
    print(
        f"ports={args.ports} latency={args.latency * 1000:g} ms max_in_flight={args.max_in_flight} "
        f"interval={args.interval}s, {args.seconds}s per scenario; floor = ports x latency = "
        f"{args.ports * args.latency / args.max_in_flight:.3f}s"
    )
    print(
        f"{'scenario':<40} {'sweeps':>6} {'median sweep':>13} {'x floor':>8} "
        f"{'GetURL/sweep':>13} {'in flight':>9}"
    )
    for name, r in results.items():
        print(
            f"{name:<40} {r['sweeps']:>6.0f} {r['median_sweep_s']:>12.3f}s {r['ratio']:>7.2f}x "
            f"{r['geturl_per_sweep']:>13.1f} {r['max_concurrency']:>9.0f}"
        )
    base = results[f"churn {args.churn:.0%}, recording_urls = false"]["median_sweep_s"]
    with_urls = results[f"churn {args.churn:.0%}"]["median_sweep_s"]
    extra = results[f"churn {args.churn:.0%}"]["geturl_per_sweep"] / args.ports
    print(
        f"GetURL cost under churn: {with_urls / base:.2f}x the sweep without lookups (same run); "
        f"requests per sweep +{extra:.1%} ({args.ports} status polls, one GetURL per changed recording)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--ports", type=int, default=288)
    parser.add_argument("--interval", type=float, default=0.05, help="below ports x latency: server-bound")
    parser.add_argument("--latency", type=float, default=0.002)
    parser.add_argument("--max-in-flight", type=int, default=1)
    parser.add_argument(
        "--churn", type=float, default=0.1, help="share of recording ports changing per sweep"
    )
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    started = time.monotonic()
    trio.run(bench, args)
    print(f"(wall {time.monotonic() - started:.1f}s)")


if __name__ == "__main__":
    main()
