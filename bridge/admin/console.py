"""The console's data and actions, as JSON-ready dicts (the page renders them).

Everything here is read from memory (health, the admin cache) or from the outbox's
read-only connection with bounded queries; actions write through the bridge's own
outbox writer and wake the sinks. Strings from vendors and receivers are passed on
as data: the page puts them in text nodes only, and ``event-bridge status`` escapes
control characters before printing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from bridge.admin.cache import AdminCache
from bridge.components import Sink
from bridge.metrics import component_stats
from bridge.outbox import DEAD, Outbox

if TYPE_CHECKING:
    from bridge.service import Bridge

EVENT_LIMIT = 200  # most recent events one request returns
EVENT_WINDOW = 20_000  # how far back (in events) a filtered search looks
DLQ_LIMIT = 500


@runtime_checkable
class Toggleable(Protocol):
    """A sink that can be paused and resumed without a config change (optional)."""

    def set_enabled(self, enabled: bool) -> None: ...


class ActionError(Exception):
    """A rejected console action: ``status`` is the HTTP answer, the message says why."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


def _describe(component: Any) -> str:
    try:
        return str(component.describe())
    except Exception:
        return str(getattr(component, "name", ""))


def summary(bridge: Bridge, cache: AdminCache) -> dict[str, Any]:
    """Sources, sinks and outbox in one document (the console's and ``status``'s view)."""
    now = time.time()
    loop_now = _loop_now()
    sources = []
    for name, source in bridge.sources.items():
        health = source.health
        sources.append(
            {
                "name": name,
                "vendor": source.vendor,
                "target": _describe(source),
                "state": health.state,
                "reason": health.detail,
                "ready": health.ready,
                "reconnects": health.reconnects,
                "state_for": round(max(0.0, loop_now - health.since), 1) if loop_now else None,
                "last_event_at": cache.last_event.get(name),
                "stats": dict(component_stats(source)),
            }
        )
    deliveries = cache.stats.get("deliveries", {})
    oldest = cache.stats.get("oldest_pending", {})
    sinks = []
    for name, sink in bridge.sinks.items():
        sink_health = sink.health
        counts = deliveries.get(name, {})
        window = cache.windows.get(name)
        received = oldest.get(name)
        sinks.append(
            {
                "name": name,
                "target": _describe(sink),
                "state": sink_health.state,
                "reason": sink_health.detail,
                "ready": sink_health.ready,
                "breaker": "open" if sink_health.state == "open" else "closed",
                "backlog": counts.get("pending", 0),
                "backlog_age": round(now - received, 1) if received else 0.0,
                "dead_letters": counts.get("dead", 0),
                "delivered": sink_health.delivered,
                "rate_per_s": round(window.rate(now), 3) if window else 0.0,
                "latency": window.percentiles() if window else {"p50": None, "p90": None, "p99": None},
                "can_toggle": can_toggle(bridge, name, sink),
                "extra": {
                    k: v for k, v in sink_health.extra.items() if isinstance(v, int | float | str | bool)
                },
            }
        )
    problem = cache.outbox_problem()
    return {
        "now": now,
        "stopping": bridge.stopping,
        "outbox": {
            "writable": problem is None,
            "problem": problem,
            "events": cache.stats.get("events", 0),
            "counted_at": cache.stats.get("refreshed_at"),
        },
        "sources": sources,
        "sinks": sinks,
    }


def _loop_now() -> float:
    import trio

    try:
        return trio.current_time()
    except RuntimeError:
        return 0.0


def _glob(value: str | None) -> str:
    return value if value else "*"


def recent_events(view: Outbox, type_glob: str | None, subject_glob: str | None) -> list[dict[str, Any]]:
    """The newest events (bounded), filtered by type and subject globs."""
    top = view.db.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0]
    rows = view.db.execute(
        "SELECT seq, id, source, type, subject, received_at FROM events "
        "WHERE seq > ? AND type GLOB ? AND coalesce(subject, '') GLOB ? ORDER BY seq DESC LIMIT ?",
        (top - EVENT_WINDOW, _glob(type_glob), _glob(subject_glob), EVENT_LIMIT),
    ).fetchall()
    keys = ("seq", "id", "source", "type", "subject", "received_at")
    return [dict(zip(keys, r, strict=True)) for r in rows]


def dead_letters(view: Outbox, sinks: list[str]) -> list[dict[str, Any]]:
    """The oldest dead letters of each sink (per sink: the (sink, state, seq) index answers)."""
    rows = [row for sink in sinks for row in view.deliveries(sink=sink, state=DEAD, limit=DLQ_LIMIT)]
    for row in rows:
        row["last_error"] = (row.get("last_error") or "")[:500]
    return rows


def event_detail(view: Outbox, seq: int) -> dict[str, Any] | None:
    row = view.db.execute("SELECT body FROM events WHERE seq=?", (seq,)).fetchone()
    if row is None:
        return None
    body = row[0].decode("utf-8", "replace") if isinstance(row[0], bytes) else str(row[0])
    try:
        event: Any = json.loads(body)
    except ValueError:
        event = body
    deliveries = view.db.execute(
        "SELECT sink, state, attempts, last_status, last_error, updated_at FROM deliveries WHERE seq=?",
        (seq,),
    ).fetchall()
    states = {0: "pending", 1: "delivered", 2: "dead", 3: "skipped"}
    return {
        "seq": seq,
        "event": event,
        "deliveries": [
            {
                "sink": sink,
                "state": states.get(state, str(state)),
                "attempts": attempts,
                "status": status,
                "excerpt": (error or "")[:2000],
                "updated_at": updated,
            }
            for sink, state, attempts, status, error, updated in deliveries
        ],
    }


# -- actions ----------------------------------------------------------------------------


def _sink(bridge: Bridge, body: Mapping[str, Any]) -> tuple[str, Sink]:
    name = body.get("sink")
    if not isinstance(name, str) or name not in bridge.sinks:
        raise ActionError(404, f"no running sink named {name!r}")
    return name, bridge.sinks[name]


def _seqs(body: Mapping[str, Any]) -> list[int]:
    seqs = body.get("seqs")
    if not isinstance(seqs, list) or not seqs or not all(isinstance(s, int) for s in seqs):
        raise ActionError(400, "seqs must be a non-empty list of event sequence numbers")
    if len(seqs) > 10_000:
        raise ActionError(400, "at most 10000 events per action")
    return seqs


def _time(value: Any, what: str) -> float | None:
    if value in (None, ""):
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            return (moment if moment.tzinfo else moment.astimezone()).timestamp()
    raise ActionError(400, f"{what} must be an ISO 8601 time such as 2026-11-22T09:00:00Z")


async def act(bridge: Bridge, action: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """Run one console action; returns what it did (for the page and the audit log)."""
    outbox = bridge.outbox
    if action in ("retry", "drop"):
        name, _ = _sink(bridge, body)
        seqs = _seqs(body)
        fn = outbox.sync.requeue if action == "retry" else outbox.sync.drop
        if action == "retry":
            # Only dead letters: a retry from the console must not re-send delivered events.
            dead = await outbox.call(_dead_among, outbox.sync, name, seqs)
            seqs = dead
        count = await outbox.call(fn, name, seqs) if seqs else 0
    elif action == "replay":
        name, _ = _sink(bridge, body)
        since = _time(body.get("since"), "since")
        if since is None:
            raise ActionError(400, "since is required")
        until = _time(body.get("until"), "until")
        seqs = await outbox.call(outbox.sync.seqs_since, since, until)
        count = await outbox.call(outbox.sync.requeue, name, seqs) if seqs else 0
    elif action in ("enable", "disable"):
        name, sink = _sink(bridge, body)
        if isinstance(sink, Toggleable):
            sink.set_enabled(action == "enable")
        elif _kind(bridge, name) == "webhook":
            # The same state `event-bridge endpoint enable|disable` writes; the sink reads it.
            await outbox.call(_set_endpoint, outbox.sync, name, action == "enable")
        else:
            raise ActionError(409, f"sink {name!r} cannot be enabled or disabled at run time")
        count = 1
    else:
        raise ActionError(404, f"unknown action {action!r}")
    bridge.committer.new_data.notify()  # wake the sinks: re-queued rows go out now
    return {"action": action, "sink": name, "count": count}


def _dead_among(view: Outbox, sink: str, seqs: list[int]) -> list[int]:
    marks = ",".join("?" * len(seqs))
    rows = view.db.execute(
        f"SELECT seq FROM deliveries WHERE sink=? AND state=2 AND seq IN ({marks})", (sink, *seqs)
    )
    return [r[0] for r in rows]


def _kind(bridge: Bridge, sink: str) -> str | None:
    return next((c.kind for c in bridge.config.sinks if c.name == sink), None)


def can_toggle(bridge: Bridge, name: str, sink: Sink) -> bool:
    return isinstance(sink, Toggleable) or _kind(bridge, name) == "webhook"


def _set_endpoint(view: Outbox, sink: str, enabled: bool) -> None:
    from bridge.sinks.webhook import disable as endpoint

    if enabled:
        endpoint.enable(view.db, sink)
        return
    state = endpoint.load(view.db, sink) or endpoint.EndpointState()
    if state.enabled:
        endpoint.save(
            view.db,
            sink,
            endpoint.EndpointState(
                enabled=False, reason="operator", disabled_at=time.time(), failing_since=state.failing_since
            ),
        )
