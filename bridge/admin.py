"""Admin HTTP: /healthz, /readyz and /metrics, on 127.0.0.1:9108 by default.

``/healthz`` answers while the event loop runs. ``/readyz`` is 200 only when the outbox
accepts commits, every source is connected (or polling) and no sink is in error; its
JSON body says what each one is doing, so operators see the reason, not just a code.
"""

from __future__ import annotations

import json
from typing import Any

import structlog
import trio

from bridge.asgi import lifespan, serve_asgi
from bridge.metrics import Metrics
from bridge.outbox import OutboxUnavailable

log = structlog.get_logger("bridge.admin")


def _split_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


async def readiness(bridge: Any) -> tuple[bool, dict[str, Any]]:
    outbox_ok, outbox_detail = True, "writable"
    if bridge.committer.unavailable:
        outbox_ok, outbox_detail = False, bridge.committer.unavailable
    else:
        try:
            await bridge.outbox.call(bridge.outbox.sync.probe_writable)
        except OutboxUnavailable as exc:
            outbox_ok, outbox_detail = False, str(exc)
    sources = {
        name: {
            "state": s.health.state,
            "detail": s.health.detail,
            "ready": s.health.ready,
            "reconnects": s.health.reconnects,
        }
        for name, s in bridge.sources.items()
    }
    sinks = {
        name: {"state": s.health.state, "detail": s.health.detail, "ready": s.health.ready}
        for name, s in bridge.sinks.items()
    }
    ready = (
        outbox_ok
        and bridge.ready.is_set()
        and not bridge.stopping
        and all(s["ready"] for s in sources.values())
        and all(s["ready"] for s in sinks.values())
    )
    body = {
        "ready": ready,
        "stopping": bridge.stopping,
        "outbox": {"ok": outbox_ok, "detail": outbox_detail},
        "sources": sources,
        "sinks": sinks,
    }
    return ready, body


def make_app(bridge: Any, metrics: Metrics) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        path = scope["path"]
        if path == "/healthz":
            status, ctype, body = 200, "text/plain", b"ok\n"
        elif path == "/readyz":
            ready, detail = await readiness(bridge)
            status, ctype, body = (
                (200 if ready else 503),
                "application/json",
                json.dumps(detail, indent=2).encode(),
            )
        elif path == "/metrics":
            stats = await bridge.outbox.call(bridge.outbox.sync.stats)
            status, ctype, body = 200, "text/plain; version=0.0.4; charset=utf-8", metrics.render(stats)
        else:
            status, ctype, body = 404, "text/plain", b"not found: try /healthz, /readyz, /metrics\n"
        await send(
            {"type": "http.response.start", "status": status, "headers": [(b"content-type", ctype.encode())]}
        )
        await send({"type": "http.response.body", "body": body})

    return app


async def run_admin(
    bridge: Any, metrics: Metrics, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
) -> None:
    host, port = _split_listen(bridge.config.admin.listen)
    try:
        await serve_asgi(make_app(bridge, metrics), host, port, task_status=task_status)
    except OSError as exc:
        log.error(
            "admin_http_failed",
            listen=bridge.config.admin.listen,
            error=exc.strerror,
            hint="change [admin] listen or set enabled = false",
        )


def attach(bridge: Any, args: Any = None) -> Metrics:
    """Wire metrics into the pipeline and, when enabled, serve the admin endpoints."""
    metrics = Metrics(bridge)
    bridge.metrics = metrics
    if bridge.config.admin.enabled:
        bridge.extra_tasks.append(lambda b: run_admin(b, metrics))
    return metrics
