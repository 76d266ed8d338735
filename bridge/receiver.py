"""For downstream Python apps: verify an event-bridge webhook and parse its events.

    from bridge.receiver import WebhookVerifier, VerificationError

    verifier = WebhookVerifier(["whsec_..."])           # several during rotation
    events = verifier.verify(body_bytes, request_headers)  # list of CloudEvent dicts

Works for all three body modes (structured, binary, batch). Signatures are checked
with the Standard Webhooks reference library, including the timestamp tolerance that
defeats replays. Deduplicate on ``event["id"]``: retries and replays repeat it.

:func:`receiver_app` wraps this as a tiny ASGI app (used by ``event-bridge receive``
and by the demo) that answers 204, or 401 for a bad signature, 400 for a bad body.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import unquote

import trio
from standardwebhooks import Webhook, WebhookVerificationError

from bridge.asgi import Disconnected, lifespan, read_body, respond

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"


class VerificationError(Exception):
    """The signature, timestamp or body is not acceptable; answer 4xx and keep the body."""


class WebhookVerifier:
    def __init__(self, secrets: str | Sequence[str]) -> None:
        if isinstance(secrets, str):
            secrets = [secrets]
        if not secrets:
            raise ValueError("at least one whsec_ secret is needed")
        self._hooks = [Webhook(secret) for secret in secrets]

    def verify_signature(self, body: bytes, headers: Mapping[str, str]) -> None:
        lowered = {k.lower(): v for k, v in headers.items()}
        last: Exception | None = None
        for hook in self._hooks:
            try:
                hook.verify(body, lowered, json_parse=False)
                return
            except WebhookVerificationError as exc:
                last = exc
        raise VerificationError(f"signature check failed: {last}")

    def verify(self, body: bytes, headers: Mapping[str, str]) -> list[dict[str, Any]]:
        """Check the signature, then return the CloudEvents the body carries."""
        self.verify_signature(body, headers)
        return parse_events(body, headers)


def parse_events(body: bytes, headers: Mapping[str, str]) -> list[dict[str, Any]]:
    lowered = {k.lower(): v for k, v in headers.items()}
    content_type = lowered.get("content-type", "").split(";")[0].strip().lower()
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise VerificationError(f"body is not JSON: {exc}") from None
    if content_type == BATCH:
        if not isinstance(payload, list):
            raise VerificationError("batch body is not a JSON array")
        return payload
    if content_type == STRUCTURED:
        if not isinstance(payload, dict):
            raise VerificationError("structured body is not a JSON object")
        return [payload]
    if "ce-specversion" in lowered:  # binary mode
        event = {k[3:]: unquote(v) for k, v in lowered.items() if k.startswith("ce-")}
        event["datacontenttype"] = content_type or "application/json"
        event["data"] = payload
        return [event]
    raise VerificationError(f"not a CloudEvents request (content-type {content_type!r})")


def receiver_app(
    verifier: WebhookVerifier, on_events: Callable[[list[dict[str, Any]], dict[str, str]], Any]
) -> Any:
    """An ASGI app that verifies each POST and hands its events to ``on_events``."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        try:
            body = await read_body(receive)
        except Disconnected:
            return  # the sender went away mid-request: nothing was received
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        status, answer = 204, b""
        try:
            on_events(verifier.verify(body, headers), headers)
        except VerificationError as exc:
            status, answer = (401 if "signature" in str(exc) else 400), str(exc).encode()
        await respond(send, status, answer)

    return app


def print_events(events: list[dict[str, Any]], headers: dict[str, str]) -> None:
    for event in events:
        print(
            f"webhook received  ✔ signature  {event.get('type', '?'):<20} subject={event.get('subject', '-'):<12} "
            f"id={event.get('id')}  webhook-id={headers.get('webhook-id')}",
            flush=True,
        )


async def serve(port: int, host: str, secrets: Sequence[str]) -> None:
    from bridge.asgi import serve_asgi

    await serve_asgi(receiver_app(WebhookVerifier(secrets), print_events), host, port)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument(
        "--secret", action="append", required=True, help="whsec_… secret (repeat during rotation)"
    )


def cmd_receive(args: argparse.Namespace) -> int:
    print(f"listening on http://{args.host}:{args.port}/ (Ctrl-C to stop)", file=sys.stderr)
    try:
        trio.run(serve, args.port, args.host, args.secret)
    except KeyboardInterrupt:
        pass
    return 0
