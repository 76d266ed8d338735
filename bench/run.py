"""event-bridge benchmarks: whole processes over real loopback sockets.

Run through ``bench/run`` (sets up the venv, psutil-free, installs Node-RED for the
peer). Every scenario starts its own processes: the vendor simulator (or the stamping
load generator ``bench/loadgen.py``), the bridge (``python -m bridge run``), the
receiver (``bench/receiver.py``: a minimal h11 server answering 204) and the baseline.
Every figure is reported as a ratio against a baseline measured in the same run, with
the absolute value beside it. Results: a table on stdout, JSON in
``bench/results/latest.json``.

    bench/run                     # everything (about 5 minutes on 2 cores)
    bench/run --only ingest,peer  # some scenarios
    bench/run --quick             # smaller counts, for a smoke test
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PY = str(ROOT / ".venv" / "bin" / "python")
SECRET = "whsec_ZGVtby1zZWNyZXQtZm9yLXRoZS1ldmVudC1icmlkZ2U="
SCENARIOS = ("ingest", "delivery", "latency", "encore", "memory", "peer", "fanout", "backlog", "subjects")
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}


# -- processes ------------------------------------------------------------------------


class Proc:
    """A child process whose stdout lines we can wait for; stderr goes to a log file."""

    def __init__(self, name: str, argv: list[str], workdir: Path, *, quiet: bool = False) -> None:
        """``quiet``: stdout goes to the log too (for children that print no PORT line)."""
        self.name = name
        self.log_path = workdir / f"{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            argv,
            stdout=self._log if quiet else subprocess.PIPE,
            stderr=self._log,
            env=ENV,
            cwd=workdir,  # not the repository: the bridge comes from PYTHONPATH (see --tree)
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def wait_line(self, prefix: str, timeout: float = 30.0) -> str:
        """The first stdout line starting with ``prefix`` (blocking read)."""
        assert self.popen.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.popen.stdout.readline().decode()
            if not line:
                raise RuntimeError(f"{self.name} exited early; see {self.log_path}")
            if line.startswith(prefix):
                return line[len(prefix) :].strip()
        raise TimeoutError(f"{self.name}: no {prefix!r} line within {timeout}s")

    def port(self) -> int:
        return int(self.wait_line("PORT "))

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._log.close()
        return self.popen.returncode


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def status_kb(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def processes() -> Iterator[list[Proc]]:
    procs: list[Proc] = []
    try:
        yield procs
    finally:
        for proc in reversed(procs):
            proc.stop()


# -- the bridge -------------------------------------------------------------------------


def bridge_config(
    workdir: Path,
    *,
    sources: str,
    sinks: str,
    synchronous: str = "full",
) -> Path:
    path = workdir / "bridge.toml"
    path.write_text(
        f'[bridge]\nstate_dir = "{workdir / "state"}"\ntimezone = "UTC"\nlog_level = "warning"\n\n'
        f'[outbox]\nsynchronous = "{synchronous}"\n\n[admin]\nenabled = false\n\n{sources}\n{sinks}\n'
    )
    return path


def uptivity_source(port: int, name: str = "uptivity-bench") -> str:
    # The bench's Event Proxies (loadgen.py) stream events and answer no status requests:
    # reconciliation (DEVICELIST after each connect) and TEST probes are off, or the
    # source waits `timeout` for an answer before the stream is read (seen as a 13 s p50).
    return (
        f'[[sources.uptivity]]\nname = "{name}"\nhost = "127.0.0.1"\nport = {port}\n'
        'reconnect_min = 0.05\nreconnect_max = 0.5\nreconcile = "off"\nprobe_interval = 0\n'
    )


def webhook_sink(
    url: str, *, mode: str = "structured", types: str = '["*"]', concurrency: int = 4, name: str = "hook"
) -> str:
    return (
        f'[[sinks.webhook]]\nname = "{name}"\nurl = "{url}"\nmode = "{mode}"\nsecrets = ["{SECRET}"]\n'
        f"types = {types}\nmax_in_flight = {concurrency}\n"
    )


# A sink that wants nothing: ingest is measured up to the commit, the sink only skips.
NULL_SINK = webhook_sink("http://127.0.0.1:9/unused", types='["bench.nothing"]')


def start_bridge(procs: list[Proc], workdir: Path, config: Path, profile: str | None = None) -> Proc:
    argv = [PY, "-m", "bridge", "run", "--config", str(config)]
    if profile:
        argv = [
            str(ROOT / ".venv" / "bin" / "py-spy"),
            "record",
            "-o",
            profile,
            "-f",
            "speedscope",
            "--",
            *argv,
        ]
    proc = Proc("bridge", argv, workdir, quiet=True)
    procs.append(proc)
    return proc


def outbox_seq(workdir: Path) -> int:
    path = workdir / "state" / "outbox.sqlite3"
    if not path.exists():
        return 0
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as db:
            row = db.execute("SELECT max(seq) FROM events").fetchone()
    except sqlite3.Error:
        return 0
    return int(row[0] or 0)


# -- the receiver ------------------------------------------------------------------------


class Receiver:
    def __init__(self, procs: list[Proc], workdir: Path) -> None:
        self.proc = Proc("receiver", [PY, str(BENCH / "receiver.py")], workdir)
        procs.append(self.proc)
        self.base = f"http://127.0.0.1:{self.proc.port()}"
        self.url = f"{self.base}/events"
        self.client = httpx.Client(trust_env=False, timeout=30)

    def reset(self) -> None:
        self.client.post(f"{self.base}/reset")

    def stats(self) -> dict[str, Any]:
        return dict(self.client.get(f"{self.base}/stats").json())

    def wait_events(self, n: int, timeout: float, quiet: float = 10.0) -> dict[str, Any]:
        """Until ``n`` events arrived, nothing arrived for ``quiet`` seconds, or ``timeout``."""
        deadline = time.monotonic() + timeout
        seen, progress = -1, time.monotonic()
        while True:
            stats = self.stats()
            now = time.monotonic()
            if stats["events"] != seen:
                seen, progress = stats["events"], now
            if stats["events"] >= n or now > deadline or (seen > 0 and now - progress > quiet):
                return stats
            time.sleep(0.25)


def throughput(stats: dict[str, Any]) -> float:
    """Events per second between the first and the last receipt."""
    if not stats["first"] or stats["last"] == stats["first"]:
        return 0.0
    return float((stats["events"] - stats["first_events"]) / (stats["last"] - stats["first"]))


def percentiles(stats: dict[str, Any], warmup: float = 2.0) -> dict[str, float]:
    """p50/p99/p99.9 in milliseconds of receipt - send stamp, leaving out events sent in
    the first ``warmup`` seconds after the first one (connection set-up, imports)."""
    pairs = stats["latencies"]
    if not pairs:
        return {"n": 0}
    first = min(stamp for stamp, _ in pairs)
    lat = sorted(x for stamp, x in pairs if stamp >= first + warmup)
    if not lat:
        return {"n": 0}

    def q(p: float) -> float:
        return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 2)

    return {"n": len(lat), "p50_ms": q(0.50), "p99_ms": q(0.99), "p999_ms": q(0.999), "max_ms": q(1.0)}


# -- scenarios ------------------------------------------------------------------------------


def scenario_ingest(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Uptivity simulator -> bridge -> outbox committed; vs lxml parsing the same bytes."""
    n = 10_000 if args.quick else 40_000
    base = json.loads(
        subprocess.run(
            [PY, str(BENCH / "baselines.py"), "lxml", "--count", "7000", "--devices", "100",
             "--seconds", "3"],
            check=True, capture_output=True, env=ENV, cwd="/",
        ).stdout
    )  # fmt: skip
    out: dict[str, Any] = {"baseline": {"what": "lxml fromstring + dict, same bytes, tight loop", **base}}
    for sync in ("full", "normal"):
        run_dir = workdir / f"ingest-{sync}"
        run_dir.mkdir()
        with processes() as procs:
            port = free_port()
            sim = Proc(
                "simulator",
                [PY, "-m", "bridge", "simulate", "uptivity", "--port", str(port), "--rate", "0",
                 "--count", str(n), "--numbered", "--devices", "100"],
                run_dir, quiet=True,
            )  # fmt: skip
            procs.append(sim)
            time.sleep(1.0)
            config = bridge_config(run_dir, sources=uptivity_source(port), sinks=NULL_SINK, synchronous=sync)
            profile = str(run_dir / "profile.speedscope.json") if args.profile else None
            bridge = start_bridge(procs, run_dir, config, profile)
            t0 = seq0 = None
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                seq = outbox_seq(run_dir)
                now = time.monotonic()
                if t0 is None and seq > 0:
                    t0, seq0, cpu0 = now, seq, _bridge_cpu(bridge)
                if seq >= n:
                    break
                time.sleep(0.02)
            elapsed = time.monotonic() - (t0 or 0)
            cpu = _bridge_cpu(bridge) - cpu0 if t0 else 0.0
            rate = (seq - (seq0 or 0)) / elapsed if t0 else 0.0
            rss = status_kb(_bridge_pid(bridge), "VmHWM") / 1024
        out[sync] = {
            "events": seq,
            "seconds": round(elapsed, 3),
            "events_per_s": round(rate),
            "ratio": round(rate / base["events_per_s"], 3),
            "bridge_cpu_us_per_event": round(cpu / max(1, seq - (seq0 or 0)) * 1e6, 1),
            "cpu_ratio": round(
                base["cpu_us_per_event"] / max(1e-9, cpu / max(1, seq - (seq0 or 0)) * 1e6), 3
            ),
            "peak_rss_mb": round(rss, 1),
        }
    return out


def _bridge_pid(bridge: Proc) -> int:
    """The bridge's own pid, also when it runs under py-spy."""
    try:
        children = Path(f"/proc/{bridge.pid}/task/{bridge.pid}/children").read_text().split()
    except OSError:
        children = []
    return int(children[0]) if children and "py-spy" in bridge.popen.args[0] else bridge.pid  # type: ignore[index]


def _bridge_cpu(bridge: Proc) -> float:
    return cpu_seconds(_bridge_pid(bridge))


def prefill(
    run_dir: Path, n: int, *, sinks: Sequence[str] = ("hook",), subjects: int = 100, start_at: int = 1
) -> bytes:
    """Commit ``n`` Uptivity events (over ``subjects`` devices) to the outbox for ``sinks``;
    returns one body."""
    sys.path.insert(0, str(ROOT))
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from bridge.outbox import Outbox, Pending
    from bridge.simulators.uptivity import numbered_event
    from bridge.sources.uptivity import to_event
    from bridge.sources.uptivity.stream import element_fields, parse_document

    outbox = Outbox(run_dir / "state" / "outbox.sqlite3", synchronous="normal")
    outbox.open()
    outbox.set_sinks(list(sinks))
    tz, now = ZoneInfo("UTC"), datetime.now(UTC)
    end = start_at + n - 1
    for start in range(start_at, end + 1, 1000):
        events = [
            to_event(
                element_fields(parse_document(numbered_event(i, subjects))),
                source_name="uptivity-bench",
                tz=tz,
                received=now,
            )
            for i in range(start, min(end, start + 999) + 1)
        ]
        outbox.commit([Pending("uptivity-bench", events, None, time.time(), None)])
    body = outbox.db.execute("SELECT body FROM events ORDER BY seq LIMIT 1").fetchone()[0]
    outbox.close()
    return bytes(body)


def scenario_delivery(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Outbox -> one webhook endpoint (structured, batch) vs a bare httpx POST loop."""
    out: dict[str, Any] = {}
    with processes() as procs:
        receiver = Receiver(procs, workdir)
        for mode, n in (
            ("structured", 4000 if args.quick else 12_000),
            ("batch", 20_000 if args.quick else 60_000),
        ):
            run_dir = workdir / f"delivery-{mode}"
            (run_dir / "state").mkdir(parents=True)
            body = prefill(run_dir, n)
            if mode == "structured":
                body_file = workdir / "body.json"
                body_file.write_bytes(body)
                receiver.reset()
                base = json.loads(
                    subprocess.run(
                        [PY, str(BENCH / "baselines.py"), "httpx", "--url", receiver.url, "--count",
                         str(n), "--concurrency", "4", "--body-file", str(body_file)],
                        check=True, capture_output=True, env=ENV, cwd="/",
                    ).stdout
                )  # fmt: skip
                out["baseline"] = {"what": "bare httpx.AsyncClient keep-alive POST loop, 4 in flight", **base}
            receiver.reset()
            config = bridge_config(
                run_dir, sources=uptivity_source(free_port()), sinks=webhook_sink(receiver.url, mode=mode)
            )
            began = time.time()
            bridge = start_bridge(procs, run_dir, config)
            stats = receiver.wait_events(n, timeout=120)
            cpu = cpu_seconds(bridge.pid)
            rate = throughput(stats)
            requests_per_s = rate * stats["requests"] / max(1, stats["events"])
            out[mode] = {
                "events": stats["events"],
                "requests": stats["requests"],
                "events_per_s": round(rate),
                "requests_per_s": round(requests_per_s),
                "ratio_events": round(rate / out["baseline"]["requests_per_s"], 3),
                "ratio_requests": round(requests_per_s / out["baseline"]["requests_per_s"], 3),
                "bridge_cpu_us_per_request": round(cpu / max(1, stats["requests"]) * 1e6),
                "bridge_cpu_share": round(cpu / max(0.1, (stats["last"] or began) - began), 2),
                "peak_rss_mb": round(status_kb(bridge.pid, "VmHWM") / 1024, 1),
            }
            bridge.stop()
            procs.remove(bridge)
    return out


def run_stamped(
    procs: list[Proc],
    run_dir: Path,
    receiver: Receiver,
    *,
    rate: float,
    count: int,
    consumer: str,
    devices: int = 100,
    synchronous: str = "full",
    sink_mode: str = "structured",
) -> dict[str, Any]:
    """Load generator -> consumer (bridge, relay or Node-RED) -> receiver; returns stats."""
    run_dir.mkdir(parents=True, exist_ok=True)
    gen = Proc(
        "loadgen",
        [
            PY,
            str(BENCH / "loadgen.py"),
            "--rate",
            str(rate),
            "--count",
            str(count),
            "--devices",
            str(devices),
        ],
        run_dir,
    )
    procs.append(gen)
    port = gen.port()
    receiver.reset()
    if consumer == "bridge":
        config = bridge_config(
            run_dir,
            sources=uptivity_source(port),
            sinks=webhook_sink(receiver.url, mode=sink_mode),
            synchronous=synchronous,
        )
        proc = start_bridge(procs, run_dir, config)
    elif consumer == "relay":
        proc = Proc(
            "relay",
            [PY, str(BENCH / "baselines.py"), "relay", "--port", str(port), "--url", receiver.url],
            run_dir,
        )
        procs.append(proc)
    else:
        from nodered import write_user_dir

        settings = write_user_dir(run_dir / "node-red", port, receiver.url)
        red = BENCH / "node_modules" / "node-red" / "red.js"
        proc = Proc(
            "node-red",
            ["node", str(red), "--userDir", str(settings.parent), "--settings", str(settings)],
            run_dir,
        )
        procs.append(proc)
    started = time.time()
    expected = count / rate if rate else count / 100  # the slowest consumer does ~300/s
    stats = receiver.wait_events(count, timeout=expected + 60)
    stats["rss_mb"] = round(status_kb(proc.pid, "VmHWM") / 1024, 1)
    stats["cpu_s"] = round(cpu_seconds(proc.pid), 2)
    stats["started"] = started
    proc.stop()
    gen.stop()
    procs.remove(proc)
    procs.remove(gen)
    return stats


def scenario_latency(args: argparse.Namespace, workdir: Path, results: dict[str, Any]) -> dict[str, Any]:
    """Send -> receipt latency through bridge and through a bare relay (the baseline)."""
    secs = 4 if args.quick else 10
    out: dict[str, Any] = {"baseline": "bare Python relay (split, POST raw document; no outbox, no signing)"}
    with processes() as procs:
        receiver = Receiver(procs, workdir)
        # The highest sustainable rate: 80% of what the bridge sustains end to end.
        stats = run_stamped(
            procs,
            workdir / "latency-max",
            receiver,
            rate=0,
            count=8000 if args.quick else 20000,
            consumer="bridge",
        )
        top = throughput(stats)
        out["max_e2e_events_per_s"] = round(top)
        rates = [100, 1000, _round_rate(top * 0.8)]
        for rate in rates:
            for consumer, sync in (("bridge", "full"), ("bridge", "normal"), ("relay", "full")):
                if sync == "normal" and rate != 1000:
                    continue
                label = f"{consumer}{'-normal' if sync == 'normal' else ''}@{rate}"
                stats = run_stamped(
                    procs, workdir / f"latency-{label}", receiver, rate=rate, count=int(rate * secs),
                    consumer=consumer, synchronous=sync,
                )  # fmt: skip
                out[label] = {
                    **percentiles(stats),
                    "received": stats["events"],
                    "sent": int(rate * secs),
                    "events_per_s": round(throughput(stats)),
                }
        for rate in rates:
            b, r = out.get(f"bridge@{rate}", {}), out.get(f"relay@{rate}", {})
            if b.get("p99_ms") and r.get("p99_ms"):
                b["p99_ratio_vs_relay"] = round(b["p99_ms"] / r["p99_ms"], 2)
        out["rates"] = rates
    return out


def _round_rate(rate: float) -> int:
    """Two significant digits, at least 10."""
    if rate < 10:
        return 10
    magnitude = 10 ** (len(str(int(rate))) - 2)
    return int(rate // magnitude * magnitude)


def scenario_encore(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """1,000 ports, 5 ms per request: sweep time vs ports x latency / concurrency."""
    ports, latency = 1000, 0.005
    out: dict[str, Any] = {}
    for conc in (1, 8):
        floor = ports * latency / conc
        run_dir = _mk(workdir / f"encore-{conc}")
        sweeps = 2 if args.quick else 3
        with processes() as procs:  # baseline: a bare httpx client sweeping the same simulator
            sim = Proc("encore-sim-baseline",
                       [PY, str(BENCH / "encore_sim.py"), "--ports", str(ports), "--latency", str(latency),
                        "--out", str(run_dir / "baseline-polls.json")], run_dir)  # fmt: skip
            procs.append(sim)
            url = f"http://127.0.0.1:{sim.port()}/WebAPI/ECAPI.svc"
            base = json.loads(
                subprocess.run(
                    [PY, str(BENCH / "baselines.py"), "encore", "--url", url, "--ports", str(ports),
                     "--concurrency", str(conc), "--sweeps", "2"],
                    check=True, capture_output=True, env=ENV, cwd="/",
                ).stdout
            )  # fmt: skip
        with processes() as procs:
            polls_file = run_dir / "polls.json"
            sim = Proc("encore-sim",
                       [PY, str(BENCH / "encore_sim.py"), "--ports", str(ports), "--latency", str(latency),
                        "--active", "100", "--out", str(polls_file)], run_dir)  # fmt: skip
            procs.append(sim)
            port = sim.port()
            source = encore_source(port, ports, conc)
            config = bridge_config(run_dir, sources=source, sinks=NULL_SINK)
            bridge = start_bridge(procs, run_dir, config)
            cpu0 = 0.0
            time.sleep(2.0)
            cpu0 = cpu_seconds(bridge.pid)
            time.sleep(max(base["sweep_s"], floor) * (sweeps + 0.5) * 1.2)
            cpu = cpu_seconds(bridge.pid) - cpu0
            rss = status_kb(bridge.pid, "VmHWM") / 1024
            bridge.stop()
            procs.remove(bridge)
            sim.stop()
            procs.remove(sim)
        data = json.loads(polls_file.read_text())
        sweep = sweep_time(data["polls"], ports)
        window = [t for t, _ in data["polls"]]
        polls_in_window = sum(1 for t in window if t >= window[0] + 2.0) if window else 0
        out[f"c{conc}"] = {
            "ports": ports,
            "latency_ms": latency * 1000,
            "max_in_flight": conc,
            "floor_s": floor,
            "sweep_s": round(sweep, 3),
            "ratio": round(sweep / floor, 3),
            "baseline_sweep_s": round(base["sweep_s"], 3),
            "baseline_ratio": round(base["sweep_s"] / floor, 3),
            "ratio_vs_baseline": round(sweep / base["sweep_s"], 3),
            "bridge_cpu_ms_per_poll": round(cpu / max(1, polls_in_window) * 1000, 3),
            "server_max_concurrency": data["max_concurrency"],
            "peak_rss_mb": round(rss, 1),
        }
    return out


def encore_source(port: int, ports: int, conc: int, interval: float = 0.05) -> str:
    lines = [
        "[[sources.encore]]",
        'name = "encore-bench"',
        f'url = "http://127.0.0.1:{port}/WebAPI/ECAPI.svc"',
        f"interval = {interval}",
        f"max_in_flight = {conc}",
        'api_version = "7.1"',
    ]
    for p in range(1, ports + 1):
        lines += ["[[sources.encore.ports]]", 'unit = "1"', f'port = "{p}"']
    return "\n".join(lines) + "\n"


def sweep_time(polls: list[list[Any]], ports: int) -> float:
    """Median time between two polls of the same port, after the first sweep."""
    last: dict[str, float] = {}
    gaps: list[float] = []
    for t, port in polls:
        if port in last:
            gaps.append(t - last[port])
        last[port] = t
    return statistics.median(gaps) if gaps else float("nan")


def scenario_memory(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Peak RSS (VmHWM) of the bridge: idle, 10,000 Uptivity devices, 5,000 Encore ports."""
    probe = (
        "import bridge.cli, bridge.service, bridge.admin, bridge.sources.uptivity, bridge.sources.encore, "
        "bridge.sinks.webhook, bridge.sinks.log, httpx, lxml.etree, trio\n"
        "print([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])"
    )
    floor_kb = int(
        subprocess.run([PY, "-c", probe], check=True, capture_output=True, env=ENV, cwd="/", text=True).stdout
    )
    out: dict[str, Any] = {
        "baseline": {
            "what": "python importing the bridge's modules, doing nothing",
            "rss_mb": round(floor_kb / 1024, 1),
        }
    }
    with processes() as procs:
        receiver = Receiver(procs, workdir)
        # idle: connected to an Event Proxy that sends nothing
        run_dir = workdir / "memory-idle"
        gen = Proc("loadgen", [PY, str(BENCH / "loadgen.py"), "--count", "0"], _mk(run_dir))
        procs.append(gen)
        config = bridge_config(run_dir, sources=uptivity_source(gen.port()), sinks=webhook_sink(receiver.url))
        bridge = start_bridge(procs, run_dir, config)
        time.sleep(5)
        out["idle"] = _rss(bridge.pid, floor_kb)
        bridge.stop()
        gen.stop()
        procs.remove(bridge)
        procs.remove(gen)
        # 10,000 devices: 10,000 calls (70,000 events), every device has one
        n = 14_000 if args.quick else 70_000
        stats = run_stamped(
            procs,
            workdir / "memory-devices",
            receiver,
            rate=0,
            count=n,
            consumer="bridge",
            devices=10_000,
            sink_mode="batch",
        )
        out["devices_10000"] = {
            **_rss_kb(stats["rss_mb"] * 1024, floor_kb),
            "events": stats["events"],
            "sent": n,
        }
    # 5,000 Encore ports
    run_dir = _mk(workdir / "memory-encore")
    with processes() as procs:
        sim = Proc("encore-sim",
                   [PY, str(BENCH / "encore_sim.py"), "--ports", "5000", "--latency", "0.005",
                    "--active", "500", "--out", str(run_dir / "polls.json")], run_dir)  # fmt: skip
        procs.append(sim)
        config = bridge_config(
            run_dir, sources=encore_source(sim.port(), 5000, 8, interval=2.0), sinks=NULL_SINK
        )
        bridge = start_bridge(procs, run_dir, config)
        time.sleep(8 if args.quick else 15)
        out["encore_5000"] = _rss(bridge.pid, floor_kb)
    return out


def _mk(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _rss(pid: int, floor_kb: int) -> dict[str, float]:
    return _rss_kb(status_kb(pid, "VmHWM"), floor_kb)


def _rss_kb(kb: float, floor_kb: int) -> dict[str, float]:
    return {"rss_mb": round(kb / 1024, 1), "ratio": round(kb / floor_kb, 2)}


def scenario_peer(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """The same pipeline as a Node-RED flow: throughput and p99 at 1,000 events/s."""
    red = BENCH / "node_modules" / "node-red" / "red.js"
    if not red.exists() or not shutil.which("node"):
        return {"skipped": "node-red is not installed in bench/node_modules (bench/run installs it)"}
    version = json.loads((red.parent / "package.json").read_text())["version"]
    out: dict[str, Any] = {
        "node_red": version,
        "node": subprocess.run(["node", "-v"], capture_output=True, text=True).stdout.strip(),
    }
    n = 4000 if args.quick else 12_000
    secs = 4 if args.quick else 10
    with processes() as procs:
        receiver = Receiver(procs, workdir)
        for consumer in ("node-red", "bridge"):
            stats = run_stamped(
                procs, workdir / f"peer-{consumer}-max", receiver, rate=0, count=n, consumer=consumer
            )
            lat = run_stamped(
                procs,
                workdir / f"peer-{consumer}-1000",
                receiver,
                rate=1000,
                count=1000 * secs,
                consumer=consumer,
            )
            out[consumer] = {
                "events_per_s": round(throughput(stats)),
                "received": stats["events"],
                "sent": n,
                "p99_ms_at_1000": percentiles(lat).get("p99_ms"),
                "p50_ms_at_1000": percentiles(lat).get("p50_ms"),
                "received_at_1000": lat["events"],
                "rss_mb": max(stats["rss_mb"], lat["rss_mb"]),
            }
    b, r = out["bridge"], out["node-red"]
    out["throughput_ratio"] = round(b["events_per_s"] / max(1, r["events_per_s"]), 2)
    if b["p99_ms_at_1000"] and r["p99_ms_at_1000"]:
        out["p99_ratio"] = round(b["p99_ms_at_1000"] / r["p99_ms_at_1000"], 2)
    return out


# -- report -------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = status_total_mem()
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "receiver": "bench/receiver.py: minimal h11 server on asyncio, answers 204",
    }


def status_total_mem() -> int:
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1])
    return 0


def table(results: dict[str, Any]) -> str:
    rows: list[tuple[str, str, str, str, str]] = []

    def add(name: str, value: str, base: str, ratio: str, target: str) -> None:
        rows.append((name, value, base, ratio, target))

    r = results
    if "ingest" in r:
        i = r["ingest"]
        base = f"{i['baseline']['events_per_s']:,.0f} ev/s lxml"
        for sync in ("full", "normal"):
            add(f"Ingest, synchronous={sync}", f"{i[sync]['events_per_s']:,} ev/s", base,
                f"{i[sync]['ratio']:.0%} (CPU {i[sync]['cpu_ratio']:.0%})",
                _ok(i[sync]["ratio"] >= 0.35, "≥ 35%"))  # fmt: skip
    if "delivery" in r:
        d = r["delivery"]
        base = f"{d['baseline']['requests_per_s']:,.0f} req/s httpx"
        add("Delivery, structured", f"{d['structured']['events_per_s']:,} ev/s", base,
            f"{d['structured']['ratio_requests']:.0%}",
            _ok(d["structured"]["ratio_requests"] >= 0.9, "≥ 90%"))  # fmt: skip
        add("Delivery, batched",
            f"{d['batch']['events_per_s']:,} ev/s ({d['batch']['requests_per_s']:,} req/s)", base,
            f"{d['batch']['ratio_events']:.1f}×", _ok(d["batch"]["ratio_events"] >= 10, "≥ 10×"))  # fmt: skip
    if "latency" in r:
        lat = r["latency"]
        for rate in lat["rates"]:
            for label in (f"bridge@{rate}", f"bridge-normal@{rate}"):
                b = lat.get(label)
                if not b or not b.get("n"):
                    continue
                rl = lat.get(f"relay@{rate}", {})
                sync = "normal" if "normal" in label else "full"
                target = _ok(b["p99_ms"] <= 25, "p99 ≤ 25 ms") if rate == 1000 else ""
                add(f"Latency @{rate:,}/s ({sync})",
                    f"p50 {b['p50_ms']} / p99 {b['p99_ms']} / p99.9 {b['p999_ms']} ms",
                    f"relay p99 {rl.get('p99_ms', '?')} ms",
                    f"{b['p99_ms'] / rl['p99_ms']:.1f}×" if rl.get("p99_ms") else "",
                    target)  # fmt: skip
    if "encore" in r:
        for e in r["encore"].values():
            add(f"Encore sweep, 1,000 ports, c={e['max_in_flight']}", f"{e['sweep_s']} s",
                f"floor {e['floor_s']} s", f"{e['ratio']:.2f}×",
                _ok(e["ratio"] <= 1.2, "≤ 1.2×"))  # fmt: skip
    if "memory" in r:
        m = r["memory"]
        base = f"{m['baseline']['rss_mb']} MB imports only"
        for key, label in (
            ("idle", "idle"),
            ("devices_10000", "10,000 devices"),
            ("encore_5000", "5,000 Encore ports"),
        ):
            if key in m:
                add(f"Peak RSS, {label}", f"{m[key]['rss_mb']} MB", base, f"{m[key]['ratio']:.1f}×",
                    _ok(m[key]["rss_mb"] <= 100, "≤ 100 MB"))  # fmt: skip
    if "peer" in r and "bridge" in r["peer"]:
        p = r["peer"]
        add("Peer: throughput", f"{p['bridge']['events_per_s']:,} ev/s",
            f"Node-RED {p['node-red']['events_per_s']:,} ev/s",
            f"{p['throughput_ratio']:.2f}×", _ok(p["throughput_ratio"] > 1, "> 1×"))  # fmt: skip
        if "p99_ratio" in p:
            add("Peer: p99 @1,000/s", f"{p['bridge']['p99_ms_at_1000']} ms",
                f"Node-RED {p['node-red']['p99_ms_at_1000']} ms",
                f"{p['p99_ratio']:.2f}×", _ok(p["p99_ratio"] < 1, "< 1×"))  # fmt: skip
    import scale

    scale.table_rows(r, add, _ok)
    header = ("scenario", "bridge", "baseline", "ratio", "target")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(5)]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
        for row in [header, *rows]
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def _ok(ok: bool, target: str) -> str:
    return f"{target} {'✔' if ok else '✘'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only", default=",".join(SCENARIOS), help=f"comma-separated subset of {','.join(SCENARIOS)}"
    )
    parser.add_argument(
        "--quick", action="store_true", help="smaller counts (smoke test, figures less stable)"
    )
    parser.add_argument(
        "--profile", action="store_true", help="run the ingest bridge under py-spy (speedscope files)"
    )
    parser.add_argument("--out", default=str(BENCH / "results" / "latest.json"))
    parser.add_argument("--repeat", type=int, default=1, help="run each scenario N times: medians and spread")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, outboxes)")
    parser.add_argument(
        "--tree",
        default=None,
        help="import the bridge from this source tree instead (to measure a proposed patch)",
    )
    args = parser.parse_args()
    if args.tree:
        ENV["PYTHONPATH"] = str(Path(args.tree).resolve())
    chosen = [s for s in args.only.split(",") if s]
    unknown = set(chosen) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    sys.path.insert(0, str(BENCH))
    workdir = Path(tempfile.mkdtemp(prefix="event-bridge-bench-"))
    results: dict[str, Any] = {
        "machine": machine(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    began = time.monotonic()
    try:
        import repeat
        import scale

        spread: dict[str, Any] = {}
        for name in chosen:
            t = time.monotonic()
            runs = []
            for i in range(args.repeat):
                print(f"== {name} ({i + 1}/{args.repeat}) …", file=sys.stderr, flush=True)
                scenario_dir = _mk(workdir / f"{name}-{i}")
                if name == "latency":
                    runs.append(scenario_latency(args, scenario_dir, results))
                elif name in scale.SCENARIOS:
                    runs.append(scale.SCENARIOS[name](args, scenario_dir, sys.modules[__name__]))
                else:
                    runs.append(globals()[f"scenario_{name}"](args, scenario_dir))
            results[name], spread[name] = repeat.combine(runs)
            print(
                f"   {name} done in {time.monotonic() - t:.0f}s: {json.dumps(results[name])[:400]}",
                file=sys.stderr,
                flush=True,
            )
        results["repeat"] = args.repeat
        results["spread"] = spread
    finally:
        results["seconds"] = round(time.monotonic() - began, 1)
        results["load_average_at_end"] = os.getloadavg()
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2))
        if args.keep:
            print(f"work directory kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    m = results["machine"]
    print(f"\nevent-bridge bench — {m['cores']} cores ({m['cpu']}), {m['memory_gb']} GB, "
          f"Python {m['python']}, receiver: h11 204 on loopback; {results['seconds']:.0f} s\n")  # fmt: skip
    print(table(results))
    if args.repeat > 1:
        import repeat

        print("\n" + repeat.spread_lines(results.get("spread", {}), args.repeat))
    print(f"\nJSON: {args.out}")


if __name__ == "__main__":
    main()
