"""Scenarios that scale the work (issue 21): fan-out, a large backlog, many subjects.

Run through ``bench/run --only fanout,backlog,subjects``; each reports ratios against a
figure measured in the same run, never an absolute target.

* ``fanout``: one prefilled outbox delivered to 1, 4 and 16 webhook endpoints: total
  deliveries per second and bridge CPU per delivery (flat is the goal).
* ``backlog``: 1,000,000 pending rows (``--quick``: 100,000). Delivery rate at the head
  of that backlog against the same run with 10,000 rows (best of two rounds each, the
  two alternating), commit latency of a 100-event batch on the large outbox against a
  small one (median of three alternating rounds), and bytes stored per event.
* ``subjects``: every event its own subject against 4 subjects (ordering bookkeeping is
  O(in flight) per pass, not O(subjects)).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any


def _deliver(h: ModuleType, run_dir: Path, receiver: Any, procs: list[Any], sinks: list[str],
             expect: int, timeout: float = 240) -> dict[str, Any]:  # fmt: skip
    receiver.reset()
    config = h.bridge_config(
        run_dir,
        sources=h.uptivity_source(h.free_port()),
        sinks="".join(h.webhook_sink(receiver.url, name=name) for name in sinks),
    )
    bridge = h.start_bridge(procs, run_dir, config)
    stats = receiver.wait_events(expect, timeout=timeout)
    cpu = h.cpu_seconds(bridge.pid)
    bridge.stop()
    procs.remove(bridge)
    rate = h.throughput(stats)
    return {
        "deliveries": stats["events"],
        "deliveries_per_s": round(rate),
        "cpu_us_per_delivery": round(cpu / max(1, stats["events"]) * 1e6),
    }


def scenario_fanout(args: argparse.Namespace, workdir: Path, h: ModuleType) -> dict[str, Any]:
    total = 6000 if args.quick else 16_000  # deliveries per step: the same work at each fan-out
    out: dict[str, Any] = {}
    with h.processes() as procs:
        receiver = h.Receiver(procs, workdir)
        for k in (1, 4, 16):
            run_dir = workdir / f"fanout-{k}"
            (run_dir / "state").mkdir(parents=True)
            names = [f"hook{i}" for i in range(k)]
            h.prefill(run_dir, total // k, sinks=names)
            out[f"endpoints_{k}"] = _deliver(h, run_dir, receiver, procs, names, (total // k) * k)
    one = out["endpoints_1"]
    for k in (4, 16):
        step = out[f"endpoints_{k}"]
        step["rate_ratio"] = round(step["deliveries_per_s"] / max(1, one["deliveries_per_s"]), 2)
        step["cpu_ratio"] = round(step["cpu_us_per_delivery"] / max(1, one["cpu_us_per_delivery"]), 2)
    return out


def _commit_ms(db: Path, h: ModuleType, batches: int = 30) -> float:
    """Median milliseconds to commit a 100-event batch (synchronous=full) into ``db``."""
    sys.path.insert(0, str(h.ROOT))
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from bridge.outbox import Outbox, Pending
    from bridge.simulators.uptivity import numbered_event
    from bridge.sources.uptivity import to_event
    from bridge.sources.uptivity.stream import element_fields, parse_document

    outbox = Outbox(db, synchronous="full")
    outbox.open()
    outbox.set_sinks(["hook"])
    start = outbox.last_seq() + 10_000_000  # new contents (new ordinals), like live traffic
    times = []
    for b in range(batches):
        events = [
            to_event(element_fields(parse_document(numbered_event(start + b * 100 + i, 100))),
                     source_name="uptivity-bench", tz=ZoneInfo("UTC"), received=datetime.now(UTC))
            for i in range(100)
        ]  # fmt: skip
        began = time.perf_counter()
        outbox.commit([Pending("uptivity-bench", events, None, time.time(), None)])
        times.append(time.perf_counter() - began)
    outbox.close()
    return round(statistics.median(times) * 1000, 2)


def _bytes_per_event(db: Path) -> dict[str, Any]:
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        events = conn.execute("SELECT count(*) FROM events").fetchone()[0]
        pages = (
            conn.execute("PRAGMA page_count").fetchone()[0]
            - conn.execute("PRAGMA freelist_count").fetchone()[0]
        )
        page = conn.execute("PRAGMA page_size").fetchone()[0]
        body = conn.execute("SELECT avg(length(body)) FROM events").fetchone()[0]
    return {
        "events": events,
        "file_mb": round(os.path.getsize(db) / 1e6, 1),
        "bytes_per_event": round(pages * page / max(1, events)),
        "body_bytes_per_event": round(body or 0),
    }


def scenario_backlog(args: argparse.Namespace, workdir: Path, h: ModuleType) -> dict[str, Any]:
    big = 100_000 if args.quick else 1_000_000
    measure = 6000 if args.quick else 12_000
    out: dict[str, Any] = {"backlog_rows": big}
    rounds = 2  # small and large alternate, so a noisy neighbour hits both alike
    with h.processes() as procs:
        receiver = h.Receiver(procs, workdir)
        small_dir = workdir / "small"
        (small_dir / "state").mkdir(parents=True)
        h.prefill(small_dir, 10_000 + rounds * measure)
        big_dir = workdir / "big"
        (big_dir / "state").mkdir(parents=True)
        began = time.monotonic()
        h.prefill(big_dir, big)
        out["prefill_s"] = round(time.monotonic() - began, 1)
        small_db, big_db = (d / "state" / "outbox.sqlite3" for d in (small_dir, big_dir))
        out["storage"] = _bytes_per_event(big_db)
        fresh_ms, backlog_ms, small, large = [], [], [], []
        for _ in range(rounds + 1):
            fresh_ms.append(_commit_ms(small_db, h))
            backlog_ms.append(_commit_ms(big_db, h))
        for _ in range(rounds):
            small.append(_deliver(h, small_dir, receiver, procs, ["hook"], measure, timeout=120))
            large.append(_deliver(h, big_dir, receiver, procs, ["hook"], measure, timeout=120))
        out["fresh_commit_ms"] = statistics.median(fresh_ms)
        out["backlog_commit_ms"] = statistics.median(backlog_ms)
        out["small"] = max(small, key=lambda r: r["deliveries_per_s"])
        out["large"] = max(large, key=lambda r: r["deliveries_per_s"])
        out["rounds"] = {"fresh_commit_ms": fresh_ms, "backlog_commit_ms": backlog_ms,
                         "small_per_s": [r["deliveries_per_s"] for r in small],
                         "large_per_s": [r["deliveries_per_s"] for r in large]}  # fmt: skip
    out["delivery_ratio"] = round(
        out["large"]["deliveries_per_s"] / max(1, out["small"]["deliveries_per_s"]), 2
    )
    out["commit_latency_ratio"] = round(out["backlog_commit_ms"] / max(0.01, out["fresh_commit_ms"]), 2)
    return out


def scenario_subjects(args: argparse.Namespace, workdir: Path, h: ModuleType) -> dict[str, Any]:
    n = 6000 if args.quick else 12_000
    out: dict[str, Any] = {}
    with h.processes() as procs:
        receiver = h.Receiver(procs, workdir)
        for label, subjects in (("subjects_4", 4), ("subjects_all", n)):
            run_dir = workdir / label
            (run_dir / "state").mkdir(parents=True)
            h.prefill(run_dir, n, subjects=subjects)
            out[label] = _deliver(h, run_dir, receiver, procs, ["hook"], n)
    out["cpu_ratio"] = round(
        out["subjects_all"]["cpu_us_per_delivery"] / max(1, out["subjects_4"]["cpu_us_per_delivery"]), 2
    )
    return out


SCENARIOS = {"fanout": scenario_fanout, "backlog": scenario_backlog, "subjects": scenario_subjects}


def table_rows(r: dict[str, Any], add: Any, ok: Any) -> None:
    if "fanout" in r:
        f = r["fanout"]
        one = f["endpoints_1"]
        for k in (1, 4, 16):
            s = f[f"endpoints_{k}"]
            ratio = "" if k == 1 else f"{s['rate_ratio']:.2f}× rate, {s['cpu_ratio']:.2f}× CPU"
            add(f"Fan-out, {k} endpoint{'s' if k > 1 else ''}",
                f"{s['deliveries_per_s']:,} deliveries/s, {s['cpu_us_per_delivery']} µs CPU each",
                f"1 endpoint: {one['deliveries_per_s']:,}/s", ratio,
                "" if k == 1 else ok(s["cpu_ratio"] <= 1.2, "CPU/delivery ≤ 1.2×"))  # fmt: skip
    if "backlog" in r:
        b = r["backlog"]
        add(f"Delivery with {b['backlog_rows']:,} pending", f"{b['large']['deliveries_per_s']:,} ev/s",
            f"10k pending: {b['small']['deliveries_per_s']:,} ev/s", f"{b['delivery_ratio']:.2f}×",
            ok(b["delivery_ratio"] >= 0.9, "≥ 0.9×"))  # fmt: skip
        add(f"Commit latency, {b['backlog_rows']:,} stored", f"{b['backlog_commit_ms']} ms / 100 events",
            f"fresh: {b['fresh_commit_ms']} ms", f"{b['commit_latency_ratio']:.2f}×",
            ok(b["commit_latency_ratio"] <= 1.1, "≤ 1.1×"))  # fmt: skip
        s = b["storage"]
        add("Bytes stored per event", f"{s['bytes_per_event']:,} B", f"body {s['body_bytes_per_event']:,} B",
            f"{s['bytes_per_event'] / max(1, s['body_bytes_per_event']):.2f}×", "")  # fmt: skip
    if "subjects" in r:
        s = r["subjects"]
        add("Many subjects (1 per event)", f"{s['subjects_all']['deliveries_per_s']:,} ev/s, "
            f"{s['subjects_all']['cpu_us_per_delivery']} µs CPU each",
            f"4 subjects: {s['subjects_4']['cpu_us_per_delivery']} µs", f"{s['cpu_ratio']:.2f}× CPU",
            ok(s["cpu_ratio"] <= 1.2, "≤ 1.2×"))  # fmt: skip
