"""Outbound authentication: mTLS against a server that requires a client certificate, and
OAuth 2.0 client credentials (RFC 6749 4.4) against a local token endpoint."""

from __future__ import annotations

import base64
import json
import ssl
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

from bridge.asgi import lifespan, read_body, respond, serve_asgi
from tests.integration.endpoint_support import (
    emit,
    events,
    free_port,
    numbers,
    readyz,
    running,
    sink_component,
    sink_table,
    start_source,
    write_config,
)
from tests.support.helpers import capture_logs, wait_for
from tests.support.receivers import Receiver
from tests.support.tls import self_signed


async def serve_mtls(app: Any, cert: Path, key: Path, client_ca: Path, port: int, task_status: Any) -> None:
    """HTTPS that refuses any client without a certificate signed by ``client_ca``."""
    config = HypercornConfig()
    config.bind = [f"127.0.0.1:{port}"]
    config.certfile, config.keyfile = str(cert), str(key)
    config.ca_certs = str(client_ca)
    config.verify_mode = ssl.CERT_REQUIRED
    config.accesslog = None
    await serve(app, config, task_status=task_status)


async def test_mtls_client_certificate_is_presented_and_required(
    tmp_path: Path, nursery, monkeypatch
) -> None:
    server_cert, server_key = self_signed(tmp_path / "tls", "server")
    client_cert, client_key = self_signed(tmp_path / "credentials", "client")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path / "credentials"))  # systemd LoadCredential=
    with_cert, without = Receiver(), Receiver()
    ports = {}
    for name, receiver in (("with-cert", with_cert), ("no-cert", without)):
        ports[name] = free_port()
        await nursery.start(serve_mtls, receiver.app, server_cert, server_key, client_cert, ports[name])
    tls = f'ca_file = "{server_cert}"'
    sinks = sink_table(
        "with-cert",
        f"https://127.0.0.1:{ports['with-cert']}/hook",
        f'{tls}\ncert_file = "{client_cert}"\nkey_file = "${{CREDENTIALS_DIRECTORY}}/{client_key.name}"',
    ) + sink_table("no-cert", f"https://127.0.0.1:{ports['no-cert']}/hook", tls)
    async with running(write_config(tmp_path, sinks, await start_source(nursery))) as bridge:
        await emit(bridge, events(3))
        await wait_for(lambda: len(numbers(with_cert.requests)) == 3)
        await wait_for(lambda: bridge.sinks["no-cert"].health.failed >= 2)
        detail = bridge.sinks["no-cert"].health.detail
    assert numbers(with_cert.requests) == [0, 1, 2]
    assert without.requests == []  # refused during the handshake: no request ever got through
    assert "requires a client certificate (mTLS), set cert_file and key_file" in detail  # in /readyz


class TokenServer:
    """A token endpoint per RFC 6749 4.4 / 2.3.1 (HTTP Basic client authentication)."""

    def __init__(self, client_id: str, client_secret: str, expires_in: int = 3600) -> None:
        self.client_id, self.client_secret, self.expires_in = client_id, client_secret, expires_in
        self.requests: list[dict[str, Any]] = []
        self.valid: set[str] = set()

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        form = {k: v[0] for k, v in parse_qs((await read_body(receive)).decode()).items()}
        self.requests.append({"form": form, "headers": headers})
        ident, _, secret = (
            base64.b64decode(headers.get("authorization", "Basic ")[6:]).decode().partition(":")
        )
        if (unquote(ident), unquote(secret)) != (self.client_id, self.client_secret):
            body = {"error": "invalid_client", "error_description": "client authentication failed"}
            await respond(
                send, 401, json.dumps(body).encode(), "application/json", {"www-authenticate": "Basic"}
            )
            return
        if form.get("grant_type") != "client_credentials":
            await respond(send, 400, b'{"error":"unsupported_grant_type"}', "application/json")
            return
        token = f"tok-{len(self.requests)}-{time.monotonic_ns()}"
        self.valid.add(token)
        body = {"access_token": token, "token_type": "Bearer", "expires_in": self.expires_in}
        await respond(send, 200, json.dumps(body).encode(), "application/json", {"cache-control": "no-store"})

    def protected(self) -> Any:
        async def behaviour(receiver: Receiver, headers: dict[str, str], body: bytes) -> int:
            token = headers.get("authorization", "").removeprefix("Bearer ")
            return 204 if token in self.valid else 401

        return behaviour


class FakeClock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


SECRET = "s3cr:et/+with spaces"


async def test_oauth2_token_cached_refreshed_before_expiry_and_after_a_401(
    tmp_path: Path, nursery, monkeypatch
) -> None:
    logs = capture_logs()
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "oauth-secret").write_text(SECRET + "\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    tokens = TokenServer("bridge-client", SECRET, expires_in=3600)
    token_port = await nursery.start(serve_asgi, tokens.app)
    hook = Receiver(tokens.protected())
    hook_port = await nursery.start(serve_asgi, hook.app)
    oauth = (
        f'oauth2 = {{ token_url = "http://127.0.0.1:{token_port}/token", client_id = "bridge-client", '
        'client_secret = "${credential:oauth-secret}", scope = "events:write" }\nmax_in_flight = 1'
    )
    sinks = sink_table("hook", f"http://127.0.0.1:{hook_port}/hook", oauth)
    clock = FakeClock()

    def fake_clock(config: Any) -> None:
        sink_component(config, "hook").clock = clock

    async with running(
        write_config(tmp_path, sinks, await start_source(nursery)), prepare=fake_clock
    ) as bridge:
        sink = bridge.sinks["hook"]
        await emit(bridge, events(5))
        await wait_for(lambda: len(numbers(hook.requests)) == 5)
        assert len(tokens.requests) == 1  # one token for all five
        first = tokens.requests[0]
        assert first["form"] == {"grant_type": "client_credentials", "scope": "events:write"}
        assert first["headers"]["content-type"] == "application/x-www-form-urlencoded"
        clock.offset += 3600 - 30  # within the last minute of its lifetime: fetched anew
        await emit(bridge, events(1, first=5))
        await wait_for(lambda: len(numbers(hook.requests)) == 6)
        assert len(tokens.requests) == 2
        tokens.valid.clear()  # the server revokes every token it gave out
        retried = sink.health.retried
        await emit(bridge, events(1, first=6))
        await wait_for(lambda: len(numbers(hook.requests)) == 7)
        assert len(tokens.requests) == 3
        assert sink.health.retried == retried  # the 401 was answered within the same attempt
    assert [r.status for r in hook.requests][-2:] == [401, 204]
    assert numbers(hook.requests) == list(range(7))
    text = logs.getvalue()
    assert SECRET not in text and "s3cr" not in text
    assert not any(t in text for t in tokens.valid)


async def test_oauth2_wrong_secret_is_a_clear_not_ready_reason(tmp_path: Path, nursery) -> None:
    logs = capture_logs()
    tokens = TokenServer("bridge-client", "the-right-secret")
    token_port = await nursery.start(serve_asgi, tokens.app)
    hook = Receiver(tokens.protected())
    hook_port = await nursery.start(serve_asgi, hook.app)
    admin_port = free_port()
    oauth = (
        f'oauth2 = {{ token_url = "http://127.0.0.1:{token_port}/token", client_id = "bridge-client", '
        'client_secret = "a-wrong-secret" }'
    )
    sinks = sink_table("hook", f"http://127.0.0.1:{hook_port}/hook", oauth)
    path = write_config(tmp_path, sinks, await start_source(nursery), admin_port)
    async with running(path) as bridge:
        await emit(bridge, events(2))
        await wait_for(lambda: bridge.sinks["hook"].health.state == "error")
        status, body = await readyz(admin_port)
    assert status == 503 and body["ready"] is False
    detail = body["sinks"]["hook"]["detail"]
    assert "invalid_client" in detail and "check client_id and client_secret" in detail
    assert "token_url" in detail and "a-wrong-secret" not in detail
    assert hook.requests == []  # nothing is sent without a token
    assert "a-wrong-secret" not in logs.getvalue()


async def test_oauth2_endpoint_refusing_fresh_tokens_is_retried_not_dead_lettered(
    tmp_path: Path, nursery
) -> None:
    tokens = TokenServer("bridge-client", "the-secret")
    token_port = await nursery.start(serve_asgi, tokens.app)

    async def refuse_all(receiver: Receiver, headers: dict[str, str], body: bytes) -> int:
        return 401

    hook = Receiver(refuse_all)
    hook_port = await nursery.start(serve_asgi, hook.app)
    oauth = (
        f'oauth2 = {{ token_url = "http://127.0.0.1:{token_port}/token", client_id = "bridge-client", '
        'client_secret = "the-secret" }\nmax_in_flight = 1'
    )
    sinks = sink_table("hook", f"http://127.0.0.1:{hook_port}/hook", oauth)
    async with running(write_config(tmp_path, sinks, await start_source(nursery))) as bridge:
        await emit(bridge, events(2))
        await wait_for(lambda: bridge.sinks["hook"].health.retried >= 2)
        health = bridge.sinks["hook"].health
        assert health.dead == 0  # a scope or audience mistake must not drop events
        assert not health.ready and "401 to a fresh OAuth2 token" in health.detail
    first_two = [r.headers["authorization"] for r in hook.requests[:2]]
    assert first_two[0] != first_two[1]  # the 401 got a fresh token, tried once more
