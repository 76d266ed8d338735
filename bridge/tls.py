"""TLS settings and the one way the bridge builds a client TLS context.

Every outbound connection (vendor APIs, webhooks, NATS) takes the same four settings:
``verify_tls`` (on by default), ``ca_file`` (a private CA to trust instead of the
system's), and ``cert_file``/``key_file`` for a client certificate (mTLS). A component's
settings class inherits :class:`TlsSettings` to declare them once.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from bridge.errors import ConfigError
from bridge.settings import setting, settings

__all__ = ["TlsSettings", "client_context"]


@settings
class TlsSettings:
    verify_tls: bool = setting(True, doc="verify the server's certificate and host name (keep it on)")
    ca_file: Path | None = setting(None, doc="PEM bundle of CAs to trust instead of the system's")
    cert_file: Path | None = setting(None, doc="client certificate (PEM) for mutual TLS")
    key_file: Path | None = setting(None, doc="private key of cert_file (PEM); default: inside cert_file")


def client_context(
    verify_tls: bool = True,
    ca_file: Path | str | None = None,
    cert_file: Path | str | None = None,
    key_file: Path | str | None = None,
    *,
    where: str = "tls",
) -> ssl.SSLContext:
    """A client context; unreadable or invalid files are a :class:`ConfigError` naming them."""
    try:
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(where, "ca_file", f"cannot load CA bundle {ca_file}: {_reason(exc)}") from None
    if not verify_tls:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if cert_file:
        try:
            context.load_cert_chain(str(cert_file), str(key_file) if key_file else None)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                where, "cert_file", f"cannot load client certificate {cert_file}: {_reason(exc)}"
            ) from None
    return context


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc) or type(exc).__name__
