"""Profile the bridge delivering a prefilled outbox to one webhook (py-spy, raw stacks).

    .venv/bin/python bench/profile_delivery.py [--events 12000] [--mode structured] [--out prof.txt]

Prints the receiver's rate and the top of bench/profile_summary.py for the bridge.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import run  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=12_000)
    parser.add_argument("--mode", default="structured")
    parser.add_argument("--sinks", type=int, default=1)
    parser.add_argument("--measure", type=int, default=0, help="stop after this many (default: all)")
    parser.add_argument("--out", default=None)
    parser.add_argument("--duration", type=int, default=6, help="seconds of profile")
    parser.add_argument("--cprofile", action="store_true", help="cProfile the whole run instead (CPU)")
    parser.add_argument("--tree", default=None, help="import the bridge from this tree (A/B a patch)")
    parser.add_argument("--no-profile", action="store_true", help="just the rate and CPU per delivery")
    args = parser.parse_args()
    if args.tree:
        run.ENV["PYTHONPATH"] = str(Path(args.tree).resolve())
    work = Path(tempfile.mkdtemp(prefix="eb-prof-"))
    out = args.out or str(work / "prof.txt")
    (work / "state").mkdir()
    with run.processes() as procs:
        receiver = run.Receiver(procs, work)
        names = ["hook"] + [f"hook{i}" for i in range(1, args.sinks)]
        run.prefill(work, args.events, sinks=names)
        receiver.reset()
        sinks = "".join(run.webhook_sink(receiver.url, mode=args.mode, name=n) for n in names)
        config = run.bridge_config(work, sources=run.uptivity_source(run.free_port()), sinks=sinks)
        if args.cprofile:
            argv = [run.PY, "-m", "cProfile", "-o", str(work / "cprofile.out"), "-m", "bridge", "run",
                    "--config", str(config)]  # fmt: skip
            bridge = run.Proc("bridge", argv, work, quiet=True)
            procs.append(bridge)
            stats = receiver.wait_events(args.measure or args.events * args.sinks, timeout=180, quiet=5)
            print(f"{stats['events']} events, {run.throughput(stats):.0f} ev/s")
            bridge.stop()
            procs.remove(bridge)
            import pstats

            pstats.Stats(str(work / "cprofile.out")).sort_stats("tottime").print_stats(35)
            return
        bridge = run.start_bridge(procs, work, config)
        if args.no_profile:
            stats = receiver.wait_events(args.measure or args.events * args.sinks, timeout=180, quiet=5)
            cpu = run.cpu_seconds(bridge.pid)
            print(f"{stats['events']} events, {run.throughput(stats):.0f} ev/s, "
                  f"{cpu / max(1, stats['events']) * 1e6:.0f} µs CPU per event")  # fmt: skip
            bridge.stop()
            return
        while not receiver.stats()["events"]:
            time.sleep(0.05)
        spy = [str(run.ROOT / ".venv/bin/py-spy"), "record", "-r", "200", "-f", "raw", "-o", out,
               "--duration", str(args.duration), "--pid", str(bridge.pid)]  # fmt: skip
        subprocess.run(spy, check=False, capture_output=True)
        stats = receiver.wait_events(args.measure or args.events * args.sinks, timeout=180, quiet=5)
        print(f"{stats['events']} events, {run.throughput(stats):.0f} ev/s")
        bridge.stop()
        procs.remove(bridge)
        time.sleep(1)
    subprocess.run([sys.executable, str(BENCH / "profile_summary.py"), out, "--top", "40"], check=False)


if __name__ == "__main__":
    main()
