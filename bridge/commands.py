"""Operator subcommands that work on the outbox file: dlq, replay, and receive.

They open the SQLite outbox next to a running bridge (WAL allows that); the bridge's
sinks pick up re-queued deliveries within a second. Re-deliveries keep the event id,
so receivers deduplicate them like any retry.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from bridge import endpoint_cli, receiver
from bridge.logs import printable
from bridge.outbox import DEAD, Outbox
from bridge.outbox import cli as outbox_cli


def _open(config: Any) -> Outbox:
    outbox = Outbox(config.state_dir / "outbox.sqlite3")
    outbox.open()
    return outbox


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds") if ts else "-"


def _selected(outbox: Outbox, args: argparse.Namespace, state: int | None) -> list[dict[str, Any]]:
    return outbox.deliveries(
        sink=args.sink, state=state, ids=args.id or (), since=args.since, until=args.until, limit=args.limit
    )


def cmd_dlq(args: argparse.Namespace, load_config: Callable[[str], Any]) -> int:
    config = load_config(args.config)
    outbox = _open(config)
    try:
        rows = _selected(outbox, args, DEAD)
        if args.action == "list":
            if args.json:
                for row in rows:
                    print(json.dumps(row))
            else:
                print(f"{len(rows)} dead letter(s)")
                for r in rows:  # ids, subjects and the receiver's answer come from peers: escaped
                    print(
                        f"{printable(r['sink']):<16} {printable(r['id'])}  {printable(r['type']):<20} "
                        f"subject={printable(r['subject'] or '-'):<12} "
                        f"received={_when(r['received_at'])} attempts={r['attempts']} "
                        f"status={printable(r['last_status'])}\n"
                        f"    {printable((r['last_error'] or '')[:300])}"
                    )
            return 0
        if not (args.sink or args.id or args.since or args.all):
            print("refusing to act on every dead letter of every sink: give --sink, --id, --since or --all")
            return 2
        by_sink: dict[str, list[int]] = {}
        for row in rows:
            by_sink.setdefault(row["sink"], []).append(row["seq"])
        done = 0
        for sink, seqs in by_sink.items():
            done += outbox.requeue(sink, seqs) if args.action == "retry" else outbox.drop(sink, seqs)
        verb = "re-queued for delivery" if args.action == "retry" else "dropped"
        print(f"{done} dead letter(s) {verb}")
        return 0
    finally:
        outbox.close()


def cmd_replay(args: argparse.Namespace, load_config: Callable[[str], Any]) -> int:
    config = load_config(args.config)
    if args.sink not in {c.name for c in config.sinks}:
        print(f"no sink named {args.sink!r} in {config.file}")
        return 2
    outbox = _open(config)
    try:
        seqs = outbox.seqs_since(args.since, args.until)
        count = outbox.requeue(args.sink, seqs)
        print(f"{count} event(s) since {_when(args.since)} queued for re-delivery to {args.sink} (same ids)")
        return 0
    finally:
        outbox.close()


def _tail_line(event: dict[str, Any]) -> str:
    """One line per event; every vendor string escaped (a DEVICEID with a newline forges none)."""
    data = event.get("data") or {}
    detail = " ".join(
        f"{k}={printable(data[k])}"
        for k in ("device_id", "ucc_name", "unit", "port", "agent_id", "global_call_id", "state")
        if isinstance(data, dict) and data.get(k) not in (None, "")
    )
    when, kind = printable(event.get("time", ""))[:23], printable(event.get("type", "?"))
    return (
        f"{when:<23} {kind:<22} {printable(event.get('source', ''))}  "
        f"subject={printable(event.get('subject', '-'))}  {detail}"
    )


def cmd_tail(args: argparse.Namespace, load_config: Callable[[str], Any]) -> int:
    """Follow events as they are committed, by polling the outbox (works beside a running bridge)."""
    config = load_config(args.config)
    outbox = _open(config)
    try:
        last = max(0, outbox.last_seq() - args.last)
        while True:
            rows = outbox.events_after(last, 1000)
            for seq, source, type_, subject, body in rows:
                last = seq
                if not (
                    fnmatch.fnmatchcase(type_, args.type)
                    and fnmatch.fnmatchcase(source, args.source)
                    and fnmatch.fnmatchcase(subject or "", args.subject)
                ):
                    continue
                text = body.decode() if isinstance(body, bytes) else body
                # JSON escapes C0 controls but not C1 or U+2028; \\uXXXX keeps the line JSON.
                print(printable(text) if args.json else _tail_line(json.loads(text)), flush=True)
            if args.once:
                return 0
            if not rows:
                time.sleep(args.interval)
    except KeyboardInterrupt:
        return 0
    finally:
        outbox.close()


def register(sub: Any, load_config: Callable[[str], Any], parse_time: Callable[[str], float]) -> None:
    def selection(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--config", "-c", default="/etc/event-bridge/bridge.toml")
        parser.add_argument("--sink", help="only this sink")
        parser.add_argument("--id", action="append", help="only this event id (repeatable)")
        parser.add_argument("--since", type=parse_time, help="received at or after (ISO 8601)")
        parser.add_argument("--until", type=parse_time, help="received before (ISO 8601)")
        parser.add_argument("--limit", type=int, default=10_000)

    dlq = sub.add_parser("dlq", help="list, retry or drop dead-lettered deliveries")
    actions = dlq.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="show dead letters")
    selection(listing)
    listing.add_argument("--json", action="store_true")
    for action in ("retry", "drop"):
        parser = actions.add_parser(action, help=f"{action} the selected dead letters")
        selection(parser)
        parser.add_argument("--all", action="store_true", help="every dead letter of every sink")
    dlq.set_defaults(func=lambda args: cmd_dlq(args, load_config))

    replay = sub.add_parser("replay", help="re-deliver events from the outbox to one sink")
    replay.add_argument("--config", "-c", default="/etc/event-bridge/bridge.toml")
    replay.add_argument("--sink", required=True)
    replay.add_argument("--since", type=parse_time, required=True)
    replay.add_argument("--until", type=parse_time)
    replay.set_defaults(func=lambda args: cmd_replay(args, load_config))

    tail = sub.add_parser("tail", help="follow events as they pass through the bridge")
    tail.add_argument("--config", "-c", default="/etc/event-bridge/bridge.toml")
    tail.add_argument("--type", default="*", help="event type glob, e.g. 'recording.*'")
    tail.add_argument("--source", default="*", help="source name glob")
    tail.add_argument("--subject", default="*", help="subject glob (device, call, unit/port)")
    tail.add_argument("--json", action="store_true", help="one CloudEvent JSON per line")
    tail.add_argument("--last", type=int, default=0, help="start with the last N stored events")
    tail.add_argument("--interval", type=float, default=0.2, help=argparse.SUPPRESS)
    tail.add_argument("--once", action="store_true", help="print what is there and exit")
    tail.set_defaults(func=lambda args: cmd_tail(args, load_config))

    receive = sub.add_parser("receive", help="a local webhook receiver that verifies and prints events")
    receiver.add_arguments(receive)
    receive.set_defaults(func=receiver.cmd_receive)
    endpoint_cli.register(sub, load_config)  # event-bridge endpoint enable|disable|status

    outbox_cli.register(sub, load_config)
