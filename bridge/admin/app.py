"""The admin listener's HTTP surface (ASGI, served by hypercorn like the simulators).

* ``/healthz`` — the event loop answers; ``/readyz`` — 200 when the outbox is writable,
  every source is connected or polling and no sink is in error, with the reason per
  component. Both read memory only (see :mod:`bridge.admin.cache`) and stay open so
  probes need no credentials; their bodies carry no secret (details are redacted by
  the components).
* ``/metrics`` (Prometheus) and ``/api/*`` (the console's JSON) — open on a loopback
  listener without a token; with ``[admin] token`` they need ``Authorization: Bearer``.
* ``/`` and ``/static/*`` — the console page: static files shipped in the package, no
  data in them, so they need no token; the page asks for it and sends it as a bearer
  token. Actions (``POST /api/actions/<name>``) exist only when a token is configured
  and also need the per-process CSRF token from ``/api/session``, a JSON body and a
  same-origin ``Origin``: a page elsewhere cannot make the browser act.
"""

from __future__ import annotations

import errno
import hmac
import ipaddress
import json
import secrets
import sqlite3
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import structlog
import trio

from bridge import exits
from bridge.admin import console
from bridge.admin.cache import AdminCache
from bridge.asgi import BodyTooLarge, Disconnected, lifespan, read_body, serve_asgi
from bridge.errors import StartupError
from bridge.metrics import Metrics
from bridge.outbox import OutboxUnavailable

if TYPE_CHECKING:
    from bridge.service import Bridge

log = structlog.get_logger("bridge.admin")

STATIC = {
    "index.html": "text/html; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
}
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def split_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


def readiness(bridge: Bridge, cache: AdminCache) -> tuple[bool, dict[str, Any]]:
    """Readiness from memory only: cached outbox state, component health."""
    problem = cache.outbox_problem()
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
        problem is None
        and bridge.ready.is_set()
        and not bridge.stopping
        and all(s["ready"] for s in sources.values())
        and all(s["ready"] for s in sinks.values())
    )
    body = {
        "ready": ready,
        "stopping": bridge.stopping,
        "outbox": {"ok": problem is None, "detail": problem or "writable"},
        "sources": sources,
        "sinks": sinks,
    }
    return ready, body


class AdminApp:
    def __init__(self, bridge: Bridge, metrics: Metrics, cache: AdminCache, token: str | None) -> None:
        self.bridge = bridge
        self.metrics = metrics
        self.cache = cache
        self.token = token
        self.csrf = secrets.token_urlsafe(32)
        host, _ = split_listen(bridge.config.admin.listen)
        self.loopback = is_loopback(host)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        method, path = scope["method"], scope["path"]
        try:
            if not self.host_allowed(headers.get("host", "")):
                # DNS rebinding: a web page elsewhere resolving its own name to 127.0.0.1
                # must not read the console of a loopback listener through the visitor's browser.
                status, ctype, body, extra = _text(421, "unexpected Host header\n")
            else:
                status, ctype, body, extra = await self.route(method, path, scope, headers, receive)
        except console.ActionError as exc:
            status, ctype, body, extra = _json(exc.status, {"error": str(exc)})
        except (sqlite3.Error, OutboxUnavailable) as exc:
            log.warning("admin_outbox_error", path=path, error=str(exc))
            status, ctype, body, extra = _json(503, {"error": f"the outbox cannot answer now: {exc}"})
        out = {**SECURITY_HEADERS, **extra}
        raw = [(b"content-type", ctype.encode()), (b"content-length", str(len(body)).encode())]
        raw += [(k.encode(), v.encode()) for k, v in out.items()]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})

    def host_allowed(self, host_header: str) -> bool:
        """On a loopback listener, only loopback names in ``Host`` (anything when public)."""
        if not self.loopback:
            return True
        host = host_header.rsplit(":", 1)[0] if not host_header.endswith("]") else host_header
        return is_loopback(host.strip("[]").lower())

    def authorized(self, headers: dict[str, str]) -> bool:
        if self.token is None:
            return True
        given = headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), self.token.encode())

    async def route(
        self, method: str, path: str, scope: dict[str, Any], headers: dict[str, str], receive: Any
    ) -> tuple[int, str, bytes, dict[str, str]]:
        if path == "/healthz":
            return 200, "text/plain", b"ok\n", {}
        if path == "/readyz":
            ready, detail = readiness(self.bridge, self.cache)
            return _json(200 if ready else 503, detail, indent=2)
        if path in ("/", "/index.html") or path.startswith("/static/"):
            return _static("index.html" if path in ("/", "/index.html") else path[len("/static/") :])
        if path != "/metrics" and not path.startswith("/api/"):
            return 404, "text/plain", b"not found: try /, /healthz, /readyz, /metrics\n", {}
        if not self.authorized(headers):
            return (
                401,
                "text/plain",
                b"bearer token required ([admin] token)\n",
                {"www-authenticate": "Bearer"},
            )
        if path == "/metrics":
            return 200, "text/plain; version=0.0.4; charset=utf-8", self.metrics.render(self.cache.stats), {}
        if method == "POST" and path.startswith("/api/actions/"):
            return await self.action(path[len("/api/actions/") :], headers, receive)
        if method != "GET":
            return 405, "text/plain", b"method not allowed\n", {"allow": "GET"}
        query = {k: v[-1] for k, v in parse_qs(scope.get("query_string", b"").decode("latin-1")).items()}
        if path == "/api/session":
            return _json(200, {"actions": self.token is not None, "csrf": self.csrf if self.token else None})
        if path == "/api/summary":
            return _json(200, console.summary(self.bridge, self.cache))
        if path == "/api/events":
            rows = await self.cache.outbox.run(console.recent_events, query.get("type"), query.get("subject"))
            return _json(200, {"events": rows})
        if path == "/api/dlq":
            return _json(
                200,
                {"dead_letters": await self.cache.outbox.run(console.dead_letters, list(self.bridge.sinks))},
            )
        if path == "/api/event":
            try:
                seq = int(query.get("seq", ""))
            except ValueError:
                return _json(400, {"error": "seq must be an integer"})
            detail = await self.cache.outbox.run(console.event_detail, seq)
            return _json(404, {"error": "no such event"}) if detail is None else _json(200, detail)
        return 404, "text/plain", b"not found\n", {}

    async def action(
        self, name: str, headers: dict[str, str], receive: Any
    ) -> tuple[int, str, bytes, dict[str, str]]:
        if self.token is None:
            return _json(403, {"error": "actions are off: set [admin] token to enable them"})
        if not hmac.compare_digest(headers.get("x-csrf-token", "").encode(), self.csrf.encode()):
            return _json(403, {"error": "missing or wrong X-CSRF-Token (reload the console)"})
        origin = headers.get("origin")
        if origin is not None and origin.rstrip("/") not in (
            f"http://{headers.get('host', '')}",
            f"https://{headers.get('host', '')}",
        ):
            return _json(403, {"error": "cross-origin request refused"})
        if headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return _json(415, {"error": "send the action as application/json"})
        try:
            payload = json.loads(await read_body(receive, limit=256 * 1024))
        except (BodyTooLarge, Disconnected, ValueError):
            return _json(400, {"error": "the body must be a JSON object under 256 KiB"})
        if not isinstance(payload, dict):
            return _json(400, {"error": "the body must be a JSON object"})
        result = await console.act(self.bridge, name, payload)
        log.info("admin_action", **result)
        return _json(200, result)


def _text(status: int, text: str) -> tuple[int, str, bytes, dict[str, str]]:
    return status, "text/plain", text.encode(), {}


def _json(status: int, data: Any, indent: int | None = None) -> tuple[int, str, bytes, dict[str, str]]:
    return status, "application/json", json.dumps(data, indent=indent, default=str).encode(), {}


def _static(name: str) -> tuple[int, str, bytes, dict[str, str]]:
    if name not in STATIC:
        return 404, "text/plain", b"not found\n", {}
    data = resources.files("bridge.admin").joinpath("static", name).read_bytes()
    return 200, STATIC[name], data, {}


def _os_error(exc: BaseException) -> OSError | None:
    if isinstance(exc, OSError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _os_error(inner)
            if found is not None:
                return found
    return None


def bind_error(listen: str, exc: OSError, config_file: str) -> StartupError:
    """One line for a listener that cannot bind: what, where, what to do."""
    reason = {
        errno.EADDRINUSE: "the port is already in use (is another event-bridge running?)",
        errno.EACCES: "permission denied (ports below 1024 need privileges)",
        errno.EADDRNOTAVAIL: "this host has no such address",
    }.get(exc.errno or 0, exc.strerror or str(exc))
    return StartupError(
        f"admin listener {listen}: {reason}; set a free address in [admin] listen of {config_file} "
        "(or enabled = false)",
        exit_status=exits.LISTEN,
    )


async def run_admin(
    bridge: Bridge, app: AdminApp, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
) -> None:
    """Bind the listener (a failure is a StartupError), then serve and refresh the cache."""
    listen = bridge.config.admin.listen
    host, port = split_listen(listen)
    await app.cache.refresh()  # /readyz and /metrics have numbers from the first request on
    bound = False

    class Status:
        def started(self, value: int) -> None:
            nonlocal bound
            bound = True
            task_status.started(value)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(app.cache.run)
        try:
            await serve_asgi(app, host, port, task_status=Status())  # type: ignore[arg-type]
        except BaseException as exc:
            error = None if bound else _os_error(exc)
            if error is None:
                raise
            raise bind_error(listen, error, str(bridge.config.file)) from None
