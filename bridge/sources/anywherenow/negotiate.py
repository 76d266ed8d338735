"""SignalR negotiate (``POST <hub>/negotiate?negotiateVersion=1``), redirects included.

A negotiate answer is one of three shapes (SignalR TransportProtocols, Azure SignalR
"client negotiation"): a connection (``connectionId``/``connectionToken`` and the
transports), an ``error``, or a redirect (``url`` plus usually ``accessToken``), which is
how Azure SignalR Service hands clients over to itself. A redirect is followed as the
official clients do, with the one token it gives, and no further:

* The configured ``Authorization`` and extra headers go only to the configured origin
  (scheme, host, port). On another origin only ``Authorization: Bearer <accessToken>``
  from the redirect is sent; without a token, nothing.
* ``https``/``wss`` to ``http``/``ws`` is refused (a downgrade would expose the token).
* At most :data:`MAX_REDIRECTS` hops.
* The returned token is a secret: it is never logged, and URLs are shown only through
  :func:`bridge.netutil.redact_url`.
Every request has a total deadline and a capped body (:mod:`.bounded`).
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx

from bridge import logs
from bridge.errors import EndpointError
from bridge.netutil import redact_url
from bridge.sources.anywherenow import bounded

MAX_REDIRECTS = 5


class HubConnectError(EndpointError):
    """Negotiate, upgrade or handshake failed; the message says which and why (no secrets)."""


@dataclass
class Negotiated:
    ws_url: str  # has the connection token in its query: show it only redacted
    headers: dict[str, str]
    connection_id: str
    redirects: int = 0
    secrets: list[str] = field(default_factory=list)  # tokens learnt on the way


class IssuedTokens:
    """Tokens negotiate redirects handed over: secrets from then on, the log redactor's
    included (the last few; they belong to the connections of the moment)."""

    def __init__(self, keep: int = 4) -> None:
        self._tokens: deque[str] = deque(maxlen=keep)

    def learn(self, tokens: list[str]) -> None:
        for token in tokens:
            if token in self._tokens or len(token) < 4:
                continue
            full = len(self._tokens) == self._tokens.maxlen
            dropped = self._tokens[0] if full else None
            self._tokens.append(token)
            known = set(logs.redactor.secrets)
            if dropped is not None:
                known.discard(dropped)
            logs.redactor.update(known | {token})

    def scrub(self, text: str) -> str:
        for token in self._tokens:
            text = text.replace(token, "[REDACTED]")
        return text


def websocket_url(url: str) -> str:
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    return urlunsplit(parts._replace(scheme=scheme))


def http_url(url: str) -> str:
    parts = urlsplit(url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return urlunsplit(parts._replace(scheme=scheme))


def origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(http_url(url))
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port


def with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in params]
    query.extend(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


def _redirect_target(current: str, location: object) -> str:
    if not isinstance(location, str) or not location.strip():
        raise HubConnectError("negotiate redirect has no usable url")
    try:
        target = http_url(location.strip())
        parts = urlsplit(target)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise HubConnectError("negotiate redirect url is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HubConnectError(f"negotiate redirect to {redact_url(target)} is not an http(s)/ws(s) URL")
    if urlsplit(http_url(current)).scheme == "https" and parts.scheme == "http":
        raise HubConnectError(
            f"negotiate redirect from https to {redact_url(target)} refused (a downgrade to plain http)"
        )
    return target


@dataclass(frozen=True)
class Answer:
    """A negotiate answer: a redirect (``redirect``, ``token``) or a connection."""

    redirect: str | None = None
    token: str | None = None
    ident: str = ""  # what goes in the WebSocket URL's ``id``
    connection_id: str = ""


def read_answer(raw: bytes, where: str = "negotiate") -> Answer:
    """Read one negotiate answer (pure; the conformance fixtures test it)."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise HubConnectError(
            f"negotiate at {where} answered something that is not JSON: {bounded.excerpt(raw)}"
        ) from None
    if not isinstance(body, dict):
        raise HubConnectError(f"negotiate at {where} answered JSON that is not an object")
    if body.get("error"):
        raise HubConnectError(f"negotiate refused: {bounded.excerpt(str(body['error']), 200, mask=False)}")
    if body.get("url"):
        token = body.get("accessToken")
        if token is not None and not isinstance(token, str):
            raise HubConnectError("negotiate redirect accessToken is not a string")
        url = body["url"]
        return Answer(redirect=url if isinstance(url, str) else "", token=token or None)
    transports = body.get("availableTransports") or []
    if not isinstance(transports, list):
        transports = []
    websockets = [
        t
        for t in transports
        if isinstance(t, dict)
        and t.get("transport") == "WebSockets"
        and "Text" in (t.get("transferFormats") or [])
    ]
    if not websockets:
        offered = [str(t.get("transport"))[:40] for t in transports[:10] if isinstance(t, dict)]
        raise HubConnectError(
            f"the hub does not offer the WebSockets transport with text frames (offered: {offered})"
        )
    version = body.get("negotiateVersion", 0)
    # negotiate v1: the WebSocket ``id`` is the connectionToken; v0: the connectionId.
    token = body.get("connectionToken") if isinstance(version, int) and version >= 1 else None
    connection_id = body.get("connectionId")
    ident = token or connection_id
    if not isinstance(ident, str) or not ident or len(ident) > 1024:
        raise HubConnectError("negotiate answer has no usable connectionId/connectionToken")
    return Answer(ident=ident, connection_id=str(connection_id or ident)[:128])


async def negotiate(
    client: httpx.AsyncClient,
    hub_url: str,
    headers: dict[str, str],
    *,
    timeout: float,
    max_bytes: int,
) -> Negotiated:
    """Negotiate and return where and how to open the WebSocket, or raise HubConnectError."""
    configured = origin(hub_url)
    url = http_url(hub_url)
    send = dict(headers)
    learnt: list[str] = []
    for hop in range(MAX_REDIRECTS + 1):
        parts = urlsplit(url)
        negotiate_url = urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/negotiate"))
        negotiate_url = with_query(negotiate_url, negotiateVersion="1")
        try:
            answer = await bounded.request(
                client, "POST", negotiate_url, headers=send, timeout=timeout, max_bytes=max_bytes, content=b""
            )
        except EndpointError as exc:
            raise HubConnectError(f"negotiate failed: {exc}", status=exc.status) from None
        where = redact_url(negotiate_url)
        if answer.status != 200:
            hint = " (check access_token / headers)" if answer.status in (401, 403) else ""
            raise HubConnectError(
                f"negotiate answered HTTP {answer.status}{hint} ({where})", status=answer.status
            )
        read = read_answer(answer.body, where)
        if read.redirect is not None:
            if hop == MAX_REDIRECTS:
                break
            url = _redirect_target(url, read.redirect)
            # Never the configured credentials on another origin.
            send = dict(headers) if origin(url) == configured else {}
            if read.token:
                learnt.append(read.token)
                send["Authorization"] = f"Bearer {read.token}"
            continue
        ident, connection_id = read.ident, read.connection_id
        return Negotiated(
            websocket_url(with_query(url, id=ident)),
            send,
            connection_id,
            redirects=hop,
            secrets=learnt,
        )
    raise HubConnectError(f"negotiate redirected more than {MAX_REDIRECTS} times")
