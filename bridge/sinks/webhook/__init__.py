"""``[[sinks.webhook]]``: signed CloudEvents over HTTP (Standard Webhooks), retried,
ordered per subject, one circuit breaker and window per endpoint."""

from __future__ import annotations

from typing import Any

import trio

from bridge.components import SinkKind
from bridge.sinks.webhook.scheduler import DEFAULT_SCHEDULE
from bridge.sinks.webhook.settings import WebhookSettings, is_loopback
from bridge.sinks.webhook.sink import WebhookSink


async def demo_receiver(
    sink: WebhookSink, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED
) -> None:
    """For ``event-bridge demo``: a verifying receiver where a loopback ``url`` points."""
    from urllib.parse import urlsplit

    from bridge.asgi import serve_asgi
    from bridge.receiver import WebhookVerifier, print_events, receiver_app

    parts = urlsplit(sink.url)
    if not is_loopback(parts.hostname) or not sink.settings.secrets:
        task_status.started(0)
        return
    app = receiver_app(WebhookVerifier(list(sink.settings.secrets)), print_events)
    await serve_asgi(app, parts.hostname or "127.0.0.1", parts.port or 80, task_status=task_status)


KIND = SinkKind("webhook", WebhookSettings, WebhookSink, doc=__doc__ or "", demo_receiver=demo_receiver)

__all__ = ["DEFAULT_SCHEDULE", "KIND", "WebhookSettings", "WebhookSink", "demo_receiver"]
