"""OAuth 2.0 client credentials (RFC 6749 section 4.4) for a webhook endpoint.

The sink asks ``token_url`` for an access token (``grant_type=client_credentials`` and
``scope``, the client authenticated with HTTP Basic per section 2.3.1, or in the form body
with ``auth_method = "client_secret_post"``), sends it as ``Authorization: Bearer`` (RFC
6750), keeps it until shortly before ``expires_in`` runs out (10 % of its lifetime, at most
60 s, early) and, when the endpoint answers 401 anyway, fetches a new one and tries that
request once more. No token and no secret is ever logged; a refused token request is an
:class:`OAuthError` with one line saying what to fix (the sink shows it in /readyz).

``client_secret`` is a settings string, so ``${credential:...}`` and ``${env:...}`` work.
The token endpoint is reached with the endpoint's own TLS settings and proxy.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from urllib.parse import quote, urlsplit

import httpx
import trio

from bridge.errors import EndpointError
from bridge.netutil import describe, redact_url
from bridge.settings import Validator, setting, settings

MAX_TOKEN_RESPONSE = 64 * 1024
METHODS = ("client_secret_basic", "client_secret_post")


@settings
class OAuth2Settings:
    token_url: str = setting(doc="the authorization server's token endpoint (https://…)")
    client_id: str = setting(doc="client identifier")
    client_secret: str = setting(secret=True, doc="client secret; use ${credential:…}")
    scope: str = setting("", doc="space-separated scopes to ask for (empty: none)")
    auth_method: str = setting(
        "client_secret_basic", choices=METHODS, doc="client_secret_basic (HTTP Basic) or client_secret_post"
    )
    timeout: float = setting(10.0, min=0.01, doc="deadline of one token request (s)")

    def validate(self, v: Validator) -> None:
        parts = urlsplit(self.token_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise v.error(
                "token_url", f"must be an http:// or https:// URL, got {redact_url(self.token_url)!r}"
            )
        v.table.ctx.secrets.add(self.client_secret)
        if parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "::1", "localhost"):
            v.warn(
                "token_url",
                "plain http://: the client secret and the tokens travel unencrypted; use https://",
            )


class OAuthError(EndpointError):
    """The token endpoint refused or failed: the endpoint cannot be called."""


def expiry_margin(lifetime: float) -> float:
    return min(60.0, lifetime * 0.1)


class TokenSource:
    """One endpoint's access token: fetched on demand, cached, refreshed (one at a time)."""

    def __init__(self, settings: OAuth2Settings, *, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock
        self._token: str | None = None
        self._refresh_at = 0.0
        self._lock = trio.Lock()
        self.fetches = 0  # token requests made (tests, stats)

    @property
    def where(self) -> str:
        return f"oauth2 token_url {redact_url(self.settings.token_url)}"

    def sensitive(self) -> list[str]:
        """Values to scrub from any text shown to people (the current token, the secret)."""
        return [v for v in (self._token, self.settings.client_secret) if v]

    def invalidate(self, token: str) -> None:
        """The endpoint refused ``token`` (401): the next :meth:`get` fetches a new one."""
        if self._token == token:
            self._token = None

    async def get(self, client: httpx.AsyncClient) -> str:
        async with self._lock:
            if self._token is None or self.clock() >= self._refresh_at:
                await self._fetch(client)
            assert self._token is not None
            return self._token

    def _request(self) -> tuple[dict[str, str], dict[str, str]]:
        s = self.settings
        form = {"grant_type": "client_credentials"}
        if s.scope:
            form["scope"] = s.scope
        headers = {"accept": "application/json"}
        if s.auth_method == "client_secret_post":
            form["client_id"], form["client_secret"] = s.client_id, s.client_secret
        else:  # RFC 6749 2.3.1: form-urlencode id and secret, then Basic
            pair = f"{quote(s.client_id, safe='')}:{quote(s.client_secret, safe='')}"
            headers["authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        return form, headers

    async def _fetch(self, client: httpx.AsyncClient) -> None:
        form, headers = self._request()
        self.fetches += 1
        try:
            with trio.fail_after(self.settings.timeout):
                async with client.stream("POST", self.settings.token_url, data=form, headers=headers) as r:
                    body = await _read_bounded(r)
                    status = r.status_code
        except trio.TooSlowError:
            raise OAuthError(f"{self.where}: no answer within {self.settings.timeout}s") from None
        except httpx.HTTPError as exc:
            raise OAuthError(f"{self.where}: {self._scrub(describe(exc))}") from None
        self._token, lifetime = self._parse(status, body)
        now = self.clock()
        self._refresh_at = float("inf") if lifetime is None else now + lifetime - expiry_margin(lifetime)

    def _parse(self, status: int, body: bytes) -> tuple[str, float | None]:
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError):
            payload = None
        if status != 200 or not isinstance(payload, dict):
            error = description = ""
            if isinstance(payload, dict):
                error = str(payload.get("error", ""))[:60]
                description = str(payload.get("error_description", ""))[:200]
            hint = (
                "check client_id and client_secret"
                if error in ("invalid_client", "unauthorized_client") or status == 401
                else "check token_url and scope"
            )
            detail = " ".join(p for p in (f"HTTP {status}", error, description) if p)
            raise OAuthError(
                f"{self.where} refused the token request: {self._scrub(detail)}; {hint}", status=status
            )
        token = payload.get("access_token")
        kind = str(payload.get("token_type", "")).lower()
        if not isinstance(token, str) or not token:
            raise OAuthError(f"{self.where}: the answer has no access_token", status=status)
        if kind != "bearer":
            raise OAuthError(f"{self.where}: token_type {kind[:30]!r} is not supported (only Bearer)")
        expires = payload.get("expires_in")
        lifetime = float(expires) if isinstance(expires, int | float) and expires > 0 else None
        if isinstance(expires, str) and expires.isdigit():  # some servers send a string
            lifetime = float(expires)
        return token, lifetime

    def _scrub(self, text: str) -> str:
        for value in self.sensitive():
            if len(value) >= 4:
                text = text.replace(value, "[REDACTED]")
        return text


async def _read_bounded(response: httpx.Response) -> bytes:
    chunks, size = [], 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_TOKEN_RESPONSE:
            break
    return b"".join(chunks)[:MAX_TOKEN_RESPONSE]
