"""Keep the bytes of bad input where an operator can look at them.

Each rejected input becomes one file under ``<state_dir>/quarantine/<source>/`` with a
sidecar ``.txt`` stating why. Per source the directory is bounded twice, by file count
and by total bytes (``[quarantine] max_files``, ``max_bytes``); the oldest inputs go
first, so a hostile peer cannot fill the disk through it, and one input keeps at most
``max_file_bytes``. The files hold raw call data: they are 0600 in 0700 directories
(:mod:`bridge.fsmode`), and log lines about them carry no excerpt of it.
"""

from __future__ import annotations

import os
import time
from collections import deque
from pathlib import Path

from bridge.fsmode import private_dir, write_private
from bridge.settings import Validator, setting, settings

MAX_FILES_PER_SOURCE = 1000
MAX_BYTES_PER_FILE = 1024 * 1024
MAX_BYTES_PER_SOURCE = 64 * 1024 * 1024


@settings
class QuarantineSettings:
    """``[quarantine]``: how much rejected input is kept per source (oldest goes first)."""

    max_files: int = setting(MAX_FILES_PER_SOURCE, min=1, doc="inputs kept per source")
    max_bytes: int = setting(
        MAX_BYTES_PER_SOURCE, min=4096, doc="bytes kept per source, all its files together"
    )
    max_file_bytes: int = setting(
        MAX_BYTES_PER_FILE, min=256, doc="bytes kept of one input (its full length is noted)"
    )

    def validate(self, v: Validator) -> None:
        if self.max_file_bytes > self.max_bytes:
            raise v.error("max_file_bytes", f"must not exceed max_bytes ({self.max_bytes})")


class Quarantine:
    def __init__(self, root: Path, settings: QuarantineSettings | None = None) -> None:
        self.root = root
        self.settings = settings or QuarantineSettings()
        self._counter = 0
        # Per source, oldest first: (data file, bytes of data + sidecar). Read from disk once.
        self._kept: dict[str, deque[tuple[Path, int]]] = {}
        self._bytes: dict[str, int] = {}

    def keep(self, source: str, reason: str, raw: bytes) -> Path:
        """Write ``raw`` (truncated to ``max_file_bytes``) and the reason; return the data file's path."""
        limit = self.settings.max_file_bytes
        directory = private_dir(self.root / source)
        kept = self._inventory(source, directory)
        self._counter += 1
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        path = directory / f"{stamp}-{os.getpid()}-{self._counter:06d}.bin"
        note = f"source: {source}\nreason: {reason}\nbytes: {len(raw)}"
        if len(raw) > limit:
            note += f" (first {limit} kept)"
        data, text = raw[:limit], (note + "\n").encode("utf-8", "backslashreplace")
        write_private(path, data)
        write_private(path.with_suffix(".txt"), text)
        kept.append((path, len(data) + len(text)))
        self._bytes[source] += len(data) + len(text)
        self._trim(source)
        return path

    def usage(self, source: str) -> tuple[int, int]:
        """(files, bytes) kept for ``source``."""
        kept = self._inventory(source, self.root / source)
        return len(kept), self._bytes[source]

    def _inventory(self, source: str, directory: Path) -> deque[tuple[Path, int]]:
        if source not in self._kept:
            entries: deque[tuple[Path, int]] = deque()
            total = 0
            for data in sorted(directory.glob("*.bin")) if directory.is_dir() else []:
                size = sum(_size(p) for p in (data, data.with_suffix(".txt")))
                entries.append((data, size))
                total += size
            self._kept[source], self._bytes[source] = entries, total
        return self._kept[source]

    def _trim(self, source: str) -> None:
        kept = self._kept[source]
        while len(kept) > 1 and (
            len(kept) > self.settings.max_files or self._bytes[source] > self.settings.max_bytes
        ):
            old, size = kept.popleft()
            old.unlink(missing_ok=True)
            old.with_suffix(".txt").unlink(missing_ok=True)
            self._bytes[source] -= size


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
