"""Keep the bytes of bad input where an operator can look at them.

Each rejected input becomes one file under ``<state_dir>/quarantine/<source>/`` with a
sidecar ``.txt`` stating why. The directory is bounded (oldest files go first) so a
hostile peer cannot fill the disk through it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

MAX_FILES_PER_SOURCE = 1000
MAX_BYTES_PER_FILE = 1024 * 1024


class Quarantine:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._counter = 0

    def keep(self, source: str, reason: str, raw: bytes) -> Path:
        """Write ``raw`` (truncated to 1 MiB) and the reason; return the data file's path."""
        directory = self.root / source
        directory.mkdir(parents=True, exist_ok=True)
        self._counter += 1
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        path = directory / f"{stamp}-{os.getpid()}-{self._counter:06d}.bin"
        truncated = len(raw) > MAX_BYTES_PER_FILE
        path.write_bytes(raw[:MAX_BYTES_PER_FILE])
        note = f"source: {source}\nreason: {reason}\nbytes: {len(raw)}"
        if truncated:
            note += f" (first {MAX_BYTES_PER_FILE} kept)"
        path.with_suffix(".txt").write_text(note + "\n")
        self._trim(directory)
        return path

    def _trim(self, directory: Path) -> None:
        files = sorted(directory.glob("*.bin"))
        for old in files[: max(0, len(files) - MAX_FILES_PER_SOURCE)]:
            old.unlink(missing_ok=True)
            old.with_suffix(".txt").unlink(missing_ok=True)
