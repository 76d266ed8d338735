"""Check events against the shipped schemas with the ``jsonschema`` library (both CloudEvents modes).

The envelope is checked against the CloudEvents 1.0 attribute rules written here from the
spec, ``data`` against the schema its ``dataschema`` names, *closed*: a field the schema
does not document fails (the shipped schemas stay open for receivers' forward
compatibility; the bridge itself must not emit undocumented fields).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from functools import cache
from typing import Any
from urllib.parse import unquote

from jsonschema import Draft202012Validator, FormatChecker

from bridge.contract.catalog import catalog

# CloudEvents 1.0 (spec.md, "Context Attributes") plus what the README promises.
ENVELOPE = {
    "type": "object",
    "required": ["specversion", "id", "source", "type", "time", "datacontenttype", "dataschema", "data"],
    "properties": {
        "specversion": {"const": "1.0"},
        "id": {"type": "string", "minLength": 1},
        "source": {"type": "string", "pattern": "^/event-bridge/[a-z]+/[A-Za-z0-9][A-Za-z0-9_.-]*$"},
        "type": {"type": "string", "minLength": 1},
        "time": {"type": "string", "format": "date-time"},
        "subject": {"type": "string", "minLength": 1},
        "datacontenttype": {"const": "application/json"},
        "dataschema": {"type": "string", "format": "uri"},
        "data": {"type": "object"},
    },
}
FORMATS = FormatChecker()


@cache
def _closed(uri: str) -> Draft202012Validator:
    entry = next(e for e in catalog().entries if e.uri == uri)
    schema = copy.deepcopy(entry.schema)
    schema["additionalProperties"] = False
    return Draft202012Validator(schema, format_checker=FORMATS)


def check_data(event_type: str, dataschema: str, data: Any) -> None:
    entry = catalog().for_type(event_type)
    assert dataschema == entry.uri, f"{event_type}: dataschema {dataschema!r}, expected {entry.uri!r}"
    errors = sorted(_closed(entry.uri).iter_errors(data), key=lambda e: list(e.path))
    assert not errors, f"{event_type}: " + "; ".join(
        f"{'/'.join(map(str, e.path)) or '(data)'}: {e.message[:200]}" for e in errors
    )


def check_structured(event: Mapping[str, Any]) -> None:
    """A structured-mode CloudEvent (a body of a log line, a NATS message, a webhook)."""
    errors = list(Draft202012Validator(ENVELOPE, format_checker=FORMATS).iter_errors(dict(event)))
    assert not errors, "; ".join(e.message for e in errors)
    check_data(event["type"], event["dataschema"], event["data"])


def check_binary(headers: Mapping[str, str], body: bytes) -> None:
    """A binary-mode request: attributes in ``ce-*`` headers, ``data`` as the body."""
    lower = {k.lower(): v for k, v in headers.items()}
    attributes = {k[3:]: unquote(v) for k, v in lower.items() if k.startswith("ce-")}
    attributes["datacontenttype"] = lower.get("content-type", "")
    attributes["data"] = json.loads(body)
    check_structured(attributes)
