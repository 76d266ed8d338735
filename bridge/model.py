"""The common event model: one CloudEvents 1.0 envelope for every vendor.

Sources build :class:`Event` objects; the outbox gives each one its deterministic id
when it commits it (see :func:`event_id`), so replays and a second bridge reading the
same stream produce the same ids, and downstream apps can deduplicate on them.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

SPECVERSION = "1.0"
DATACONTENTTYPE = "application/json"

NORMALIZED_TYPES = frozenset(
    {
        "call.started",
        "call.ended",
        "recording.started",
        "recording.stopped",
        "recording.paused",
        "recording.resumed",
        "recording.suspended",
        "recording.interrupted",  # Encore: left and re-entered between two polls, how unknown
        "recording.saved",
        "recording.deleted",
        "recording.marked",
        "recording.unmarked",
    }
)

# ``dataschema`` of every event: the schema of its ``data`` (bridge/schemas/<family>/v1.json),
# one per type, ``vendor`` for every ``vendor.*`` type. See bridge.contract.
SCHEMA_URI = "urn:event-bridge:schema:{family}:v1"


def dataschema(event_type: str) -> str:
    return SCHEMA_URI.format(family="vendor" if event_type.startswith("vendor.") else event_type)


_ID_NAMESPACE = uuid.UUID("5f0c3a2e-8d7b-4c61-9a57-2d1e6b0f4a93")


def vendor_type(vendor: str, name: str) -> str:
    """Type for a vendor event the model does not know: passed through, never dropped."""
    cleaned = "".join(ch for ch in str(name).strip().lower() if ch.isalnum() or ch in "._-")
    return f"vendor.{vendor}.{cleaned or 'unknown'}"


def canonical_json(value: Any) -> bytes:
    """Stable JSON bytes (sorted keys, no spaces) for hashing and storage.

    These bytes feed the deterministic event id, so they stay the json module's (orjson
    differs on floats and large integers; checking a value first cost more than it saved).
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def content_digest(source_name: str, identity: Any) -> str:
    """Digest of what makes an event the event it is (not when it was received)."""
    h = hashlib.sha256()
    h.update(source_name.encode())
    h.update(b"\0")
    # Raw vendor bytes are their own identity (no need to re-encode what arrived).
    h.update(identity if isinstance(identity, bytes) else canonical_json(identity))
    return h.hexdigest()


def event_id(digest: str, ordinal: int) -> str:
    """Deterministic id: the content digest plus how many times that content came before."""
    return str(uuid.uuid5(_ID_NAMESPACE, f"{digest}:{ordinal}"))


def rfc3339(moment: datetime) -> str:
    """RFC 3339 with an explicit offset (naive datetimes are refused, not guessed)."""
    if moment.tzinfo is None:
        raise ValueError("event time must be timezone-aware")
    return moment.isoformat(timespec="milliseconds")


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class Event:
    """A normalized event before it is committed (``id`` is assigned by the outbox).

    ``identity`` is what the deterministic id is computed from; by default the type,
    subject and the vendor's raw fields. Sources may pass something narrower.
    """

    source_name: str
    vendor: str
    type: str
    subject: str | None
    time: datetime
    data: dict[str, Any]
    identity: Any = None
    extensions: dict[str, str] = field(default_factory=dict)

    @property
    def ce_source(self) -> str:
        return f"/event-bridge/{self.vendor}/{self.source_name}"

    def digest(self) -> str:
        identity = self.identity
        if identity is None:
            identity = {"type": self.type, "subject": self.subject, "raw": self.data.get("raw")}
        return content_digest(self.source_name, identity)

    def to_cloudevent(self, event_id_: str) -> dict[str, Any]:
        """The structured-mode CloudEvent as a JSON-ready dict."""
        envelope: dict[str, Any] = {
            "specversion": SPECVERSION,
            "id": event_id_,
            "source": self.ce_source,
            "type": self.type,
            "time": rfc3339(self.time),
            "datacontenttype": DATACONTENTTYPE,
            "dataschema": dataschema(self.type),
        }
        if self.subject:
            envelope["subject"] = self.subject
        envelope.update(self.extensions)
        envelope["data"] = self.data
        return envelope
