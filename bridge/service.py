"""The service runner: outbox, committer, sinks and sources under one trio nursery.

Order matters for "nothing lost": sinks start before sources, and on shutdown the
sources stop first, the committer then writes everything already read, and the sinks
get a bounded grace period to deliver what is pending before they are cancelled
(undelivered rows simply stay pending for the next start). Each component runs under
a supervisor, so one that crashes is logged and restarted while the rest keep going.
"""

from __future__ import annotations

import signal
import sqlite3
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import structlog
import trio

from bridge import exits, logs
from bridge.backoff import Backoff
from bridge.committer import Committer, SourceEmitter
from bridge.components import Configured, Sink, Source, SourceContext
from bridge.config import BridgeConfig, ConfigError, load
from bridge.errors import StartupError
from bridge.operational import Operational, wanted_by
from bridge.outbox import AsyncOutbox, Outbox, OutboxUnavailable
from bridge.quarantine import Quarantine
from bridge.shaping import body_shaper
from bridge.sinks.base import SinkFeed

log = structlog.get_logger("bridge.service")


class Bridge:
    def __init__(self, config: BridgeConfig, *, shutdown_grace: float = 10.0) -> None:
        self.config = config
        self.shutdown_grace = shutdown_grace
        self.outbox = AsyncOutbox(
            Outbox(
                config.state_dir / "outbox.sqlite3",
                synchronous=config.outbox.synchronous,
                limits=config.outbox,
            )
        )
        self.committer = Committer(self.outbox, batch_max=config.outbox.commit_batch)
        # bridge.* events (sink failing/disabled, source disconnected…): bridge.operational
        self.operational = Operational(
            SourceEmitter(self.committer, "bridge").emit, enabled=wanted_by(config.sinks)
        )
        self.quarantine = Quarantine(config.state_dir / "quarantine", config.quarantine)
        self.sources: dict[str, Source] = {}
        self.sinks: dict[str, Sink] = {}
        self._scopes: dict[str, trio.CancelScope] = {}
        self._stop = trio.Event()
        self.ready = trio.Event()
        self.stopped_cleanly = False
        self.delivery_observers: list[Callable[..., None]] = []
        self.extra_tasks: list[Callable[..., Any]] = []  # watchdog, test hooks… started beside
        # Started (and bound) before any sink or source, and before READY=1: the admin
        # listener. Each is ``async fn(bridge, *, task_status)``; a StartupError stops the start.
        self.listeners: list[Callable[..., Any]] = []
        self.metrics: Any = None  # set by bridge.admin.attach
        self.admin: Any = None
        self.stop_hooks: list[Callable[[], None]] = []
        self.reload_hooks: list[Callable[[], None]] = []
        self.reloaded_hooks: list[Callable[[], None]] = []
        self.stopping = False
        self._sources_nursery: trio.Nursery | None = None
        self._sinks_nursery: trio.Nursery | None = None

    def request_stop(self) -> None:
        if not self.stopping:
            self.stopping = True
            for hook in self.stop_hooks:
                hook()
        self._stop.set()

    async def _open_outbox(self) -> None:
        """Open the outbox, or stop the start with one line saying what to fix."""
        state_dir = self.config.state_dir
        try:
            await self.outbox.open()
        except (OSError, sqlite3.Error) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise StartupError(
                f"state dir {state_dir}: cannot open the outbox {self.outbox.sync.path}: {reason}; "
                f"make the directory readable and writable by the bridge's user, or set [bridge] "
                f"state_dir in {self.config.file}",
                exit_status=exits.STATE_DIR,
            ) from None
        try:
            await self.outbox.call(self.outbox.sync.probe_writable)
        except OutboxUnavailable as exc:
            await self.outbox.close()
            raise StartupError(
                f"state dir {state_dir}: the outbox cannot be written ({exc}); free disk space or fix "
                "the permissions, then start again",
                exit_status=exits.STATE_DIR,
            ) from None

    async def run(self, *, task_status: trio.TaskStatus[Bridge] = trio.TASK_STATUS_IGNORED) -> None:
        await self._open_outbox()
        self.outbox.sync.set_sinks([s.name for s in self.config.sinks])
        try:
            async with trio.open_nursery() as outer:
                # Listeners first: a port in use stops the start before anything connects.
                for listener in self.listeners:
                    await outer.start(listener, self)
                log.info(
                    "bridge_starting",
                    state_dir=str(self.config.state_dir),
                    sources=[s.name for s in self.config.sources],
                    sinks=[s.name for s in self.config.sinks],
                )
                committer_done = trio.Event()
                outer.start_soon(self._run_committer, committer_done)
                outer.start_soon(self._prune_loop)
                watched = (lambda: self.sources), (lambda: self.committer.unavailable), self.outbox.sync.path
                outer.start_soon(self.operational.run, *watched, lambda: self.sinks)
                for task in self.extra_tasks:
                    outer.start_soon(task, self)
                async with trio.open_nursery() as sinks_nursery:
                    self._sinks_nursery = sinks_nursery
                    for configured in self.config.sinks:
                        await sinks_nursery.start(self._supervise_sink, configured.component)
                    async with trio.open_nursery() as sources_nursery:
                        self._sources_nursery = sources_nursery
                        for configured in self.config.sources:
                            await sources_nursery.start(self._supervise_source, configured.component)
                        self.ready.set()
                        log.info("bridge_ready")
                        task_status.started(self)
                        await self._stop.wait()
                        log.info("bridge_stopping", reason="stop requested")
                        sources_nursery.cancel_scope.cancel()
                    self.committer.close()
                    await committer_done.wait()
                    await self._drain(self.shutdown_grace)
                    sinks_nursery.cancel_scope.cancel()
                outer.cancel_scope.cancel()
            self.stopped_cleanly = True
            log.info("bridge_stopped", committed=self.committer.committed)
        finally:
            with trio.CancelScope(shield=True):
                await self.outbox.close()

    async def _run_committer(self, done: trio.Event) -> None:
        try:
            await self.committer.run()
        finally:
            done.set()

    async def _drain(self, grace: float) -> None:
        """Let sinks deliver what is pending, up to ``grace`` seconds."""
        with trio.move_on_after(grace) as scope:
            while True:
                stats = await self.outbox.call(self.outbox.sync.stats)
                pending = sum(
                    counts.get("pending", 0)
                    for sink, counts in stats["deliveries"].items()
                    if sink in self.sinks
                )
                if not pending:
                    return
                await self.committer.new_data.wait(0.05)
        if scope.cancelled_caught:
            log.warning(
                "shutdown_grace_expired",
                grace=grace,
                note="undelivered events stay in the outbox and are delivered after restart",
            )

    async def _prune_loop(self) -> None:
        retention = self.config.outbox.retention
        while True:
            await trio.sleep(self.config.outbox.prune_interval)
            removed = await self.outbox.call(self.outbox.sync.prune, retention)
            if removed:
                log.info("outbox_pruned", events=removed)

    async def _supervise_source(self, source: Source, *, task_status: trio.TaskStatus[None]) -> None:
        state = await self.outbox.call(self.outbox.sync.load_state, source.name)
        ctx = SourceContext(
            emitter=SourceEmitter(self.committer, source.name),
            quarantine=self.quarantine,
            state=state,
            log=structlog.get_logger("bridge.source").bind(source=source.name, vendor=source.vendor),
        )
        self.sources[source.name] = source
        await self._supervise(source.name, "source", partial(source.run, ctx), source, task_status)

    async def _supervise_sink(self, sink: Sink, *, task_status: trio.TaskStatus[None]) -> None:
        feed = SinkFeed(self.outbox, self.committer.new_data, sink.name, self.delivery_observers)
        feed.shape = body_shaper(sink)  # per-sink shaping of data (bridge.shaping)
        self.sinks[sink.name] = sink
        if (controls := getattr(sink, "controls", None)) is not None:
            controls.operational = self.operational
        await self._supervise(sink.name, "sink", partial(sink.run, feed), sink, task_status)

    async def _supervise(
        self,
        name: str,
        role: str,
        start: Callable[[Any], Any],
        component: Any,
        task_status: trio.TaskStatus[None],
    ) -> None:
        """Run a component forever; a crash is logged with its traceback and restarted."""
        backoff = Backoff(base=1.0, cap=60.0)
        started = False
        with trio.CancelScope() as scope:
            self._scopes[f"{role}:{name}"] = scope
            while True:
                began = time.monotonic()
                try:
                    async with trio.open_nursery() as nursery:
                        await nursery.start(start)
                        if not started:
                            started = True
                            task_status.started()
                except Exception as exc:
                    # Refused at the bridge's own start: one line and an exit status. A
                    # component added later by a reload is retried instead (the bridge runs on).
                    fatal = None if started or self.ready.is_set() else startup_error(exc)
                    if fatal is not None:
                        raise fatal from None
                    component.health.state, component.health.detail = "error", f"crashed: {exc!r}"
                    log.exception(f"{role}_crashed", **{role: name}, error=repr(exc))
                else:
                    log.error(f"{role}_returned", **{role: name})
                if not started:
                    started = True
                    task_status.started()
                if time.monotonic() - began > 60:
                    backoff.reset()
                await trio.sleep(backoff.next())

    async def reload(self, new: BridgeConfig) -> dict[str, list[str]]:
        """Apply a new config live: only added, removed or changed components restart.

        Unchanged sources and sinks keep running untouched (their connections and
        in-flight deliveries are not interrupted). Settings of [bridge] and [outbox]
        need a restart; a change there is reported, not applied.
        """
        for hook in self.reload_hooks:
            hook()
        changes: dict[str, list[str]] = {"added": [], "removed": [], "changed": [], "restart_needed": []}
        for key in ("state_dir",):
            if getattr(new, key) != getattr(self.config, key):
                changes["restart_needed"].append(key)
        if new.outbox != self.config.outbox:
            changes["restart_needed"].append("outbox")
        logs.redactor.update(set(self.config.secrets.values) | set(new.secrets.values))
        old_sinks = {s.name: s for s in self.config.sinks}
        new_sinks = {s.name: s for s in new.sinks}
        old_sources = {s.name: s for s in self.config.sources}
        new_sources = {s.name: s for s in new.sources}
        # Delivery rows for new events go to the new set of sinks from now on.
        self.outbox.sync.set_sinks(list(new_sinks))
        await self._apply("sink", old_sinks, new_sinks, self._sinks_nursery, self._supervise_sink, changes)
        await self._apply(
            "source", old_sources, new_sources, self._sources_nursery, self._supervise_source, changes
        )
        self.config = new
        self.operational.enabled = wanted_by(new.sinks)
        for hook in self.reloaded_hooks:
            hook()
        log.info("config_reloaded", **changes)
        return changes

    async def _apply(
        self,
        role: str,
        old: dict[str, Configured],
        new: dict[str, Configured],
        nursery: trio.Nursery | None,
        supervise: Callable[..., Any],
        changes: dict[str, list[str]],
    ) -> None:
        assert nursery is not None
        kept = [name for name in old if name in new and old[name].fingerprint == new[name].fingerprint]
        for name, configured in old.items():
            if name in kept:
                new[name] = configured  # keep the running object
                continue
            changes["removed" if name not in new else "changed"].append(f"{role}:{name}")
            scope = self._scopes.pop(f"{role}:{name}", None)
            if scope is not None:
                scope.cancel()
            (self.sources if role == "source" else self.sinks).pop(name, None)
        for name, configured in new.items():
            if name in kept:
                continue
            if name not in old:
                changes["added"].append(f"{role}:{name}")
            await nursery.start(supervise, configured.component)

    def reopen_logs(self) -> None:
        for sink in self.sinks.values():
            sink.reopen()


def startup_error(exc: BaseException) -> StartupError | None:
    """The StartupError inside ``exc`` (trio wraps errors of tasks in exception groups).

    A ConfigError a component raises while starting (a TLS file it loads at connect
    time, say) is a startup error too, with the configuration error's exit status.
    """
    if isinstance(exc, StartupError):
        return exc
    if isinstance(exc, ConfigError):
        status, what = exits.for_config_error(exc)
        return StartupError(f"{what}: {exc}", exit_status=status)
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = startup_error(inner)
            if found is not None:
                return found
    return None


async def reload_from_file(bridge: Bridge) -> None:
    """SIGHUP: reopen log files, re-read the config file; a bad file keeps the old config."""
    bridge.reopen_logs()
    try:
        new = await trio.to_thread.run_sync(load, bridge.config.file)
    except ConfigError as exc:
        log.error("config_reload_rejected", error=str(exc), note="the previous configuration keeps running")
        return
    await bridge.reload(new)


async def run_with_signals(bridge: Bridge) -> None:
    """Run ``bridge`` until SIGTERM/SIGINT; SIGHUP reloads the config and reopens log files."""
    async with trio.open_nursery() as nursery:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:

            async def watch() -> None:
                async for signum in signals:
                    if signum == signal.SIGHUP:
                        log.info("sighup", action="reloading config, reopening log files")
                        if bridge.ready.is_set() and not bridge.stopping:
                            await reload_from_file(bridge)
                    else:
                        log.info("signal_received", signal=signal.Signals(signum).name)
                        bridge.request_stop()

            nursery.start_soon(watch)
            await bridge.run()
            nursery.cancel_scope.cancel()
