"""The AsyncAPI 3.0 document: every way the bridge hands an event to a receiver.

Built from the schema catalog, so it never disagrees with it: the webhook channel in
CloudEvents structured mode, binary mode and batch mode (each request signed per
Standard Webhooks) and the JetStream subjects of a NATS sink. Payload schemas are the
catalog's own, embedded (they use no keyword outside what AsyncAPI schema objects accept).
"""

from __future__ import annotations

import copy
from typing import Any

from bridge import __version__
from bridge.contract.catalog import Catalog, SchemaEntry

__all__ = ["document", "envelope_schema"]

_SPEC = "https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/spec.md"


def _data(entry: SchemaEntry) -> dict[str, Any]:
    schema = copy.deepcopy(entry.schema)
    schema.pop("$schema", None)
    schema.pop("$id", None)
    return schema


def envelope_schema(entry: SchemaEntry, data: dict[str, Any]) -> dict[str, Any]:
    """The structured-mode CloudEvent of one family, ``data`` being its data schema."""
    if entry.family == "vendor":
        type_spec: dict[str, Any] = {"type": "string", "pattern": "^vendor\\.[a-z0-9]+\\.[a-z0-9._-]+$"}
    else:
        type_spec = {"type": "string", "const": entry.family}
    return {
        "type": "object",
        "title": f"{entry.title} (CloudEvent)",
        "description": f"CloudEvents 1.0 structured mode ({_SPEC}). {entry.description}",
        "required": ["specversion", "id", "source", "type", "time", "datacontenttype", "dataschema", "data"],
        "properties": {
            "specversion": {"type": "string", "const": "1.0"},
            "id": {"type": "string", "description": "deterministic: deduplicate on it"},
            "source": {"type": "string", "description": "/event-bridge/<vendor>/<source name>"},
            "type": type_spec,
            "time": {"type": "string", "format": "date-time", "description": "RFC 3339 with offset"},
            "subject": {"type": "string", "description": "what ordering is kept per"},
            "datacontenttype": {"type": "string", "const": "application/json"},
            "dataschema": {"type": "string", "const": entry.uri},
            "data": data,
        },
    }


SIGNATURE_HEADERS: dict[str, Any] = {
    "webhook-id": {
        "type": "string",
        "description": "Standard Webhooks message id: the event id (structured, binary) or batch_<digest>",
    },
    "webhook-timestamp": {"type": "string", "pattern": "^[0-9]+$", "description": "Unix seconds of signing"},
    "webhook-signature": {
        "type": "string",
        "description": "space-separated v1,<base64 HMAC-SHA256 of id.timestamp.body>, one per "
        "configured secret",
    },
}


def _headers(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required}


def _binary_headers(entry: SchemaEntry) -> dict[str, Any]:
    ce = {
        "ce-specversion": {"type": "string", "const": "1.0"},
        "ce-id": {"type": "string", "description": "the event id; equals webhook-id (receivers check it)"},
        "ce-source": {"type": "string"},
        "ce-type": {"type": "string"},
        "ce-time": {"type": "string", "description": "RFC 3339, percent-encoded per the HTTP binding"},
        "ce-subject": {"type": "string"},
        "ce-dataschema": {"type": "string", "const": entry.uri},
        "content-type": {"type": "string", "const": "application/json"},
    }
    ce.update(SIGNATURE_HEADERS)
    return _headers(ce, ["ce-specversion", "ce-id", "ce-source", "ce-type", "ce-dataschema", "webhook-id"])


def document(cat: Catalog) -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document as a JSON-ready dict."""
    entries = [cat.latest(f) for f in cat.families()]
    schemas: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    structured, binary, nats = [], [], []
    for entry in entries:
        key = entry.family
        schemas[key] = _data(entry)
        schemas[f"{key}.event"] = envelope_schema(entry, {"$ref": f"#/components/schemas/{key}"})
        common = {"title": entry.title, "summary": entry.description}
        messages[f"{key}.structured"] = {
            **common,
            "name": f"{key}.structured",
            "contentType": "application/cloudevents+json",
            "headers": _headers(
                {**SIGNATURE_HEADERS, "content-type": {"const": "application/cloudevents+json"}},
                ["webhook-id", "webhook-timestamp"],
            ),
            "payload": {"$ref": f"#/components/schemas/{key}.event"},
        }
        messages[f"{key}.binary"] = {
            **common,
            "name": f"{key}.binary",
            "contentType": "application/json",
            "headers": _binary_headers(entry),
            "payload": {"$ref": f"#/components/schemas/{key}"},
        }
        messages[f"{key}.nats"] = {
            **common,
            "name": f"{key}.nats",
            "contentType": "application/cloudevents+json",
            "headers": _headers(
                {
                    "Nats-Msg-Id": {
                        "type": "string",
                        "description": "the event id (JetStream deduplication)",
                    },
                    "content-type": {"const": "application/cloudevents+json"},
                    "ce-specversion": {"type": "string"},
                    "ce-id": {"type": "string"},
                    "ce-type": {"type": "string"},
                    "ce-source": {"type": "string"},
                    "ce-subject": {"type": "string"},
                },
                ["Nats-Msg-Id", "ce-id", "ce-type"],
            ),
            "payload": {"$ref": f"#/components/schemas/{key}.event"},
        }
        structured.append({"$ref": f"#/channels/webhook/messages/{key}.structured"})
        binary.append({"$ref": f"#/channels/webhook/messages/{key}.binary"})
        nats.append({"$ref": f"#/channels/jetstream/messages/{key}.nats"})
    messages["batch"] = {
        "name": "batch",
        "title": "A batch of events",
        "summary": "mode = batch: several events in one request, in commit order",
        "contentType": "application/cloudevents-batch+json",
        "headers": _headers(dict(SIGNATURE_HEADERS), ["webhook-id", "webhook-timestamp"]),
        "payload": {
            "type": "array",
            "items": {"anyOf": [{"$ref": f"#/components/schemas/{e.family}.event"} for e in entries]},
        },
    }
    webhook_messages = {
        name: {"$ref": f"#/components/messages/{name}"} for name in messages if not name.endswith(".nats")
    }
    nats_messages = {f"{e.family}.nats": {"$ref": f"#/components/messages/{e.family}.nats"} for e in entries}
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "event-bridge events",
            "version": __version__,
            "description": (
                "Call-recording events from Uptivity, AnywhereNow and Encore as CloudEvents 1.0. "
                "Webhooks are POSTed to each configured endpoint and signed per Standard Webhooks "
                "(https://www.standardwebhooks.com/); a NATS sink publishes to JetStream. Every "
                "event's `dataschema` names the JSON Schema of its `data`."
            ),
        },
        "defaultContentType": "application/cloudevents+json",
        "servers": {
            "receiver": {
                "host": "receiver.example.com",
                "protocol": "https",
                "description": "your webhook endpoint: the bridge POSTs to the url of each [[sinks.webhook]]",
                "security": [{"$ref": "#/components/securitySchemes/standardWebhooks"}],
            },
            "jetstream": {
                "host": "127.0.0.1:4222",
                "protocol": "nats",
                "description": "the servers of a [[sinks.nats]]",
            },
        },
        "channels": {
            "webhook": {
                "address": None,
                "title": "Webhook endpoint",
                "description": (
                    "One POST per event (mode = structured or binary) or per batch (mode = batch). "
                    "Answer 2xx once handled; anything else is retried with the same webhook-id."
                ),
                "servers": [{"$ref": "#/servers/receiver"}],
                "messages": webhook_messages,
            },
            "jetstream": {
                "address": "events.{vendor}.{type}",
                "title": "JetStream subjects",
                "description": (
                    "The default subject template; the sink's `subject` setting may differ. "
                    "{type} spans several tokens (call.started), so subscribe with > or *."
                ),
                "servers": [{"$ref": "#/servers/jetstream"}],
                "parameters": {
                    "vendor": {
                        "description": "data.vendor (`_` when the event has none)",
                        "examples": ["uptivity", "anywherenow", "encore"],
                    },
                    "type": {"description": "the CloudEvent type, its dots kept as subject tokens"},
                },
                "messages": nats_messages,
            },
        },
        "operations": {
            "receiveStructured": {
                "action": "send",
                "title": "Structured mode",
                "summary": "mode = structured (default): the whole CloudEvent as the JSON body",
                "channel": {"$ref": "#/channels/webhook"},
                "messages": structured,
                "bindings": {"http": {"method": "POST", "bindingVersion": "0.3.0"}},
            },
            "receiveBinary": {
                "action": "send",
                "title": "Binary mode",
                "summary": "mode = binary: attributes in ce-* headers, data as the JSON body",
                "channel": {"$ref": "#/channels/webhook"},
                "messages": binary,
                "bindings": {"http": {"method": "POST", "bindingVersion": "0.3.0"}},
            },
            "receiveBatch": {
                "action": "send",
                "title": "Batch mode",
                "summary": "mode = batch: a JSON array of structured CloudEvents",
                "channel": {"$ref": "#/channels/webhook"},
                "messages": [{"$ref": "#/channels/webhook/messages/batch"}],
                "bindings": {"http": {"method": "POST", "bindingVersion": "0.3.0"}},
            },
            "publishJetStream": {
                "action": "send",
                "title": "JetStream publish",
                "summary": "one message per event, Nats-Msg-Id = event id, acknowledged by the stream",
                "channel": {"$ref": "#/channels/jetstream"},
                "messages": nats,
            },
        },
        "components": {
            "schemas": schemas,
            "messages": messages,
            "securitySchemes": {
                "standardWebhooks": {
                    "type": "httpApiKey",
                    "name": "webhook-signature",
                    "in": "header",
                    "description": (
                        "Standard Webhooks HMAC-SHA256 over `webhook-id.webhook-timestamp.body` with the "
                        "endpoint's secret (whsec_...); verify before parsing"
                    ),
                }
            },
        },
    }
