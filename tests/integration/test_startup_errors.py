"""Ordinary startup failures: one line (what, where, what to do), a distinct exit status.

Each case runs ``event-bridge run`` as a real process and reads its stderr: no
traceback, no ExceptionGroup, exactly one line that is not a JSON log record, and the
exit status of the README's table. READY=1 (sd_notify) never comes before the admin
listener is bound.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from bridge import exits

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def config(tmp_path: Path, *, admin_port: int, state_dir: Path | None = None, extra: str = "") -> Path:
    text = f"""
[bridge]
state_dir = "{state_dir or tmp_path / "state"}"
timezone = "UTC"

[admin]
listen = "127.0.0.1:{admin_port}"

[[sources.uptivity]]
name = "up"
host = "127.0.0.1"
port = {free_port()}

[[sinks.log]]
name = "log"
path = "{tmp_path / "events.jsonl"}"
{extra}
"""
    path = tmp_path / f"bridge-{admin_port}.toml"
    path.write_text(text)
    return path


def run(
    path: Path, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", "run", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def the_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The one non-log line on stderr; fails on tracebacks or more than one line."""
    assert "Traceback" not in proc.stderr and "ExceptionGroup" not in proc.stderr, proc.stderr
    lines = []
    for line in proc.stderr.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            lines.append(line)
            continue
        assert isinstance(record, dict) and record.get("level") != "error", line
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("event-bridge: ")
    return lines[0]


def test_admin_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = config(tmp_path, admin_port=port)
        proc = run(path)
    assert proc.returncode == exits.LISTEN
    line = the_line(proc)
    assert f"admin listener 127.0.0.1:{port}" in line
    assert "already in use" in line and "[admin] listen" in line and str(path) in line
    assert proc.stderr.strip() == line  # nothing else: no bridge_starting before the bind


def test_second_bridge_with_the_same_admin_port_exits_with_one_line(tmp_path: Path) -> None:
    port = free_port()
    first_dir, second_dir = tmp_path / "a", tmp_path / "b"
    first_dir.mkdir()
    second_dir.mkdir()
    first = subprocess.Popen(
        [sys.executable, "-m", "bridge", "run", "--config", str(config(first_dir, admin_port=port))],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and first.poll() is None, "the first bridge did not start"
            time.sleep(0.1)
        proc = run(config(second_dir, admin_port=port))
        assert proc.returncode == exits.LISTEN
        assert "already in use (is another event-bridge running?)" in the_line(proc)
        assert "bridge_ready" not in proc.stderr and "bridge_starting" not in proc.stderr
        assert first.poll() is None  # the first one is untouched
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
    finally:
        first.terminate()
        first.wait(30)


def test_state_dir_that_cannot_be_created(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the state dir should be\n")
    proc = run(config(tmp_path, admin_port=free_port(), state_dir=blocker / "state"))
    assert proc.returncode == exits.STATE_DIR
    line = the_line(proc)
    assert f"state dir {blocker / 'state'}" in line and "Not a directory" in line
    assert "[bridge] state_dir" in line


def test_outbox_that_is_not_a_database(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "outbox.sqlite3").write_bytes(b"this is not SQLite " * 100)
    proc = run(config(tmp_path, admin_port=free_port(), state_dir=state))
    assert proc.returncode == exits.STATE_DIR
    line = the_line(proc)
    assert "outbox.sqlite3" in line and "not a database" in line


def test_unreadable_tls_file(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-ca.pem"
    hook = f"""
[[sinks.webhook]]
name = "hook"
url = "https://127.0.0.1:{free_port()}/"
secrets = ["{SECRET}"]
ca_file = "{missing}"
"""
    proc = run(config(tmp_path, admin_port=free_port(), extra=hook))
    assert proc.returncode == exits.TLS
    line = the_line(proc)
    assert "sinks.webhook hook" in line and "ca_file" in line and str(missing) in line


def test_invalid_tls_file(tmp_path: Path) -> None:
    garbage = tmp_path / "ca.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    hook = f"""
[[sinks.webhook]]
name = "hook"
url = "https://127.0.0.1:{free_port()}/"
secrets = ["{SECRET}"]
ca_file = "{garbage}"
"""
    proc = run(config(tmp_path, admin_port=free_port(), extra=hook))
    assert proc.returncode == exits.TLS
    assert str(garbage) in the_line(proc)


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ('\n[[sinks.log]]\nname = "log2"\npath = "x.jsonl"\ncolour = "red"\n', "colour"),
        ('\n[outbox]\nsynchronous = "sometimes"\n', "synchronous"),
    ],
)
def test_config_errors(tmp_path: Path, extra: str, needle: str) -> None:
    path = config(tmp_path, admin_port=free_port(), extra=extra)
    proc = run(path)
    assert proc.returncode == exits.CONFIG
    line = the_line(proc)
    assert line.startswith("event-bridge: configuration error: ") and str(path) in line and needle in line
    assert proc.stderr.strip() == line


def test_admin_listen_that_is_not_host_port(tmp_path: Path) -> None:
    path = config(tmp_path, admin_port=free_port())
    path.write_text(path.read_text().replace('listen = "127.0.0.1:', 'listen = "127.0.0.1-'))
    proc = run(path)
    assert proc.returncode == exits.CONFIG
    assert "admin.listen" in the_line(proc)


def test_ready_only_after_the_admin_listener_is_bound(tmp_path: Path) -> None:
    """READY=1 arrives with the listener already answering; never when it cannot bind."""
    notify = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify))
    sock.settimeout(30)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridge", "run", "--config", str(config(tmp_path, admin_port=port))],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "NOTIFY_SOCKET": str(notify)},
    )
    try:
        while True:
            message = sock.recv(4096).decode()
            if "READY=1" in message.split("\n"):
                break
        # The moment READY=1 is out, the admin listener must answer.
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    records = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    events = [r["event"] for r in records]
    assert events.index("bridge_starting") < events.index("bridge_ready")

    # Same port taken: the process exits with its line and never says READY=1.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        second = tmp_path / "second"
        second.mkdir()
        failed = run(config(second, admin_port=taken.getsockname()[1]), env={"NOTIFY_SOCKET": str(notify)})
    assert failed.returncode == exits.LISTEN
    sock.settimeout(0.5)
    late: list[str] = []
    try:
        while True:
            late.extend(sock.recv(4096).decode().split("\n"))
    except TimeoutError:
        pass
    assert "READY=1" not in late
    sock.close()


def test_readme_exit_status_table_matches_the_code() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = readme[readme.index("| status | meaning | example line |") :].split("\n\n")[0]
    documented = {int(line.split("|")[1]) for line in table.splitlines()[2:]}
    codes = {v for k, v in vars(exits).items() if k.isupper() and isinstance(v, int)}
    assert documented == codes


async def test_a_bad_tls_file_added_by_a_reload_does_not_stop_the_running_bridge(tmp_path: Path) -> None:
    from bridge.config import load
    from tests.support.helpers import running_bridge, wait_for

    path = config(tmp_path, admin_port=free_port())
    async with running_bridge(load(path)) as bridge:
        path.write_text(
            path.read_text()
            + f"""
[[sinks.webhook]]
name = "hook"
url = "https://127.0.0.1:{free_port()}/"
secrets = ["{SECRET}"]
ca_file = "{tmp_path / "missing.pem"}"
"""
        )
        changes = await bridge.reload(load(path))
        assert changes["added"] == ["sink:hook"]
        await wait_for(lambda: bridge.sinks["hook"].health.state == "error", timeout=10)
        assert "ca_file" in bridge.sinks["hook"].health.detail
        assert not bridge.stopping and bridge.sinks["log"].health.ready
