"""Settings of ``[[sources.anywherenow]]``: every key, its default and its bounds, once."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

from bridge.settings import Validator, setting, settings
from bridge.tls import TlsSettings

DEFAULT_TARGET = "RecordingStateChangedEvent"


@settings
class AnywhereNowSettings(TlsSettings):
    name: str = setting(doc="unique name of this source (logs, metrics, CloudEvent source)")
    hub_url: str = setting(doc="SignalR hub URL (https:// or wss://; http:// and ws:// for tests)")
    rest_url: str | None = setting(
        None, doc="base of the REST Recording API (before /api/v2/recording); unset: no reconciliation"
    )
    rest_api: str = setting("auto", choices=("auto", "v2", "v1"), doc="REST API version (auto: v2, then v1)")
    ucc_names: tuple[str, ...] = setting((), doc="UCCs whose recording capabilities are checked at start")
    target: str = setting(DEFAULT_TARGET, doc="hub method to listen to (matched case-insensitively)")
    access_token: str | None = setting(None, secret=True, doc='sent as "Authorization: Bearer <token>"')
    headers: dict[str, str] = setting(
        factory=dict, secret=True, doc="extra HTTP headers (values are secrets)"
    )
    connect_timeout: float = setting(
        10.0, min=0.1, max=300.0, doc="negotiate, WebSocket upgrade and SignalR handshake, each (seconds)"
    )
    timeout: float = setting(
        10.0,
        min=0.1,
        max=300.0,
        aliases=("request_timeout",),
        doc="total deadline of one REST or negotiate request, body included (seconds)",
    )
    ping_interval: float = setting(15.0, min=0.05, max=300.0, doc="the bridge pings the hub this often")
    server_timeout: float = setting(
        30.0, min=0.1, max=3600.0, doc="nothing received for this long = dead connection, rebuilt"
    )
    reconnect_min: float = setting(
        0.5, min=0.001, max=60.0, aliases=("backoff_base",), doc="first reconnect/retry delay (seconds)"
    )
    reconnect_max: float = setting(
        30.0, min=0.01, max=3600.0, aliases=("backoff_cap",), doc="longest reconnect/retry delay (seconds)"
    )
    queue_size: int = setting(
        1000, min=1, max=1_000_000, doc="hub messages buffered before the SignalR thread waits"
    )
    forget_after: float = setting(
        86400.0, min=60.0, doc="forget a call with no final saving state after this long (seconds)"
    )
    max_calls: int = setting(
        50_000, min=10, max=10_000_000, doc="calls remembered for reconciliation (oldest finished go first)"
    )
    max_in_flight: int = setting(4, min=1, max=64, doc="concurrent REST requests while reconciling")
    max_body_bytes: int = setting(
        1_048_576, min=1024, max=100_000_000, doc="largest REST/negotiate body read, compressed or decoded"
    )
    max_message_bytes: int = setting(
        1_048_576, min=1024, max=100_000_000, doc="largest SignalR message (all frames of it) accepted"
    )
    drain_timeout: float = setting(
        5.0, min=0.1, max=300.0, doc="at shutdown, how long received hub messages may take to commit"
    )

    def validate(self, v: Validator) -> None:
        _check_url(v, "hub_url", self.hub_url, ("https", "http", "wss", "ws"))
        if self.rest_url is not None:
            _check_url(v, "rest_url", self.rest_url, ("https", "http"))
        if self.ca_file is not None and not self.ca_file.is_file():
            raise v.error("ca_file", f"{self.ca_file} does not exist or is not a file")
        if self.server_timeout <= self.ping_interval:
            raise v.error(
                "server_timeout", "must be larger than ping_interval (the hub pings about every 15 s)"
            )
        if self.reconnect_max < self.reconnect_min:
            raise v.error("reconnect_max", "must be at least reconnect_min")
        if not self.target.strip():
            raise v.error("target", "must not be empty")
        if not self.verify_tls:
            v.warn("verify_tls", "is false: any certificate is accepted for the hub and the REST API")

    def request_headers(self) -> dict[str, str]:
        """What the bridge sends to the configured origin (never to a redirect's)."""
        headers = dict(self.headers)
        if self.access_token:
            headers["Authorization"] = f"Bearer {self.access_token}"
        return headers


def _check_url(v: Validator, key: str, value: str, schemes: tuple[str, ...]) -> None:
    try:
        parts = urlsplit(value)
        host = parts.hostname
        password = parts.password
    except ValueError:
        raise v.error(key, "is not a valid URL") from None
    if parts.scheme not in schemes or not host:
        raise v.error(key, f"must be a URL starting with {' or '.join(s + '://' for s in schemes)}")
    # A password or a query value in a configured URL (?access_token=) is a secret:
    # the log redactor learns it, and every display goes through netutil.redact_url.
    secrets = v.table.ctx.secrets
    if password:
        secrets.add(password)
    for _name, item in parse_qsl(parts.query, keep_blank_values=True):
        secrets.add(item)
