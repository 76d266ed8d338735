"""For downstream Python apps: verify an event-bridge webhook and parse its events.

    from bridge.receiver import WebhookVerifier, VerificationError

    verifier = WebhookVerifier(["whsec_..."])           # several during rotation
    events = verifier.verify(body_bytes, request_headers)  # list of CloudEvent dicts

Works for all three body modes (structured, binary, batch). Signatures are checked with
the Standard Webhooks reference library over ``webhook-id.webhook-timestamp.body``; that
is all a signature covers. The timestamp tolerance (5 minutes) only bounds how long a
captured request stays valid: within it a replay verifies again. What defeats replays is
deduplicating on the id (``event["id"]``, which retries and replays repeat). In binary
mode the ``ce-*`` headers are outside the signature, so :meth:`WebhookVerifier.verify`
binds ``ce-id`` to the signed ``webhook-id`` and refuses a request where they differ; the
other ``ce-*`` attributes stay unauthenticated (use structured or batch mode if that
matters).

Every refusal is a :class:`bridge.errors.VerificationError` with a one-line reason and
the HTTP status to answer in ``exc.http_status``: :class:`SignatureError` 401,
:class:`BodyError` 400, :class:`BodyTooLarge` 413.

:func:`receiver_app` wraps this as a tiny ASGI app (used by ``event-bridge receive`` and
by the demo) that answers 204, or that status with the reason.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import re
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import trio
from standardwebhooks import Webhook, WebhookVerificationError

from bridge.asgi import BodyTooLarge as _AsgiBodyTooLarge
from bridge.asgi import Disconnected, lifespan, read_body, respond
from bridge.errors import BodyError, SignatureError, VerificationError
from bridge.logs import printable

__all__ = [
    "DEFAULT_BODY_TIMEOUT",
    "DEFAULT_MAX_BODY",
    "SECRET_ENV",
    "BodyError",
    "BodyTooLarge",
    "SignatureError",
    "VerificationError",
    "WebhookVerifier",
    "is_operational",
    "parse_events",
    "receiver_app",
]

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
DEFAULT_MAX_BODY = 1024 * 1024
DEFAULT_BODY_TIMEOUT = 30.0
SECRET_ENV = "EVENT_BRIDGE_WEBHOOK_SECRET"
_REQUIRED = ("specversion", "id", "source", "type")  # CloudEvents 1.0 required attributes
_SIGNATURE_ENTRY = re.compile(r"v1[a-z]*,[A-Za-z0-9+/]+={0,2}")
# Headers a forged duplicate could make ambiguous (which copy was checked?).
_SINGLE = ("webhook-id", "webhook-timestamp", "webhook-signature", "content-type")


class BodyTooLarge(BodyError):
    """The body is larger than the receiver's ``max_body``: answer 413."""

    http_status = 413


class WebhookVerifier:
    def __init__(self, secrets: str | Sequence[str], *, max_body: int = DEFAULT_MAX_BODY) -> None:
        if isinstance(secrets, str):
            secrets = [secrets]
        if not secrets:
            raise ValueError("at least one whsec_ secret is needed")
        self._hooks = [Webhook(secret) for secret in secrets]
        self.max_body = max_body

    def verify_signature(self, body: bytes, headers: Mapping[str, str]) -> None:
        """Raise SignatureError unless a configured secret signed id.timestamp.body."""
        if len(body) > self.max_body:
            raise BodyTooLarge(f"body of {len(body)} bytes is over the limit of {self.max_body}")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BodyError(f"body is not UTF-8 (byte {exc.start})") from None
        lowered = {k.lower(): v for k, v in headers.items()}
        missing = [h for h in ("webhook-id", "webhook-timestamp", "webhook-signature") if not lowered.get(h)]
        if missing:
            raise SignatureError(f"missing header(s): {', '.join(missing)}")
        if not lowered["webhook-timestamp"].isascii() or not lowered["webhook-timestamp"].isdigit():
            raise SignatureError("webhook-timestamp is not integer Unix seconds")
        # Keep the well-formed entries only: the library gives up on the first bad one,
        # and the spec lets a sender add entries of other versions.
        entries = [e for e in lowered["webhook-signature"].split(" ") if _SIGNATURE_ENTRY.fullmatch(e)]
        if not entries:
            raise SignatureError("webhook-signature has no well-formed v1,<base64> entry")
        lowered["webhook-signature"] = " ".join(entries)
        last = "no matching signature"
        for hook in self._hooks:
            try:
                hook.verify(text, lowered, json_parse=False)
                return
            except WebhookVerificationError as exc:
                last = str(exc)
            except ValueError:  # binascii.Error and friends: a malformed entry
                last = "malformed webhook-signature entry"
        raise SignatureError(f"signature check failed: {last}")

    def verify(self, body: bytes, headers: Mapping[str, str]) -> list[dict[str, Any]]:
        """Check the signature, then return the CloudEvents the body carries."""
        self.verify_signature(body, headers)
        events = parse_events(body, headers)
        lowered = {k.lower(): v for k, v in headers.items()}
        binary = _content_type(lowered) not in (STRUCTURED, BATCH)
        if binary and events[0]["id"] != lowered["webhook-id"]:  # ce-id is not signed: bind it
            raise SignatureError("ce-id differs from the signed webhook-id")
        return events


def _content_type(lowered: Mapping[str, str]) -> str:
    return lowered.get("content-type", "").split(";")[0].strip().lower()


def _checked(event: Any, where: str) -> dict[str, Any]:
    if not isinstance(event, dict):
        raise BodyError(f"{where} is not a JSON object")
    for attribute in _REQUIRED:
        if not isinstance(event.get(attribute), str) or not event[attribute]:
            raise BodyError(f"{where} is not a CloudEvent: no {attribute!r} string")
    return event


def parse_events(body: bytes, headers: Mapping[str, str]) -> list[dict[str, Any]]:
    """The CloudEvents of a request (any of the three modes), or BodyError."""
    lowered = {k.lower(): v for k, v in headers.items()}
    content_type = _content_type(lowered)
    try:
        payload = json.loads(body)
    except UnicodeDecodeError as exc:
        raise BodyError(f"body is not UTF-8 (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise BodyError(f"body is not JSON: {exc.msg} at byte {exc.pos}") from None
    except (ValueError, RecursionError) as exc:  # over-long integers, absurd nesting
        raise BodyError(f"body is not usable JSON: {type(exc).__name__}") from None
    if content_type == BATCH:
        if not isinstance(payload, list):
            raise BodyError("batch body is not a JSON array")
        return [_checked(event, f"batch item {i}") for i, event in enumerate(payload)]
    if content_type == STRUCTURED:
        return [_checked(payload, "structured body")]
    if "ce-specversion" in lowered:  # binary mode
        event: dict[str, Any] = {k[3:]: unquote(v) for k, v in lowered.items() if k.startswith("ce-")}
        event["datacontenttype"] = content_type or "application/json"
        event["data"] = payload
        return [_checked(event, "binary-mode request")]
    raise BodyError(f"not a CloudEvents request (content-type {printable(content_type)[:80]!r})")


def receiver_app(
    verifier: WebhookVerifier,
    on_events: Callable[[list[dict[str, Any]], dict[str, str]], Any],
    *,
    body_timeout: float = DEFAULT_BODY_TIMEOUT,
) -> Any:
    """An ASGI app that verifies each POST and hands its events to ``on_events``.

    The body is read up to ``verifier.max_body`` (413 beyond, before reading it all when
    content-length says so) and within ``body_timeout`` seconds (408 beyond: a sender
    dripping bytes holds no task for long); every refusal is one line with its 4xx status.
    """

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        if scope.get("method") != "POST":
            await respond(send, 405, b"only POST is accepted\n", headers={"allow": "POST"})
            return
        headers: dict[str, str] = {}
        repeated = ""
        for raw_key, raw_value in scope["headers"]:
            key = raw_key.decode("latin-1").lower()
            if key in headers and (key in _SINGLE or key.startswith("ce-")):
                repeated = key
            headers[key] = raw_value.decode("latin-1")
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > verifier.max_body:
            await respond(send, 413, f"body over the limit of {verifier.max_body} bytes\n".encode())
            return
        body = None
        try:
            with trio.move_on_after(body_timeout):
                body = await read_body(receive, limit=verifier.max_body)
        except Disconnected:
            return  # the sender went away mid-request: nothing was received
        except _AsgiBodyTooLarge:
            await respond(send, 413, f"body over the limit of {verifier.max_body} bytes\n".encode())
            return
        if body is None:
            await respond(send, 408, f"body not complete within {body_timeout:g} s\n".encode())
            return
        status, answer = 204, b""
        try:
            if repeated:
                raise SignatureError(f"header {repeated} given more than once")
            on_events(verifier.verify(body, headers), headers)
        except VerificationError as exc:
            status, answer = exc.http_status, f"{exc}\n".encode()
        await respond(send, status, answer)

    return app


def event_line(event: Mapping[str, Any], headers: Mapping[str, str]) -> str:
    """One printed line per event; peer strings escaped so none can forge a line."""
    kind, subject = printable(event.get("type", "?")), printable(event.get("subject", "-"))
    if is_operational(event):  # the bridge's own operational event
        return operational_line(event, headers)
    return (
        f"webhook received  ✔ signature  {kind:<20} subject={subject:<12} "
        f"id={printable(event.get('id'))}  webhook-id={printable(headers.get('webhook-id'))}"
    )


# The data fields worth a glance, per operational event (bridge.operational lists them all).
_NOTICE_FIELDS = (
    "reason",
    "failures",
    "status",
    "down_seconds",
    "attempts",
    "event_id",
    "suppressed",
    "error",
)


def is_operational(event: Mapping[str, Any]) -> bool:
    """True for the bridge's own events (``bridge.sink.failing``…), not a recorder's."""
    return str(event.get("type", "")).startswith("bridge.")


def operational_line(event: Mapping[str, Any], headers: Mapping[str, str]) -> str:
    """``bridge.*`` events stand out: what happened to which sink or source, and why."""
    raw = event.get("data")
    data: Mapping[str, Any] = raw if isinstance(raw, dict) else {}
    who = data.get("sink") or data.get("source") or event.get("subject") or "-"
    details = " ".join(
        f"{k}={printable(str(data[k])[:200])}" for k in _NOTICE_FIELDS if data.get(k) not in (None, "")
    )
    return (
        f"BRIDGE NOTICE     ✔ signature  {printable(event.get('type', '?')):<30} {printable(who)}  "
        f"{details}  "
        f"id={printable(event.get('id'))}"
    )


def print_events(events: list[dict[str, Any]], headers: dict[str, str]) -> None:
    for event in events:
        print(event_line(event, headers), flush=True)


async def serve(
    port: int,
    host: str,
    secrets: Sequence[str],
    max_body: int = DEFAULT_MAX_BODY,
    body_timeout: float = DEFAULT_BODY_TIMEOUT,
) -> None:
    from bridge.asgi import serve_asgi

    verifier = WebhookVerifier(secrets, max_body=max_body)
    stop = trio.Event()
    async with trio.open_nursery() as nursery:

        async def stop_on_signal() -> None:  # Ctrl-C / SIGTERM: a clean stop, no traceback
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    stop.set()
                    return

        nursery.start_soon(stop_on_signal)
        await serve_asgi(
            receiver_app(verifier, print_events, body_timeout=body_timeout), host, port, shutdown=stop
        )
        nursery.cancel_scope.cancel()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument(
        "--secret",
        action="append",
        default=[],
        help="whsec_… secret (repeat during rotation); visible to every local user in the "
        f"process list: prefer --secret-file or ${SECRET_ENV}",
    )
    parser.add_argument(
        "--secret-file",
        action="append",
        default=[],
        metavar="PATH",
        help="file with whsec_… secrets, one per line (# comments allowed)",
    )
    parser.add_argument(
        "--max-body",
        type=int,
        default=DEFAULT_MAX_BODY,
        metavar="BYTES",
        help=f"refuse bodies larger than this with 413 (default {DEFAULT_MAX_BODY})",
    )
    parser.add_argument(
        "--body-timeout",
        type=float,
        default=DEFAULT_BODY_TIMEOUT,
        metavar="SECONDS",
        help=f"answer 408 to a body not complete within this time (default {DEFAULT_BODY_TIMEOUT:g})",
    )


class _UsageError(Exception):
    pass


def _secrets(args: argparse.Namespace) -> list[str]:
    """--secret, then --secret-file, then $EVENT_BRIDGE_WEBHOOK_SECRET (whitespace-separated)."""
    found: list[tuple[str, str]] = [("--secret", s) for s in args.secret]
    for name in args.secret_file:
        try:
            text = Path(name).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise _UsageError(f"--secret-file {name}: cannot read: {reason}") from None
        for number, line in enumerate(text.splitlines(), 1):
            found += [(f"{name} line {number}", s) for s in line.split("#", 1)[0].split()]
    found += [(f"${SECRET_ENV}", s) for s in os.environ.get(SECRET_ENV, "").split()]
    if not found:
        raise _UsageError(f"no secret: give --secret-file PATH, ${SECRET_ENV} or --secret")
    for where, secret in found:
        try:
            if not secret.startswith("whsec_"):
                raise ValueError
            base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except ValueError:
            raise _UsageError(f"{where}: not a whsec_<base64> secret") from None
    return [secret for _, secret in found]


def cmd_receive(args: argparse.Namespace) -> int:
    try:
        secrets = _secrets(args)
    except _UsageError as exc:
        print(f"event-bridge receive: {exc}", file=sys.stderr)
        return 2
    if args.max_body < 1 or not args.body_timeout > 0:
        print("event-bridge receive: --max-body and --body-timeout must be positive", file=sys.stderr)
        return 2
    if isinstance(sys.stdout, io.TextIOWrapper):  # a peer's text must not crash a print
        sys.stdout.reconfigure(errors="backslashreplace")
    print(f"listening on http://{args.host}:{args.port}/ (Ctrl-C to stop)", file=sys.stderr)
    try:
        trio.run(serve, args.port, args.host, secrets, args.max_body, args.body_timeout)
    except KeyboardInterrupt:
        pass
    except (OSError, BaseExceptionGroup) as exc:  # hypercorn's bind error comes out of a nursery
        cause = _os_error(exc)
        if cause is None:
            if isinstance(exc, BaseExceptionGroup) and exc.split(KeyboardInterrupt)[1] is None:
                return 0  # Ctrl-C before the signal handler was in place
            raise
        print(
            f"event-bridge receive: cannot listen on {args.host}:{args.port}: {cause.strerror}",
            file=sys.stderr,
        )
        return 3
    return 0


def _os_error(exc: BaseException) -> OSError | None:
    if isinstance(exc, OSError):
        return exc
    for inner in exc.exceptions if isinstance(exc, BaseExceptionGroup) else ():
        found = _os_error(inner)
        if found is not None:
            return found
    return None
