"""Small helpers for talking about network failures without leaking secrets."""

from __future__ import annotations

from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

MASK = "***"


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


def redact_url(url: str) -> str:
    """The one way a URL is shown anywhere (logs, health, errors, check-config).

    Keeps scheme, host, port and path; a user name stays, a password becomes ``***``;
    every query value becomes ``***`` (tokens travel there: ``?access_token=``); the
    fragment goes. Unparseable input is replaced whole.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return MASK
    if ":" in host:
        host = f"[{host}]"
    if port:
        host = f"{host}:{port}"
    if parts.username is not None:
        user = quote(parts.username, safe="")
        host = f"{user}:{MASK}@{host}" if parts.password is not None else f"{user}@{host}"
    query = "&".join(f"{quote(k, safe='')}={MASK}" for k, _ in parse_qsl(parts.query, keep_blank_values=True))
    return urlunsplit((parts.scheme, host, parts.path, query, ""))


safe_url = redact_url  # the older name, kept for callers not yet moved
