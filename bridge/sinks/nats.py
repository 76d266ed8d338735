"""NATS JetStream sink: every event published to a stream, deduplicated by event id.

Delivery rules:

* Each event is one JetStream message: the structured CloudEvent JSON as body,
  ``Nats-Msg-Id`` = the event id, ``content-type: application/cloudevents+json`` and a
  few ``ce-*`` headers for routing without parsing. The subject comes from a template
  (``events.{vendor}.{type}`` by default).
* An event counts as delivered only after JetStream's publish acknowledgement. Up to
  ``max_inflight`` publishes are pipelined; a failed or unacknowledged one stays pending
  in the outbox and is published again (same ``Nats-Msg-Id``) after a backoff, so a
  retry whose first attempt was in fact stored is dropped by the stream's duplicate
  window. A second bridge publishing the same event (same id) is dropped the same way:
  that is what makes two bridges side by side safe (see ``config/nats-ha.example.toml``).
* Connection loss: nats-py reconnects forever in the background; while it is away the
  sink waits and ``health`` says why. Nothing is ever dropped by this sink.

Why a dedicated thread with its own asyncio loop (:mod:`bridge.sinks.nats_loop`) and
not trio-asyncio: the client and all of its callbacks stay on a plain asyncio loop, the
way nats-py is tested; trio only exchanges whole batches with it (a bounded hand-off of
at most ``max_inflight`` messages per call), a trio cancellation cancels the asyncio
task, and shutdown closes the connection and joins the thread.

Subject placeholders: ``{vendor}`` (data.vendor), ``{type}`` (the CloudEvent type; its
dots become subject tokens, e.g. ``events.uptivity.call.started``), ``{source}`` (the
source name), ``{subject}`` (the CloudEvent subject, ``_`` when absent) and ``{id}``.
Characters NATS does not allow in a token (space, ``*``, ``>``, and ``.`` except in
``type``) are replaced by ``_``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import ssl
import string
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
import trio

from bridge.backoff import Backoff
from bridge.components import ComponentBase
from bridge.config import Table
from bridge.outbox import Row
from bridge.sinks.base import SinkFeed, SinkHealth
from bridge.sinks.nats_loop import AsyncioThread

log = structlog.get_logger("bridge.sinks.nats")

PLACEHOLDERS = ("vendor", "type", "source", "subject", "id")
_UNSAFE = re.compile(r"[^A-Za-z0-9_\-.]")
_UNSAFE_TOKEN = re.compile(r"[^A-Za-z0-9_\-]")
CONTENT_TYPE = "application/cloudevents+json"


def _token(value: Any, *, dots: bool) -> str:
    """A value made safe as one (or, with ``dots``, several) NATS subject tokens."""
    text = (_UNSAFE if dots else _UNSAFE_TOKEN).sub("_", str(value or ""))
    return ".".join(part or "_" for part in text.split(".")) if dots else (text or "_")


def render_subject(template: str, event: dict[str, Any], source_name: str) -> str:
    data = event.get("data") if isinstance(event.get("data"), dict) else {}
    values = {
        "vendor": _token(data.get("vendor"), dots=False),
        "type": _token(event.get("type"), dots=True),
        "source": _token(source_name, dots=False),
        "subject": _token(event.get("subject"), dots=False),
        "id": _token(event.get("id"), dots=False),
    }
    return template.format(**values)


def default_stream_subjects(template: str) -> list[str]:
    """``events.{vendor}.{type}`` → ``["events.>"]``: everything the template can produce."""
    literal = template.split("{", 1)[0]
    prefix = literal.rsplit(".", 1)[0] if "." in literal else ""
    return [f"{prefix}.>" if prefix else ">"]


@dataclass
class StreamSettings:
    name: str
    subjects: list[str]
    duplicate_window: float
    max_age: float
    max_bytes: int
    replicas: int
    storage: str


@dataclass
class _Published:
    ok: bool
    duplicate: bool = False
    error: str = ""


class NatsSink(ComponentBase):
    kind = "nats"

    def __init__(
        self,
        name: str,
        *,
        servers: Sequence[str],
        subject: str = "events.{vendor}.{type}",
        stream: str | None = None,
        create_stream: StreamSettings | None = None,
        user: str | None = None,
        password: str | None = None,
        token: str | None = None,
        nkey_seed_file: str | None = None,
        creds_file: str | None = None,
        tls: bool = False,
        verify_tls: bool = True,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        connect_timeout: float = 5.0,
        reconnect_wait: float = 1.0,
        publish_timeout: float = 5.0,
        max_inflight: int = 256,
        retry_min: float = 0.2,
        retry_max: float = 10.0,
    ) -> None:
        self.name = name
        self.servers = list(servers)
        self.subject = subject
        self.stream = stream
        self.create_stream = create_stream
        self.user, self.password, self.token = user, password, token
        self.nkey_seed_file, self.creds_file = nkey_seed_file, creds_file
        self.tls, self.verify_tls, self.ca_file = tls, verify_tls, ca_file
        self.cert_file, self.key_file = cert_file, key_file
        self.connect_timeout = connect_timeout
        self.reconnect_wait = reconnect_wait
        self.publish_timeout = publish_timeout
        self.max_inflight = max_inflight
        self.retry_min, self.retry_max = retry_min, retry_max
        self.health = SinkHealth()
        self.health.extra.update(duplicates=0, connected=False, reconnects=0)
        self._nc: Any = None
        self._js: Any = None
        self._status = ""  # last connection event from the asyncio side

    def describe(self) -> str:
        where = ",".join(self.servers)
        return f"{where} stream={self.stream or '(any)'} subject={self.subject}"

    # -- asyncio side (runs on the sink's own loop) -----------------------------------------
    def _ssl_context(self) -> ssl.SSLContext | None:
        if not (self.tls or self.ca_file or any(s.startswith("tls://") for s in self.servers)):
            return None
        ctx = ssl.create_default_context(cafile=self.ca_file)
        if not self.verify_tls:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.cert_file:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx

    async def _connect(self) -> None:
        import nats

        async def on_error(exc: Exception) -> None:
            self._status = f"{type(exc).__name__}: {exc}"

        async def on_disconnect() -> None:
            self.health.extra["connected"] = False
            self._status = "disconnected, reconnecting"

        async def on_reconnect() -> None:
            self.health.extra["connected"] = True
            self.health.extra["reconnects"] += 1
            self._status = ""

        async def on_closed() -> None:
            self.health.extra["connected"] = False

        options: dict[str, Any] = dict(
            servers=self.servers,
            name=f"event-bridge/{self.name}",
            connect_timeout=self.connect_timeout,
            reconnect_time_wait=self.reconnect_wait,
            max_reconnect_attempts=-1,
            allow_reconnect=True,
            error_cb=on_error,
            disconnected_cb=on_disconnect,
            reconnected_cb=on_reconnect,
            closed_cb=on_closed,
            tls=self._ssl_context(),
        )
        if self.user is not None:
            options.update(user=self.user, password=self.password or "")
        if self.token is not None:
            options["token"] = self.token
        if self.nkey_seed_file:
            options["nkeys_seed"] = self.nkey_seed_file
        if self.creds_file:
            options["user_credentials"] = self.creds_file
        nc = nats.NATS()
        self._status = ""
        try:
            # With endless reconnects nats-py retries a refused first connect forever
            # (bad credentials included); bound it so health can say why.
            await asyncio.wait_for(nc.connect(**options), self.connect_timeout + 1)
        except TimeoutError:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(nc.close(), 2)
            raise ConnectionError(
                self._status or f"no connection within {self.connect_timeout + 1}s"
            ) from None
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(nc.close(), 2)
            raise
        self._nc, self._js = nc, nc.jetstream(timeout=self.publish_timeout)
        self.health.extra["connected"] = True

    async def _ensure_stream(self) -> str:
        """Create the stream, or bring an existing one to the configured settings."""
        from nats.js import api
        from nats.js.errors import NotFoundError

        s = self.create_stream
        assert s is not None
        wanted = api.StreamConfig(
            name=s.name,
            subjects=s.subjects,
            duplicate_window=s.duplicate_window,
            max_age=s.max_age,
            max_bytes=s.max_bytes or -1,
            num_replicas=s.replicas,
            storage=api.StorageType(s.storage),
        )
        try:
            info = await self._js.stream_info(s.name)
        except NotFoundError:
            try:
                await self._js.add_stream(wanted)
                return "created"
            except Exception:
                # Another bridge may have created it at the same moment: verify below.
                info = await self._js.stream_info(s.name)
        have = info.config
        same = (
            sorted(have.subjects or []) == sorted(s.subjects)
            and abs((have.duplicate_window or 0) - s.duplicate_window) < 0.001
            and abs((have.max_age or 0) - s.max_age) < 0.001
        )
        if same:
            return "verified"
        await self._js.update_stream(wanted)
        return "updated"

    async def _publish(self, rows: Sequence[Row]) -> list[_Published]:
        """Publish ``rows`` concurrently; one outcome per row, in order."""
        from nats.errors import NoRespondersError

        async def one(row: Row) -> _Published:
            try:
                event = json.loads(row.body)
                subject = render_subject(self.subject, event, row.source)
                headers = {
                    "Nats-Msg-Id": row.id,
                    "content-type": CONTENT_TYPE,
                    "ce-specversion": str(event.get("specversion", "1.0")),
                    "ce-id": row.id,
                    "ce-type": row.type,
                    "ce-source": str(event.get("source", "")),
                }
                if row.subject:
                    headers["ce-subject"] = row.subject
                ack = await self._js.publish(
                    subject, row.body, timeout=self.publish_timeout, stream=self.stream, headers=headers
                )
                return _Published(True, bool(getattr(ack, "duplicate", False)))
            except NoRespondersError:
                where = f"stream {self.stream!r}" if self.stream else "any stream"
                return _Published(
                    False,
                    error=f"no JetStream stream answered for {subject!r}: check that {where} exists and its subjects cover it",
                )
            except TimeoutError:
                return _Published(False, error=f"no publish acknowledgement within {self.publish_timeout}s")
            except Exception as exc:
                return _Published(False, error=f"{type(exc).__name__}: {exc}".strip())

        return list(await asyncio.gather(*(one(r) for r in rows)))

    async def _close(self) -> None:
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None:
            try:
                await asyncio.wait_for(nc.flush(timeout=2), 3)
            except Exception:
                pass
            try:
                await asyncio.wait_for(nc.close(), 5)
            except Exception:
                pass

    # -- trio side -------------------------------------------------------------------------
    async def run(
        self, feed: SinkFeed, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        loop = AsyncioThread(f"nats-sink-{self.name}")
        loop.start()
        try:
            task_status.started()
            backoff = Backoff(base=self.retry_min, cap=self.retry_max)
            await self._start(loop, backoff)
            while True:
                if self._nc is None or self._nc.is_closed:
                    await self._start(loop, backoff)
                if not self._nc.is_connected:
                    self.health.state, self.health.detail = (
                        "retrying",
                        self._status or "not connected to NATS",
                    )
                    await trio.sleep(0.1)
                    continue
                rows = await feed.pending(self.max_inflight)
                if not rows:
                    await feed.wait_for_new(timeout=1.0)
                    continue
                results = await loop.call(self._publish(rows))
                await self._record(feed, rows, results, backoff)
        finally:
            with trio.CancelScope(shield=True):
                with trio.move_on_after(10):
                    await loop.call(self._close())
                await loop.stop()
                self.health.extra["connected"] = False

    async def _start(self, loop: AsyncioThread, backoff: Backoff) -> None:
        """Connect (and create/verify the stream), retrying with backoff until it works."""
        while True:
            try:
                if self._nc is None or self._nc.is_closed:
                    await loop.call(self._connect())
                    log.info("nats_connected", sink=self.name, servers=self.servers)
                if self.create_stream is not None:
                    outcome = await loop.call(self._ensure_stream())
                    log.info(
                        "nats_stream_ready", sink=self.name, stream=self.create_stream.name, outcome=outcome
                    )
                backoff.reset()
                self.health.state, self.health.detail = "ok", ""
                return
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
                if self._nc is None:
                    error = f"cannot connect to {','.join(self.servers)}: {error}"
                else:
                    error = f"stream {self.create_stream.name if self.create_stream else ''}: {error}"
                self.health.state, self.health.detail = "retrying", error
                self.health.failed += 1
                delay = backoff.next()
                log.warning("nats_start_failed", sink=self.name, error=error, retry_in=round(delay, 2))
                await trio.sleep(delay)

    async def _record(
        self, feed: SinkFeed, rows: list[Row], results: list[_Published], backoff: Backoff
    ) -> None:
        ok = [r for r, p in zip(rows, results, strict=True) if p.ok]
        failed = [(r, p) for r, p in zip(rows, results, strict=True) if not p.ok]
        if ok:
            self.health.delivered += len(ok)
            self.health.extra["duplicates"] += sum(p.duplicate for p in results if p.ok)
            await feed.delivered(ok)
        if not failed:
            backoff.reset()
            self.health.state, self.health.detail = "ok", ""
            return
        delay = backoff.next()
        error = failed[0][1].error
        self.health.state, self.health.detail = "retrying", error
        self.health.failed += 1
        self.health.retried += len(failed)
        now = time.time()
        for row, outcome in failed:
            await feed.retry(row, next_at=now + delay, status=None, error=outcome.error)
        log.warning(
            "nats_publish_failed",
            sink=self.name,
            events=len(failed),
            published=len(ok),
            error=error,
            retry_in=round(delay, 2),
        )
        await trio.sleep(delay)


def _check_template(table: Table, template: str) -> None:
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise table.error("subject", f"is not a valid template: {exc}") from None
    unknown = [f for f in fields if f not in PLACEHOLDERS]
    if unknown:
        raise table.error(
            "subject",
            f"unknown placeholder {{{unknown[0]}}}; use {', '.join('{' + p + '}' for p in PLACEHOLDERS)}",
        )
    sample = template.format(**{p: "x" for p in PLACEHOLDERS})
    if any(not part or part in ("*", ">") or _UNSAFE.search(part) for part in sample.split(".")):
        raise table.error(
            "subject", f"{template!r} does not make a valid NATS subject (tokens of letters, digits, _ -)"
        )
    if sample.startswith("$"):
        raise table.error("subject", "must not start with $ (reserved NATS subjects)")


def _file(table: Table, key: str) -> str | None:
    path: Path | None = table.path_value(key, None)
    if path is None:
        return None
    if not path.is_file():
        raise table.error(key, f"{path} does not exist or is not a file")
    return str(path)


def from_config(table: Table) -> NatsSink:
    name = table.name()
    servers = table.str_list("servers", ["nats://127.0.0.1:4222"])
    if not servers:
        raise table.error("servers", 'must list at least one server, e.g. ["nats://127.0.0.1:4222"]')
    for i, server in enumerate(servers):
        if not re.match(r"^(nats|tls)://[^/\s]+$", server):
            raise table.error(f"servers[{i}]", f"{server!r} is not a nats://host:port or tls://host:port URL")
        if "@" in server:
            raise table.error(f"servers[{i}]", "put credentials in user/password or token, not in the URL")
    subject = table.str("subject", "events.{vendor}.{type}")
    _check_template(table, subject)
    stream = table.str("stream", None)
    if stream is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", stream):
        raise table.error("stream", f"{stream!r} is not a valid stream name (letters, digits, _ -)")
    create = None
    if table.bool("create_stream", False):
        if stream is None:
            raise table.error("create_stream", 'needs stream = "EVENTS" (the stream to create or verify)')
        create = StreamSettings(
            name=stream,
            subjects=table.str_list("stream_subjects", default_stream_subjects(subject)),
            duplicate_window=table.float("duplicate_window", 120.0, min=1.0),
            max_age=table.float("max_age", 0.0, min=0.0),
            max_bytes=table.int("max_bytes", 0, min=0),
            replicas=table.int("replicas", 1, min=1, max=5),
            storage=table.str("storage", "file", choices=("file", "memory")),
        )
    user = table.str("user", None)
    password = table.str("password", None, secret=True)
    token = table.str("token", None, secret=True)
    nkey = _file(table, "nkey_seed_file")
    creds = _file(table, "creds_file")
    methods = [
        k for k, v in (("user", user), ("token", token), ("nkey_seed_file", nkey), ("creds_file", creds)) if v
    ]
    if len(methods) > 1:
        raise table.error(methods[1], f"choose one authentication method; {methods[0]} is already set")
    if password is not None and user is None:
        raise table.error("password", "needs user")
    if nkey or creds:
        try:
            import nkeys  # noqa: F401
        except ImportError:
            raise table.error(
                methods[0], "needs the 'nkeys' package (pip install 'nats-py[nkeys]')"
            ) from None
    cert_file = _file(table, "cert_file")
    key_file = _file(table, "key_file")
    if (cert_file is None) != (key_file is None):
        raise table.error(
            "cert_file" if cert_file is None else "key_file", "cert_file and key_file go together"
        )
    return NatsSink(
        name,
        servers=servers,
        subject=subject,
        stream=stream,
        create_stream=create,
        user=user,
        password=password,
        token=token,
        nkey_seed_file=nkey,
        creds_file=creds,
        tls=table.bool("tls", False),
        verify_tls=table.bool("verify_tls", True),
        ca_file=_file(table, "ca_file"),
        cert_file=cert_file,
        key_file=key_file,
        connect_timeout=table.float("connect_timeout", 5.0, min=0.1),
        reconnect_wait=table.float("reconnect_wait", 1.0, min=0.01),
        publish_timeout=table.float("publish_timeout", 5.0, min=0.1),
        max_inflight=table.int("max_inflight", 256, min=1, max=10_000),
        retry_min=table.float("retry_min", 0.2, min=0.01),
        retry_max=table.float("retry_max", 10.0, min=0.01),
    )
