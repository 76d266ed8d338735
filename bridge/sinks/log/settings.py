"""Settings of ``[[sinks.log]]``."""

from __future__ import annotations

from pathlib import Path

from bridge.settings import Validator, setting, settings
from bridge.shaping import ShapeSettings


@settings
class LogSettings:
    name: str = setting(doc="unique name of this sink")
    path: Path | None = setting(None, doc="JSON Lines file to append to (relative to the config file)")
    stdout: bool = setting(False, doc="write to standard output instead of a file")
    max_bytes: int = setting(
        0, min=0, doc="rotate the file beyond this size in bytes (0: never; use logrotate)"
    )
    backups: int = setting(5, min=1, max=1000, doc="rotated files kept when max_bytes is set")
    batch: int = setting(500, min=1, max=100_000, doc="most events written per flush")
    shape: ShapeSettings = setting(factory=ShapeSettings, doc="per-sink shaping of data (bridge.shaping)")

    def validate(self, v: Validator) -> None:
        if self.stdout == (self.path is not None):
            raise v.error(
                "path", 'set exactly one of path = "/var/log/event-bridge/events.jsonl" or stdout = true'
            )
