"""What goes on the wire for a webhook: CloudEvents HTTP binding + Standard Webhooks.

* structured mode: one event, ``application/cloudevents+json``, the envelope as body
  (the bytes the outbox stored at commit, sent as they are);
* binary mode: one event, attributes in ``ce-*`` headers, ``data`` as the JSON body;
* batched mode: several events, ``application/cloudevents-batch+json``, a JSON array.

Every request is signed per Standard Webhooks (``webhook-id``, ``webhook-timestamp``,
``webhook-signature``): ``v1,`` + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")),
one signature per configured secret so receivers can rotate secrets without downtime.
The ``standardwebhooks`` reference library decodes the secrets (and is what the tests
verify against); the HMAC itself is computed here over the raw bytes, so a body is
never decoded to text and re-encoded for every request.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Sequence
from datetime import datetime
from urllib.parse import quote

import orjson
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
    """Standard Webhooks signatures for every configured secret."""

    def __init__(self, secrets: Sequence[str]) -> None:
        for secret in secrets:
            Webhook(secret)  # the reference library's checks: a bad secret raises here
        # The key is base64 after "whsec_" (padding optional, as the reference accepts).
        self._keys = [base64.b64decode(s.removeprefix("whsec_") + "==") for s in secrets]

    def headers(self, msg_id: str, body: bytes, now: datetime | float | None = None) -> dict[str, str]:
        if now is None:
            moment = int(time.time())
        elif isinstance(now, datetime):
            moment = int(now.timestamp())
        else:
            moment = int(now)
        timestamp = str(moment)
        headers = {"webhook-id": msg_id, "webhook-timestamp": timestamp}
        if self._keys:
            signed = b"".join((msg_id.encode(), b".", timestamp.encode(), b".", body))
            headers["webhook-signature"] = " ".join(
                "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
                for key in self._keys
            )
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
    event = orjson.loads(row.body)
    headers = {
        f"ce-{key}": quote(value if isinstance(value, str) else json.dumps(value), safe=_HEADER_SAFE)
        for key, value in event.items()
        if key not in _BINARY_SKIP
    }
    headers["content-type"] = event.get("datacontenttype", "application/json")
    body = json.dumps(event.get("data"), separators=(",", ":"), ensure_ascii=False).encode()
    return row.id, headers, body
