"""Files the bridge creates are private: 0600 files, 0700 directories, whatever the umask.

The outbox, the quarantine (raw vendor bytes with caller numbers and agent ids) and the
event logs hold PCI-relevant call data. Under systemd the unit's ``UMask=0077`` already
gives these modes; run by hand (umask 022) the same files would be world-readable. So
every place that creates one goes through these helpers, which set the mode explicitly
on what they create. Existing files and directories keep the mode an operator gave them
(e.g. a log directory shared with a log shipper's group).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

FILE_MODE = 0o600
DIR_MODE = 0o700

__all__ = ["DIR_MODE", "FILE_MODE", "ensure_private_file", "open_private", "private_dir", "write_private"]


def private_dir(path: Path) -> Path:
    """``mkdir -p`` where every directory created here is 0700; returns ``path``."""
    missing: list[Path] = []
    current = path
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=DIR_MODE)
        except FileExistsError:
            continue  # someone else made it meanwhile: theirs, leave its mode
        os.chmod(directory, DIR_MODE)  # mkdir's mode is masked by the umask
    return path


def _open_fd(path: Path, flags: int) -> int:
    """Open ``path`` with ``flags``; if this call creates it, it is made 0600 first."""
    private_dir(path.parent)
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return os.open(path, flags)
    os.fchmod(fd, FILE_MODE)
    return fd


def open_private(path: Path, mode: str = "ab") -> IO[bytes]:
    """Like ``open(path, mode)`` for binary append/write, but a new file is 0600."""
    flags = {"ab": os.O_WRONLY | os.O_APPEND, "wb": os.O_WRONLY | os.O_TRUNC}[mode]
    return os.fdopen(_open_fd(path, flags), mode)


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (replacing it); a new file is 0600."""
    with open_private(path, "wb") as file:
        file.write(data)


def ensure_private_file(path: Path) -> Path:
    """Create ``path`` empty and 0600 if it does not exist (before SQLite opens it).

    SQLite creates its ``-wal`` and ``-shm`` files with the database file's mode, so
    making the database file private first is enough for all three.
    """
    os.close(_open_fd(path, os.O_RDONLY))
    return path
