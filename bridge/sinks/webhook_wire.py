"""What goes on the wire for a webhook: CloudEvents HTTP binding + Standard Webhooks.

* structured mode: one event, ``application/cloudevents+json``, the envelope as body;
* binary mode: one event, attributes in ``ce-*`` headers, ``data`` as the JSON body;
* batched mode: several events, ``application/cloudevents-batch+json``, a JSON array.

Every request is signed per Standard Webhooks (``webhook-id``, ``webhook-timestamp``,
``webhook-signature``) with the ``standardwebhooks`` reference library, one ``v1,``
signature per configured secret so receivers can rotate secrets without downtime.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from urllib.parse import quote

from standardwebhooks import Webhook

from bridge.outbox import Row

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
MODES = ("structured", "binary", "batch")
_BINARY_SKIP = {"data", "data_base64", "datacontenttype"}
# CloudEvents HTTP binding 3.1.3.2: percent-encode space, '"', '%' and anything outside
# printable ASCII in header values.
_HEADER_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '"%')


class Signer:
    def __init__(self, secrets: Sequence[str]) -> None:
        self._hooks = [Webhook(secret) for secret in secrets]

    def headers(self, msg_id: str, body: bytes, now: datetime | None = None) -> dict[str, str]:
        moment = now or datetime.now(UTC)
        timestamp = str(int(moment.timestamp()))
        text = body.decode("utf-8")
        signatures = " ".join(hook.sign(msg_id, moment, text) for hook in self._hooks)
        headers = {"webhook-id": msg_id, "webhook-timestamp": timestamp}
        if signatures:
            headers["webhook-signature"] = signatures
        return headers


def batch_id(rows: Sequence[Row]) -> str:
    """Deterministic id for a batch: the same events in the same order, the same id."""
    digest = hashlib.sha256("\n".join(r.id for r in rows).encode()).hexdigest()
    return f"batch_{digest[:32]}"


def encode(rows: Sequence[Row], mode: str) -> tuple[str, dict[str, str], bytes]:
    """Returns (webhook-id, content headers, body) for ``rows`` in ``mode``."""
    if mode == "batch":
        body = b"[" + b",".join(r.body for r in rows) + b"]"
        return batch_id(rows), {"content-type": BATCH}, body
    (row,) = rows
    if mode == "structured":
        return row.id, {"content-type": STRUCTURED}, row.body
    event = json.loads(row.body)
    headers = {
        f"ce-{key}": quote(value if isinstance(value, str) else json.dumps(value), safe=_HEADER_SAFE)
        for key, value in event.items()
        if key not in _BINARY_SKIP
    }
    headers["content-type"] = event.get("datacontenttype", "application/json")
    body = json.dumps(event.get("data"), separators=(",", ":"), ensure_ascii=False).encode()
    return row.id, headers, body
