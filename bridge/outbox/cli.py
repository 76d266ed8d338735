"""``event-bridge outbox purge-sink NAME``: drop the delivery rows of a removed sink.

A sink taken out of the config keeps its pending and dead rows (and so their events)
until they expire (``[outbox] max_pending_age``, ``dead_retention``). This command
removes them at once; events no other sink needs then go with the normal retention
rule. It refuses a sink that is still configured, unless ``--force``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from bridge.errors import OutboxUnavailable
from bridge.outbox.store import Outbox


def cmd_purge_sink(args: argparse.Namespace, load_config: Callable[[str], Any]) -> int:
    config = load_config(args.config)
    if args.name in {c.name for c in config.sinks} and not args.force:
        print(
            f"sink {args.name!r} is still configured in {config.file}: remove it from the config "
            "(and reload) first, or give --force to drop its undelivered events anyway"
        )
        return 2
    outbox = Outbox(config.state_dir / "outbox.sqlite3")
    outbox.open()
    try:
        counts = outbox.sink_rows(args.name)
        if not counts:
            print(f"no rows for a sink called {args.name!r} in {outbox.path}")
            return 0
        summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
        if not args.yes:
            print(f"would delete the rows of sink {args.name!r}: {summary}; run again with --yes")
            return 1
        total = 0
        while removed := outbox.purge_sink(args.name):
            total += removed
        print(f"deleted {total} row(s) of sink {args.name!r} ({summary})")
        return 0
    except OutboxUnavailable as exc:
        print(f"cannot purge: {exc}")
        return 3
    finally:
        outbox.close()


def register(sub: Any, load_config: Callable[[str], Any]) -> None:
    outbox = sub.add_parser("outbox", help="maintain the outbox file")
    actions = outbox.add_subparsers(dest="outbox_action", required=True)
    purge = actions.add_parser("purge-sink", help="delete every delivery row of a removed sink")
    purge.add_argument("name", help="the sink's name")
    purge.add_argument("--config", "-c", default="/etc/event-bridge/bridge.toml")
    purge.add_argument("--yes", action="store_true", help="really delete (otherwise: show counts)")
    purge.add_argument("--force", action="store_true", help="even if the sink is still configured")
    purge.set_defaults(func=lambda args: cmd_purge_sink(args, load_config))
