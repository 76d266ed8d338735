"""``event-bridge status``: the console's summary in a terminal.

Asks the running bridge's admin listener (``/api/summary``, with the configured bearer
token); when nothing answers there it falls back to the outbox file (read-only), which
knows the backlog and dead letters but not the connection states. Every string that
came from a vendor or a receiver is printed with control characters escaped, so a
hostile DEVICEID cannot forge lines or move the cursor.
"""

from __future__ import annotations

import argparse
import json
import re
import sqlite3
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from bridge.admin.app import split_listen
from bridge.admin.cache import read_only_uri
from bridge.outbox import Outbox

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
CLEAR = "\x1b[H\x1b[2J"


def printable(value: Any) -> str:
    """``value`` as text with every control (and bidi override) character escaped."""
    text = "" if value is None else str(value)
    return _CONTROL.sub(
        lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}", text
    )


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f}ms"


def render(summary: dict[str, Any], where: str) -> str:
    now = float(summary.get("now") or time.time())
    outbox = summary.get("outbox", {})
    stamp = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    state = (
        "writable" if outbox.get("writable", True) else f"NOT WRITABLE: {printable(outbox.get('problem'))}"
    )
    lines = [
        f"event-bridge status  {printable(where)}  {stamp}",
        f"outbox: {state}, {outbox.get('events', 0)} events",
    ]
    sources = summary.get("sources")
    if sources is None:
        lines.append("sources: unknown (the bridge's admin listener did not answer)")
    else:
        lines.append("")
        lines.append(
            f"{'SOURCE':<20} {'VENDOR':<12} {'STATE':<13} {'FOR':>6} {'RECONN':>6} {'LAST EVENT':>10}  REASON"
        )
        for s in sources:
            last = s.get("last_event_at")
            lines.append(
                f"{printable(s['name']):<20} {printable(s.get('vendor')):<12} {printable(s['state']):<13} "
                f"{_age(s.get('state_for')):>6} {s.get('reconnects', 0):>6} "
                f"{(_age(now - last) + ' ago') if last else '-':>10}  {printable(s.get('reason'))}"
            )
    lines.append("")
    lines.append(
        f"{'SINK':<20} {'STATE':<10} {'BACKLOG':>8} {'AGE':>6} {'DEAD':>6} {'RATE/S':>7} "
        f"{'P50':>7} {'P99':>7}  REASON"
    )
    for k in summary.get("sinks", []):
        latency = k.get("latency") or {}
        rate = k.get("rate_per_s")
        lines.append(
            f"{printable(k['name']):<20} {printable(k.get('state', '?')):<10} {k.get('backlog', 0):>8} "
            f"{_age(k.get('backlog_age')):>6} {k.get('dead_letters', 0):>6} "
            f"{'-' if rate is None else f'{rate:.2f}':>7} {_ms(latency.get('p50')):>7} "
            f"{_ms(latency.get('p99')):>7}  {printable(k.get('reason'))}"
        )
    return "\n".join(lines)


def from_listener(config: Any, url: str | None, timeout: float = 3.0) -> dict[str, Any] | None:
    if url is None:
        if not config.admin.enabled:
            return None
        host, port = split_listen(config.admin.listen)
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        url = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    headers = {"authorization": f"Bearer {config.admin.token}"} if config.admin.token else {}
    try:
        response = httpx.get(url.rstrip("/") + "/api/summary", headers=headers, timeout=timeout)
    except httpx.TransportError:
        return None
    if response.status_code != 200:
        raise SystemExit(
            f"event-bridge: {url}/api/summary answered {response.status_code}: "
            f"{printable(response.text[:200])}"
        )
    data: dict[str, Any] = response.json()
    return data


def from_outbox(config: Any) -> dict[str, Any]:
    path = config.state_dir / "outbox.sqlite3"
    view = Outbox(path)
    try:
        view.conn = sqlite3.connect(read_only_uri(path), uri=True, timeout=5)
        stats = view.stats()
    except sqlite3.Error as exc:
        raise SystemExit(f"event-bridge: cannot read the outbox {path}: {exc}") from None
    finally:
        view.close()
    now = time.time()
    names = [c.name for c in config.sinks]
    sinks = []
    for name in names:
        counts = stats["deliveries"].get(name, {})
        oldest = stats["oldest_pending"].get(name)
        sinks.append(
            {
                "name": name,
                "state": "?",
                "backlog": counts.get("pending", 0),
                "backlog_age": (now - oldest) if oldest else 0.0,
                "dead_letters": counts.get("dead", 0),
                "rate_per_s": None,
                "reason": "",
            }
        )
    return {
        "now": now,
        "outbox": {"writable": True, "events": stats["events"]},
        "sources": None,
        "sinks": sinks,
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", default="/etc/event-bridge/bridge.toml")
    parser.add_argument("--url", help="admin listener base URL (default: from [admin] listen)")
    parser.add_argument(
        "--watch",
        nargs="?",
        type=float,
        const=2.0,
        default=None,
        metavar="SECONDS",
        help="redraw every SECONDS (default 2) until Ctrl-C",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def cmd_status(args: argparse.Namespace, load_config: Callable[[str], Any]) -> int:
    config = load_config(args.config)
    try:
        while True:
            summary = from_listener(config, args.url)
            where = args.url or config.admin.listen
            if summary is None:
                summary, where = from_outbox(config), f"{config.state_dir} (bridge not answering)"
            if args.json:
                print(json.dumps(summary), flush=True)
            else:
                text = render(summary, where)
                sys.stdout.write((CLEAR if args.watch and sys.stdout.isatty() else "") + text + "\n")
                sys.stdout.flush()
            if not args.watch:
                return 0
            time.sleep(args.watch)
            if not sys.stdout.isatty():
                print()
    except KeyboardInterrupt:
        return 0
