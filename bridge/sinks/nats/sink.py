"""NATS JetStream sink: every event published to a stream, deduplicated by event id.

Delivery rules:

* Each event is one JetStream message: the structured CloudEvent JSON as body,
  ``Nats-Msg-Id`` = the event id, ``content-type: application/cloudevents+json`` and a
  few ``ce-*`` headers for routing without parsing. The subject comes from a template
  (``events.{vendor}.{type}`` by default).
* An event counts as delivered only after JetStream's publish acknowledgement. Up to
  ``max_in_flight`` publishes are pipelined; a failed or unacknowledged one stays pending
  in the outbox and is published again (same ``Nats-Msg-Id``) after a backoff, so a
  retry whose first attempt was in fact stored is dropped by the stream's duplicate
  window. A second bridge publishing the same event (same id) is dropped the same way:
  that is what makes two bridges side by side safe (see ``config/nats-ha.example.toml``).
* Connection loss: nats-py reconnects forever in the background; while it is away the
  sink waits and ``health`` says why. Nothing is ever dropped by this sink.

Why a dedicated thread with its own asyncio loop (:mod:`bridge.sinks.nats.loop`) and
not trio-asyncio: the client and all of its callbacks stay on a plain asyncio loop, the
way nats-py is tested; trio only exchanges whole batches with it (a bounded hand-off of
at most ``max_in_flight`` messages per call), a trio cancellation cancels the asyncio
task, and shutdown closes the connection and joins the thread.

Subjects: :mod:`bridge.sinks.nats.subjects`; settings: :mod:`bridge.sinks.nats.settings`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog
import trio

from bridge.backoff import Backoff
from bridge.components import ComponentBase
from bridge.outbox import Row
from bridge.sinks.base import SinkFeed, SinkHealth
from bridge.sinks.nats.loop import AsyncioThread
from bridge.sinks.nats.settings import NatsSettings
from bridge.sinks.nats.subjects import default_stream_subjects, render_subject
from bridge.tls import client_context

log = structlog.get_logger("bridge.sinks.nats")

CONTENT_TYPE = "application/cloudevents+json"


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

    def __init__(self, settings: NatsSettings) -> None:
        self.settings = settings
        self.name = settings.name
        self.servers = list(settings.servers)
        self.subject = settings.subject
        self.stream = settings.stream
        self.create_stream: StreamSettings | None = None
        if settings.create_stream and settings.stream is not None:
            self.create_stream = StreamSettings(
                name=settings.stream,
                subjects=list(settings.stream_subjects or default_stream_subjects(settings.subject)),
                duplicate_window=settings.duplicate_window,
                max_age=settings.max_age,
                max_bytes=settings.max_bytes,
                replicas=settings.replicas,
                storage=settings.storage,
            )
        self.timeout = settings.timeout
        self.max_in_flight = settings.max_in_flight
        # Built once, here: an unreadable ca_file or certificate is a config error at start.
        self._tls = (
            client_context(
                settings.verify_tls,
                settings.ca_file,
                settings.cert_file,
                settings.key_file,
                where=f"sinks.nats {settings.name}",
            )
            if settings.uses_tls
            else None
        )
        self.health = SinkHealth()
        self.health.extra.update(duplicates=0, connected=False, reconnects=0)
        self._nc: Any = None
        self._js: Any = None
        self._status = ""  # last connection event from the asyncio side

    def describe(self) -> str:
        where = ",".join(self.servers)
        return f"{where} stream={self.stream or '(any)'} subject={self.subject}"

    # -- asyncio side (runs on the sink's own loop) -----------------------------------------
    async def _connect(self) -> None:
        from nats.aio.client import Client as NATS

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
            connect_timeout=self.settings.connect_timeout,
            reconnect_time_wait=self.settings.reconnect_wait,
            max_reconnect_attempts=-1,
            allow_reconnect=True,
            error_cb=on_error,
            disconnected_cb=on_disconnect,
            reconnected_cb=on_reconnect,
            closed_cb=on_closed,
            tls=self._tls,
        )
        s = self.settings
        if s.user is not None:
            options.update(user=s.user, password=s.password or "")
        if s.token is not None:
            options["token"] = s.token
        if s.nkey_seed_file:
            options["nkeys_seed"] = str(s.nkey_seed_file)
        if s.creds_file:
            options["user_credentials"] = str(s.creds_file)
        nc = NATS()
        self._status = ""
        try:
            # With endless reconnects nats-py retries a refused first connect forever
            # (bad credentials included); bound it so health can say why.
            await asyncio.wait_for(nc.connect(**options), self.settings.connect_timeout + 1)
        except TimeoutError:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(nc.close(), 2)
            raise ConnectionError(
                self._status or f"no connection within {self.settings.connect_timeout + 1}s"
            ) from None
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(nc.close(), 2)
            raise
        self._nc, self._js = nc, nc.jetstream(timeout=self.timeout)
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
                    subject, row.body, timeout=self.timeout, stream=self.stream, headers=headers
                )
                return _Published(True, bool(getattr(ack, "duplicate", False)))
            except NoRespondersError:
                where = f"stream {self.stream!r}" if self.stream else "any stream"
                return _Published(
                    False,
                    error=f"no JetStream stream answered for {subject!r}: check that {where} exists "
                    f"and its subjects cover it",
                )
            except TimeoutError:
                return _Published(False, error=f"no publish acknowledgement within {self.timeout}s")
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
            backoff = Backoff(base=self.settings.reconnect_min, cap=self.settings.reconnect_max)
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
                rows = await feed.pending(self.max_in_flight)
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
