"""systemd integration: sd_notify READY/STATUS/WATCHDOG/STOPPING from the trio loop.

The notify protocol is one datagram per message to ``$NOTIFY_SOCKET`` (a path, or an
abstract socket when it starts with ``@``). It is a dozen lines, so it lives here
rather than in a dependency (the PyPI ``sdnotify`` package has been unmaintained
since 2017). ``WATCHDOG=1`` is sent by a trio task, not a thread: if the event loop
hangs, the pings stop and systemd restarts the service (``WatchdogSec=``).

Test hook: with ``EVENT_BRIDGE_TEST_HOOKS=1`` in the environment, SIGUSR2 blocks the
event loop for a long time, so tests can prove that a stalled loop stops the pings.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from functools import partial
from typing import TYPE_CHECKING, Any

import structlog
import trio

if TYPE_CHECKING:
    from bridge.service import Bridge

log = structlog.get_logger("bridge.systemd")


class Notifier:
    def __init__(self, address: str | None = None) -> None:
        self.address = address if address is not None else os.environ.get("NOTIFY_SOCKET")
        self._sock: socket.socket | None = None
        if self.address:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def notify(self, message: str) -> None:
        if self._sock is None or not self.address:
            return
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            self._sock.sendto(message.encode(), target)
        except OSError as exc:
            log.warning("sd_notify_failed", error=exc.strerror, message=message.split("=")[0])


def watchdog_interval() -> float | None:
    """Half of ``$WATCHDOG_USEC`` when the watchdog is meant for this process."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 1_000_000 / 2
    except ValueError:
        return None


def status_line(bridge: Bridge) -> str:
    parts = [f"{name}: {source.health.state}" for name, source in bridge.sources.items()]
    sinks = [f"{name}: {sink.health.state}" for name, sink in bridge.sinks.items()]
    line = "sources " + ", ".join(parts) + "; sinks " + ", ".join(sinks)
    if bridge.committer.unavailable:
        line = f"OUTBOX UNAVAILABLE ({bridge.committer.unavailable}); " + line
    return line


async def run_notifier(bridge: Bridge, notifier: Notifier | None = None, status_every: float = 5.0) -> None:
    notifier = notifier or Notifier()
    if not notifier.enabled:
        return
    interval = watchdog_interval()
    await bridge.ready.wait()
    notifier.notify(f"READY=1\nSTATUS={status_line(bridge)}\nMAINPID={os.getpid()}")
    log.info("sd_notify_ready", watchdog_interval=interval)
    last_status = 0.0
    while True:
        if interval:
            notifier.notify("WATCHDOG=1")
        now = time.monotonic()
        if now - last_status >= status_every and not bridge.stopping:
            notifier.notify(f"STATUS={status_line(bridge)}")
            last_status = now
        await trio.sleep(min(interval or status_every, status_every))


async def _stall_hook() -> None:
    with trio.open_signal_receiver(signal.SIGUSR2) as signals:
        async for _ in signals:
            log.warning("test_hook_stalling_event_loop")
            time.sleep(3600)  # deliberately blocks the trio thread


def attach(bridge: Bridge, args: Any) -> None:
    """Called by ``event-bridge run``: add the notifier (and the test hook) to the bridge.

    The notifier waits for ``bridge.ready``, which the service sets only after the admin
    listener is bound and every sink and source has started: READY=1 never precedes them.
    """
    if os.environ.get("EVENT_BRIDGE_TEST_HOOKS") == "1":
        bridge.extra_tasks.append(lambda _bridge: _stall_hook())
    notifier = Notifier()
    if not notifier.enabled:
        return
    bridge.extra_tasks.append(partial(run_notifier, notifier=notifier))
    bridge.stop_hooks.append(
        lambda: notifier.notify("STOPPING=1\nSTATUS=stopping: committing the outbox and finishing deliveries")
    )
    bridge.reload_hooks.append(lambda: notifier.notify("RELOADING=1"))
    bridge.reloaded_hooks.append(lambda: notifier.notify(f"READY=1\nSTATUS={status_line(bridge)}"))
