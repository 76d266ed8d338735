"""The one exception tree of event-bridge.

Modelled on ``httpx/_exceptions.py``: every error the bridge raises on purpose derives
from :class:`BridgeError`, so a caller can catch the whole family, and each branch names
who is at fault, which decides what an operator does about it::

    BridgeError
    ├── ConfigError            the configuration is wrong: fix the file (exit 2)
    ├── StartupError           the host refuses something at start: port in use, unreadable dir
    ├── OutboxUnavailable      the SQLite outbox cannot be written: disk full, permissions, I/O
    ├── VendorInputError       bytes from a vendor that cannot be read (quarantined, never fatal)
    ├── EndpointError          a peer (vendor server, receiver, NATS) failed or refused
    └── VerificationError      a webhook a receiver got does not verify
        ├── SignatureError     signature, timestamp or id headers wrong: answer 401
        └── BodyError          the body is malformed, too large or not the envelope: answer 400

Messages are one line, name what and where, and never carry a secret (callers pass
URLs through :func:`bridge.netutil.redact_url`).
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "BodyError",
    "BridgeError",
    "ConfigError",
    "EndpointError",
    "OutboxUnavailable",
    "SignatureError",
    "StartupError",
    "VendorInputError",
    "VerificationError",
]


class BridgeError(Exception):
    """Base class of every error event-bridge raises on purpose."""


class ConfigError(BridgeError):
    """A configuration problem: where (file and key) and what to do about it."""

    def __init__(self, file: str | Path, key: str, message: str) -> None:
        self.file = str(file)
        self.key = key
        self.message = message
        super().__init__(f"{self.file}: {key}: {message}" if key else f"{self.file}: {message}")


class StartupError(BridgeError):
    """Something the host refused at start (a port in use, a directory not writable).

    ``exit_status`` is the process exit status the CLI uses, so scripts and systemd can
    tell the causes apart.
    """

    def __init__(self, message: str, *, exit_status: int = 3) -> None:
        self.exit_status = exit_status
        super().__init__(message)


class OutboxUnavailable(BridgeError):
    """The outbox cannot be written (disk full, read-only, permissions, I/O error)."""


class VendorInputError(BridgeError, ValueError):
    """Input from a vendor that cannot be read: kept in quarantine, never fatal.

    ``raw`` holds the offending bytes (bounded by the reader) for the quarantine file.
    """

    def __init__(self, message: str, raw: bytes = b"") -> None:
        self.raw = raw
        super().__init__(message)


class EndpointError(BridgeError):
    """A peer failed or refused: transport error, HTTP status, protocol fault.

    ``status`` is the HTTP status (or vendor result code) when there was one;
    ``excerpt`` a short, secret-free piece of the answer for the log line.
    """

    def __init__(self, message: str, *, status: int | None = None, excerpt: str = "") -> None:
        self.status = status
        self.excerpt = excerpt
        super().__init__(message)


class VerificationError(BridgeError):
    """A received webhook does not verify; the subclass says which answer to give."""

    http_status = 400


class SignatureError(VerificationError):
    """Missing or wrong signature, stale timestamp, or ids that disagree: answer 401."""

    http_status = 401


class BodyError(VerificationError):
    """The body is malformed, too large, not UTF-8 or not a CloudEvent: answer 400."""

    http_status = 400
