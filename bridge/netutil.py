"""Small helpers for talking about network failures without leaking secrets."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def describe(exc: BaseException) -> str:
    """``ConnectError: [SSL: CERTIFICATE_VERIFY_FAILED] …``: the type plus the first cause
    that says something (httpx often wraps the real reason with an empty message)."""
    current: BaseException | None = exc
    seen: set[int] = set()
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        text = str(current).strip()
        if text:
            return f"{type(exc).__name__}: {text}"
        current = current.__cause__ or current.__context__
    return f"{type(exc).__name__}: no detail"


def safe_url(url: str) -> str:
    """The URL without credentials, query or fragment, for logs and errors."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))
