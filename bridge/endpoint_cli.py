"""``event-bridge endpoint enable|disable|status NAME``: the enabled state of a webhook.

Works on the outbox file beside a running bridge (SQLite WAL): the bridge picks the
change up within about a second. Enabling resumes the endpoint where it stopped: its
events were kept pending in the outbox and go out in commit order, same ids.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from bridge.logs import printable
from bridge.operational import type_wanted
from bridge.outbox import Outbox
from bridge.sinks.webhook.disable import EndpointState, enable, load, save

EXIT_USAGE = 2


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds") if ts else "-"


def _pending(outbox: Outbox, sink: str, types: Sequence[str] = ("*",)) -> int:
    """Pending events this endpoint will be sent (what its ``types`` filter lets through)."""
    rows = outbox.db.execute(
        "SELECT e.type, count(*) FROM deliveries d JOIN events e ON e.seq=d.seq "
        "WHERE d.sink=? AND d.state=0 GROUP BY e.type",
        (sink,),
    ).fetchall()
    return sum(int(n) for kind, n in rows if type_wanted(types, kind))


def cmd_endpoint(args: argparse.Namespace, load_config: Callable[[str], Any]) -> int:
    config = load_config(args.config)
    types = {c.name: tuple(c.settings.types) for c in config.sinks if c.kind == "webhook"}
    webhooks = list(types)
    names = webhooks if args.action == "status" and not args.name else [args.name]
    unknown = [n for n in names if n not in webhooks]
    if unknown or not names:
        listed = ", ".join(webhooks) or "none"
        print(f"event-bridge endpoint: no webhook sink named {printable(unknown[0] if unknown else '')!r} in "
              f"{config.file} (webhook sinks: {listed})", file=sys.stderr)  # fmt: skip
        return EXIT_USAGE
    outbox = Outbox(config.state_dir / "outbox.sqlite3")
    outbox.open()
    try:
        if args.action == "status":
            return _status(outbox, names, types, args.json)
        (name,) = names
        if args.action == "enable":
            enable(outbox.db, name)
            print(
                f"endpoint {name} enabled: {_pending(outbox, name, types[name])} pending event(s) "
                f"go out in order"
            )
        else:
            state = load(outbox.db, name) or EndpointState()
            if state.enabled:
                now = time.time()
                state = EndpointState(enabled=False, reason="operator", disabled_at=now,
                                      failing_since=state.failing_since, changed_at=now)  # fmt: skip
                save(outbox.db, name, state)
            print(f"endpoint {name} disabled: new events are kept in the outbox until "
                  f"'event-bridge endpoint enable {name}'")  # fmt: skip
        return 0
    finally:
        outbox.close()


def _status(outbox: Outbox, names: list[str], types: dict[str, tuple[str, ...]], as_json: bool) -> int:
    for name in names:
        state = load(outbox.db, name) or EndpointState()
        pending = _pending(outbox, name, types[name])
        if as_json:
            print(json.dumps({"sink": name, "pending": pending, **state.__dict__}))
            continue
        if state.enabled:
            line = f"{name:<20} enabled   pending={pending}"
            if state.failing_since:
                line += f"  failing since {_when(state.failing_since)}"
        else:
            line = (f"{name:<20} DISABLED  pending={pending}  reason={state.reason or 'operator'}  "
                    f"since={_when(state.disabled_at)}\n    {printable(state.error[:300])}")  # fmt: skip
        print(line)
    return 0


def register(sub: Any, load_config: Callable[[str], Any]) -> None:
    endpoint = sub.add_parser("endpoint", help="enable, disable or show the state of webhook endpoints")
    actions = endpoint.add_subparsers(dest="action", required=True)
    for action, text in (
        ("enable", "resume a disabled endpoint (its kept events go out in order)"),
        ("disable", "stop sending to an endpoint (events are kept)"),
        ("status", "enabled or disabled, why, since when, pending events"),
    ):
        parser = actions.add_parser(action, help=text)
        parser.add_argument("name", nargs="?" if action == "status" else None, help="webhook sink name")
        parser.add_argument("--config", "-c", default="/etc/event-bridge/bridge.toml")
        if action == "status":
            parser.add_argument("--json", action="store_true", help="one JSON object per endpoint")
    endpoint.set_defaults(func=lambda args: cmd_endpoint(args, load_config))
