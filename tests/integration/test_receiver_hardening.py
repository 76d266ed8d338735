"""`event-bridge receive` as a real process, attacked over a real socket (issue 15, items 4, 5, 12, 13).

Requests are signed here by hand from the Standard Webhooks spec (HMAC-SHA256 over
``{webhook-id}.{webhook-timestamp}.{body}``, base64, ``v1,`` prefix), not with the
bridge's signer, so the receiver is checked against the spec rather than against itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

SECRET = "whsec_" + base64.b64encode(b"receiver-hardening-test-key-0001").decode()
OTHER = "whsec_" + base64.b64encode(b"receiver-hardening-other-key-002").decode()


def sign(secret: str, msg_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": ts,
        "webhook-signature": "v1," + base64.b64encode(mac).decode(),
    }


def cloudevent(event_id: str, **extra: object) -> dict[str, object]:
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": "/event-bridge/test",
        "type": "recording.started",
        "subject": "1111",
        "data": {"device_id": "1111"},
        **extra,
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Receiver:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, out: Path, err: Path) -> None:
        self.proc, self.port, self.out, self.err = proc, port, out, err
        self.url = f"http://127.0.0.1:{port}/"

    def post(self, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return httpx.post(self.url, content=body, headers=headers, timeout=30)

    def stdout(self) -> str:
        return self.out.read_text(encoding="utf-8")

    def stderr(self) -> str:
        return self.err.read_text(encoding="utf-8")


@contextmanager
def receiver(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None, name: str = "receive"
) -> Iterator[Receiver]:
    out, err = tmp_path / f"{name}.out", tmp_path / f"{name}.err"
    full_env = {k: v for k, v in os.environ.items() if k != "EVENT_BRIDGE_WEBHOOK_SECRET"}
    full_env.update(env or {})
    for _attempt in range(5):  # a free port may be taken before the receiver binds it (exit 3)
        port = free_port()
        with out.open("wb") as stdout, err.open("wb") as stderr:
            proc = subprocess.Popen(
                [sys.executable, "-u", "-m", "bridge", "receive", "--port", str(port), *args],
                stdout=stdout,
                stderr=stderr,
                env=full_env,
            )
        if _started(proc, port) or proc.returncode != 3:
            break
    try:
        assert proc.poll() is None, err.read_text()
        yield Receiver(proc, port, out, err)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _started(proc: subprocess.Popen[bytes], port: int) -> bool:
    deadline = time.monotonic() + 30
    while proc.poll() is None and time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.05)
    return False


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "webhook-secret"
    path.write_text(f"# current and previous\n{SECRET}\n{OTHER}  # rotated out next week\n")
    return path


def assert_one_line_refusal(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.text.endswith("\n") and response.text.count("\n") == 1, response.text
    assert "Traceback" not in response.text and len(response.text) < 300


def test_binary_mode_ce_id_is_bound_to_the_signed_webhook_id(tmp_path: Path, secret_file: Path) -> None:
    """Item 4: a captured binary request re-targeted to another ce-id no longer verifies."""
    body = json.dumps({"device_id": "1111"}).encode()
    headers = {
        "content-type": "application/json",
        "ce-specversion": "1.0",
        "ce-id": "evt-1",
        "ce-source": "/event-bridge/test",
        "ce-type": "recording.started",
        "ce-subject": "1111",
        **sign(SECRET, "evt-1", body),
    }
    with receiver(tmp_path, "--secret", SECRET, "--secret", OTHER) as rx:
        assert rx.post(body, headers).status_code == 204
        forged = rx.post(body, {**headers, "ce-id": "evt-2"})
        assert_one_line_refusal(forged, 401)
        assert "ce-id" in forged.text
        # Percent-encoding (CloudEvents HTTP binding) is undone before the comparison.
        encoded = {**headers, "ce-id": "evt%2D1"}
        assert rx.post(body, encoded).status_code == 204
        # A binary request without ce-id is not a CloudEvent.
        no_id = {k: v for k, v in headers.items() if k != "ce-id"}
        assert_one_line_refusal(rx.post(body, no_id), 400)
        assert rx.proc.poll() is None
        lines = [line for line in rx.stdout().splitlines() if "webhook received" in line]
        assert len(lines) == 2 and all("id=evt-1" in line for line in lines)


def test_every_bad_request_is_a_one_line_4xx_and_the_receiver_keeps_serving(
    tmp_path: Path, secret_file: Path
) -> None:
    """Item 5: malformed headers and bodies answer 400/401/413, never 500 or a traceback."""
    good = json.dumps(cloudevent("evt-good")).encode()
    structured = {"content-type": "application/cloudevents+json"}
    cases: list[tuple[str, bytes, dict[str, str], int]] = []
    for bad in ("v1", "v1,", "v1,!!!!", "v1,AAA", "garbage", "v1,AAAA,BBBB", "v1,AAAA  v1", "v1,AAAA v1"):
        cases.append(
            (
                f"signature {bad!r}",
                good,
                {**structured, **sign(SECRET, "e", good), "webhook-signature": bad},
                401,
            )
        )
    for ts in ("soon", "1e30", "nan", "-1", "17000000000000000000000"):
        cases.append(
            (
                f"timestamp {ts!r}",
                good,
                {**structured, **sign(SECRET, "e", good), "webhook-timestamp": ts},
                401,
            )
        )
    cases.append(("no headers", good, structured, 401))
    cases.append(("stale", good, {**structured, **sign(SECRET, "e", good, int(time.time()) - 3600)}, 401))
    cases.append(("wrong secret", good, {**structured, **sign("whsec_" + "A" * 32, "e", good)}, 401))
    latin1 = b'{"subject": "caf\xe9"}'
    cases.append(("non-UTF-8 body", latin1, {**structured, **sign(SECRET, "e", latin1)}, 400))
    for label, body, ctype in (
        ("not JSON", b"not json", "application/cloudevents+json"),
        ("not a CloudEvent", b"{}", "application/cloudevents+json"),
        ("batch item not an event", b'[{"id": "x"}]', "application/cloudevents-batch+json"),
        ("batch not an array", b"{}", "application/cloudevents-batch+json"),
        ("nested too deep", b"[" * 200_000, "application/cloudevents-batch+json"),
        ("huge integer", b"[" + b"9" * 100_000 + b"]", "application/cloudevents-batch+json"),
        ("no CloudEvents content type", good, "text/plain"),
    ):
        cases.append((label, body, {"content-type": ctype, **sign(SECRET, "e", body)}, 400))

    with receiver(tmp_path, "--secret", SECRET, "--secret", OTHER) as rx:  # default limit: 1 MiB
        for label, body, headers, status in cases:
            response = rx.post(body, headers)
            assert response.status_code == status, (label, response.status_code, response.text)
            assert_one_line_refusal(response, status)
        # Over the limit, declared (content-length) and streamed (chunked, no length).
        big = b"x" * 1_100_000
        assert_one_line_refusal(rx.post(big, {**structured, **sign(SECRET, "e", big)}), 413)

        def chunks() -> Iterator[bytes]:
            for _ in range(64):
                yield b"y" * 65536

        streamed = httpx.post(rx.url, content=chunks(), headers=structured, timeout=30)
        assert streamed.status_code == 413
        # A repeated security header is ambiguous: refused.
        doubled = httpx.Client(timeout=30).build_request("POST", rx.url, content=good)
        doubled.headers.update({**structured, **sign(SECRET, "evt-good", good)})
        raw_headers = [*doubled.headers.raw, (b"webhook-id", b"evt-other")]
        with httpx.Client(timeout=30) as client:
            response = client.send(httpx.Request("POST", rx.url, content=good, headers=raw_headers))
        assert_one_line_refusal(response, 401)
        # Still serving, and never logged a traceback.
        ok = rx.post(good, {**structured, **sign(SECRET, "evt-good", good)})
        assert ok.status_code == 204
        assert rx.proc.poll() is None
        assert "id=evt-good" in rx.stdout()
    assert "Traceback" not in rx.stderr(), rx.stderr()


def test_a_body_dripped_slower_than_the_timeout_gets_408(tmp_path: Path) -> None:
    """Item 5: every read is bounded in time too; a slow sender holds nothing for long."""
    with receiver(tmp_path, "--secret", SECRET, "--body-timeout", "0.5") as rx:
        with socket.create_connection(("127.0.0.1", rx.port), timeout=30) as sock:
            sock.sendall(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n{")
            answer = b""
            while b"\r\n\r\n" not in answer:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert rx.post(b"{}", {"content-type": "application/cloudevents+json"}).status_code == 401


def test_printed_lines_escape_control_characters(tmp_path: Path, secret_file: Path) -> None:
    """Item 12: a subject with a newline and an escape sequence cannot forge a printed line."""
    event = cloudevent("evt-1\nwebhook received  ✔ signature  call.ended", subject="1111\x1b[2J\r\u202e")
    body = json.dumps(event).encode()
    headers = {"content-type": "application/cloudevents+json", **sign(SECRET, "evt-1", body)}
    with receiver(tmp_path, "--secret", SECRET, "--secret", OTHER) as rx:
        assert rx.post(body, headers).status_code == 204
        output = rx.stdout()
    received = [line for line in output.splitlines() if "webhook received" in line]
    assert len(received) == 1, output
    assert "\x1b" not in output and "\r" not in output and "\u202e" not in output
    assert "\\u000a" in received[0] and "\\u001b[2J" in received[0]


def test_secret_from_file_or_environment_never_in_the_process_list(tmp_path: Path, secret_file: Path) -> None:
    """Item 13: --secret-file and $EVENT_BRIDGE_WEBHOOK_SECRET; neither shows in argv."""
    body = json.dumps(cloudevent("evt-env")).encode()
    for label, args, env, secret in (
        ("file", ("--secret-file", str(secret_file)), {}, OTHER),
        ("env", (), {"EVENT_BRIDGE_WEBHOOK_SECRET": f"{SECRET} {OTHER}"}, SECRET),
    ):
        with receiver(tmp_path, *args, env=env, name=label) as rx:
            cmdline = Path(f"/proc/{rx.proc.pid}/cmdline").read_bytes().decode()
            assert SECRET not in cmdline and OTHER not in cmdline
            headers = {"content-type": "application/cloudevents+json", **sign(secret, "evt-env", body)}
            assert rx.post(body, headers).status_code == 204, label
            wrong = {**headers, **sign("whsec_" + "B" * 32, "evt-env", body)}
            assert rx.post(body, wrong).status_code == 401


def test_port_in_use_is_one_line_and_exit_3() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        done = subprocess.run(
            [sys.executable, "-m", "bridge", "receive", "--port", str(busy.getsockname()[1])],
            capture_output=True,
            text=True,
            env=os.environ | {"EVENT_BRIDGE_WEBHOOK_SECRET": SECRET},
            timeout=60,
            check=False,
        )
    assert done.returncode == 3 and "cannot listen on" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        ((), {}, "no secret"),
        (("--secret-file", "/nonexistent/secret"), {}, "cannot read"),
        ((), {"EVENT_BRIDGE_WEBHOOK_SECRET": "not-a-secret!"}, "not a whsec_"),
    ],
)
def test_missing_or_bad_secret_is_one_line_and_exit_2(
    args: tuple[str, ...], env: dict[str, str], needle: str
) -> None:
    full_env = {k: v for k, v in os.environ.items() if k != "EVENT_BRIDGE_WEBHOOK_SECRET"} | env
    done = subprocess.run(
        [sys.executable, "-m", "bridge", "receive", "--port", str(free_port()), *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert needle in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "not-a-secret!" not in done.stderr
