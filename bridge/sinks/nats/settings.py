"""Settings of ``[[sinks.nats]]``, declared once."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from urllib.parse import urlsplit

from bridge.settings import Validator, setting, settings
from bridge.shaping import ShapeSettings
from bridge.sinks.nats.subjects import PLACEHOLDERS, template_problem
from bridge.tls import TlsSettings

__all__ = ["NatsSettings"]

_SERVER = re.compile(r"^(nats|tls)://[^/\s]+$")
_STREAM = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _loopback(server: str) -> bool:
    host = urlsplit(server).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@settings
class NatsSettings(TlsSettings):
    name: str = setting(doc="unique name of this sink")
    servers: tuple[str, ...] = setting(
        ("nats://127.0.0.1:4222",), doc="nats://host:port or tls://host:port URLs (no credentials in them)"
    )
    subject: str = setting(
        "events.{vendor}.{type}", doc=f"subject template; placeholders {', '.join(PLACEHOLDERS)}"
    )
    stream: str | None = setting(None, doc="the JetStream stream expected to store the subjects")
    create_stream: bool = setting(False, doc="create the stream at start, or bring it to these settings")
    stream_subjects: tuple[str, ...] | None = setting(
        None, doc="subjects of a created stream (default: everything the template can produce)"
    )
    duplicate_window: float = setting(120.0, min=1.0, doc="seconds JetStream drops a repeated Nats-Msg-Id")
    max_age: float = setting(0.0, min=0.0, doc="stream retention in seconds (0: unlimited)")
    max_bytes: int = setting(0, min=0, doc="stream size limit in bytes (0: unlimited)")
    replicas: int = setting(1, min=1, max=5, doc="stream replicas in a cluster")
    storage: str = setting("file", choices=("file", "memory"), doc="stream storage")
    user: str | None = setting(None, doc="user name (with password)")
    password: str | None = setting(None, secret=True, doc="password of user")
    token: str | None = setting(None, secret=True, doc="authentication token")
    nkey_seed_file: Path | None = setting(None, doc="NKey seed file (needs the nkeys package)")
    creds_file: Path | None = setting(None, doc="JWT credentials file (needs the nkeys package)")
    tls: bool = setting(False, doc="use TLS even with nats:// servers (tls:// servers always do)")
    connect_timeout: float = setting(5.0, min=0.1, doc="deadline of one connection attempt (s)")
    reconnect_wait: float = setting(1.0, min=0.01, doc="nats-py's pause between its reconnect attempts (s)")
    timeout: float = setting(
        5.0, min=0.1, aliases=("publish_timeout",), doc="deadline of one publish acknowledgement (s)"
    )
    max_in_flight: int = setting(
        256, min=1, max=10_000, aliases=("max_inflight",), doc="publishes awaiting acknowledgement at once"
    )
    reconnect_min: float = setting(
        0.2, min=0.01, aliases=("retry_min",), doc="first backoff after a failed start or publish (s)"
    )
    reconnect_max: float = setting(10.0, min=0.01, aliases=("retry_max",), doc="longest backoff (s)")
    shape: ShapeSettings = setting(factory=ShapeSettings, doc="per-sink shaping of data (bridge.shaping)")

    @property
    def uses_tls(self) -> bool:
        return self.tls or self.ca_file is not None or any(s.startswith("tls://") for s in self.servers)

    def validate(self, v: Validator) -> None:
        if not self.servers:
            raise v.error("servers", 'must list at least one server, e.g. ["nats://127.0.0.1:4222"]')
        for i, server in enumerate(self.servers):
            if not _SERVER.match(server):
                raise v.error(f"servers[{i}]", f"{server!r} is not a nats://host:port or tls://host:port URL")
            if "@" in server:
                raise v.error(f"servers[{i}]", "put credentials in user/password or token, not in the URL")
        problem = template_problem(self.subject)
        if problem:
            raise v.error("subject", problem)
        if self.stream is not None and not _STREAM.fullmatch(self.stream):
            raise v.error("stream", f"{self.stream!r} is not a valid stream name (letters, digits, _ -)")
        if self.create_stream and self.stream is None:
            raise v.error("create_stream", 'needs stream = "EVENTS" (the stream to create or verify)')
        methods = [
            key
            for key, value in (
                ("user", self.user),
                ("token", self.token),
                ("nkey_seed_file", self.nkey_seed_file),
                ("creds_file", self.creds_file),
            )
            if value
        ]
        if len(methods) > 1:
            raise v.error(methods[1], f"choose one authentication method; {methods[0]} is already set")
        if self.password is not None and self.user is None:
            raise v.error("password", "needs user")
        for key in ("nkey_seed_file", "creds_file", "ca_file", "cert_file", "key_file"):
            path = getattr(self, key)
            if path is not None and not path.is_file():
                raise v.error(key, f"{path} does not exist or is not a file")
        if self.key_file is not None and self.cert_file is None:
            raise v.error("key_file", "needs cert_file (the certificate this key belongs to)")
        if self.nkey_seed_file or self.creds_file:
            try:
                import nkeys  # noqa: F401
            except ImportError:
                raise v.error(
                    methods[0], "needs the 'nkeys' package (pip install 'nats-py[nkeys]')"
                ) from None
        if (self.password or self.token) and not self.uses_tls:
            remote = [s for s in self.servers if not _loopback(s)]
            if remote:
                secret = "token" if self.token else "password"
                v.warn(
                    secret,
                    f"is sent in clear to {remote[0]} (no TLS): use tls:// servers or tls = true "
                    "(with ca_file for a private CA)",
                )
