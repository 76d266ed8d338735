"""JSON Lines sink: one CloudEvent per line, to a file or stdout.

Files are reopened on SIGHUP (for logrotate) or rotated by size when ``max_bytes`` is
set. A line is marked delivered only after it was written and flushed.
"""

from __future__ import annotations

import sys
from typing import IO

import structlog
import trio

from bridge import fsmode
from bridge.components import ComponentBase
from bridge.outbox import Row
from bridge.sinks.base import SinkFeed, SinkHealth
from bridge.sinks.log.settings import LogSettings

log = structlog.get_logger("bridge.sinks.log")


class LogSink(ComponentBase):
    def __init__(self, settings: LogSettings) -> None:
        self.settings = settings
        self.name = settings.name
        self.path = settings.path
        self.health = SinkHealth()
        self._file: IO[bytes] | None = None
        self._reopen = False

    def describe(self) -> str:
        return str(self.path) if self.path else "stdout"

    def reopen(self) -> None:
        """Ask for the file to be reopened before the next write (SIGHUP, logrotate)."""
        self._reopen = True

    def _open(self) -> IO[bytes]:
        if self.path is None:
            return sys.stdout.buffer
        return fsmode.open_private(self.path, "ab")  # a new file is 0600, a new directory 0700

    def _rotate(self) -> None:
        assert self.path is not None
        if self._file is not None:
            self._file.close()
            self._file = None
        for i in range(self.settings.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{i}")
            if older.exists():
                older.replace(self.path.with_name(f"{self.path.name}.{i + 1}"))
        if self.path.exists():
            self.path.replace(self.path.with_name(f"{self.path.name}.1"))

    def _write(self, rows: list[Row]) -> None:
        if self._reopen and self.path is not None and self._file is not None:
            self._file.close()
            self._file = None
        self._reopen = False
        if self._file is None:
            self._file = self._open()
        data = b"".join(r.body + b"\n" for r in rows)
        self._file.write(data)
        self._file.flush()
        if self.path is not None and self.settings.max_bytes and self._file.tell() >= self.settings.max_bytes:
            self._rotate()

    async def run(
        self, feed: SinkFeed, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        self.health.state = "ok"
        try:
            while True:
                rows = await feed.pending(self.settings.batch)
                if not rows:
                    await feed.wait_for_new(timeout=1.0)
                    continue
                try:
                    self._write(rows)
                except OSError as exc:
                    self.health.state, self.health.detail = "error", f"{self.describe()}: {exc.strerror}"
                    log.error(
                        "log_sink_write_failed", sink=self.name, path=self.describe(), error=exc.strerror
                    )
                    self._file = None
                    await trio.sleep(1.0)
                    continue
                self.health.state, self.health.detail = "ok", ""
                self.health.delivered += len(rows)
                await feed.delivered(rows)
        finally:
            if self._file is not None and self.path is not None:
                self._file.close()
                self._file = None
