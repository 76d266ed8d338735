"""Settings of ``[[sinks.webhook]]`` (declared once; see config/bridge.example.toml)."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from standardwebhooks import Webhook

from bridge.netutil import redact_url
from bridge.settings import Validator, setting, settings
from bridge.shaping import ShapeSettings
from bridge.sinks.webhook.controls import EndpointControlSettings
from bridge.sinks.webhook.scheduler import DEFAULT_SCHEDULE
from bridge.sinks.webhook.wire import MODES
from bridge.tls import TlsSettings

# The secret printed in the README and config/bridge.example.toml: anyone can forge
# webhooks signed with it, so it is accepted only for a loopback URL (the demo).
DEMO_SECRET = "whsec_ZGVtby1zZWNyZXQtZm9yLXRoZS1ldmVudC1icmlkZ2U="


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@settings
class WebhookSettings(TlsSettings, EndpointControlSettings):  # controls: rate limit, retry policy, auth…
    name: str = setting(doc="unique name of this sink")
    url: str = setting(doc="http:// or https:// URL to POST to; credentials in it are secrets")
    secrets: tuple[str, ...] = setting(
        (), secret=True, doc='Standard Webhooks signing secrets, "whsec_" + base64 (several while rotating)'
    )
    mode: str = setting("structured", choices=MODES, doc="structured, binary (ce-* headers) or batch")
    types: tuple[str, ...] = setting(("*",), doc="event type globs to deliver")
    sources: tuple[str, ...] = setting(("*",), doc="source name globs to deliver")
    headers: dict[str, str] = setting(
        secret=True, factory=dict, doc="static extra headers (values are secrets in logs)"
    )
    timeout: float = setting(10.0, min=0.01, doc="total deadline of one request, response included (s)")
    max_in_flight: int = setting(
        4, min=1, max=256, aliases=("max_concurrency",), doc="concurrent requests to the endpoint"
    )
    retry_schedule: tuple[float, ...] = setting(
        DEFAULT_SCHEDULE, min=0.0, doc="seconds before each retry (full jitter); then dead-lettered"
    )
    max_response_bytes: int = setting(4096, min=0, doc="response bytes read (kept as the error excerpt)")
    batch_max_events: int = setting(100, min=1, max=10_000, doc="batch mode: most events per request")
    batch_max_age: float = setting(0.2, min=0.0, doc="batch mode: longest wait for a batch to fill (s)")
    breaker_threshold: int = setting(5, min=1, doc="consecutive failures that open the circuit breaker")
    reconnect_min: float = setting(
        5.0, min=0.01, aliases=("breaker_cooldown",), doc="first wait before a probe of an open breaker (s)"
    )
    reconnect_max: float = setting(
        300.0, min=0.01, aliases=("breaker_max_cooldown",), doc="longest wait between probes (s)"
    )
    shape: ShapeSettings = setting(factory=ShapeSettings, doc="per-sink shaping of data (bridge.shaping)")

    def validate(self, v: Validator) -> None:
        self.validate_controls(v)
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise v.error("url", f"must be an http:// or https:// URL, got {redact_url(self.url)!r}")
        secrets = v.table.ctx.secrets
        if parts.password:
            secrets.add(parts.password)
        for value in self.headers.values():
            secrets.add(value)
        for i, secret in enumerate(self.secrets):
            secrets.add(secret)
            if not secret.startswith("whsec_"):
                raise v.error(
                    f"secrets[{i}]",
                    "must start with 'whsec_' (Standard Webhooks secret, base64 after the prefix)",
                )
            try:
                Webhook(secret)
            except Exception:
                raise v.error(f"secrets[{i}]", "is not valid base64 after 'whsec_'") from None
        if not self.retry_schedule:
            raise v.error("retry_schedule", "must be a non-empty list of seconds, e.g. [5, 30, 120, 600]")
        if self.reconnect_max < self.reconnect_min:
            raise v.error("reconnect_max", f"must be at least reconnect_min ({self.reconnect_min})")
        loopback = is_loopback(parts.hostname)
        if DEMO_SECRET in self.secrets and not loopback:
            raise v.error(
                "secrets",
                "is the well-known demo secret from the README; anyone can forge it. Generate your own: "
                "python -c \"import base64,os; print('whsec_'+base64.b64encode(os.urandom(24)).decode())\"",
            )
        if not self.secrets:
            v.warn("secrets", "none set: requests are not signed and receivers cannot tell forgeries")
        if parts.scheme == "http" and not loopback:
            v.warn(
                "url",
                f"plain http:// to {parts.hostname}: events (call metadata) and signatures travel "
                "unencrypted; use https://",
            )
        if parts.scheme == "https" and not self.verify_tls:
            v.warn("verify_tls", "is false: anyone on the path can impersonate the receiver; use ca_file")
