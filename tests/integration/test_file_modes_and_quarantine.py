"""Private files whatever the umask, a byte cap on quarantine, no call data in its log lines
(issue 15, items 7 and 9).

A real ``event-bridge run`` process is started with umask 022 (as outside systemd) on a
state directory, quarantine and log directory that do not exist yet; a hostile Uptivity
server sends unreadable documents that carry a caller number and an agent name.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import trio

from bridge.simulators.uptivity import UptivitySimulator
from tests.support.helpers import read_jsonl, wait_for, write_config

CALLER = "5551234567"
AGENT = "Zelda Quux"
JUNK = (
    f"<CALLCOPYEVENT><ANI>{CALLER}</ANI><AGENTNAME>{AGENT}</AGENTNAME>"
    f"<EVENTTYPE>X</WRONG><PAD>{'A' * 1500}</PAD></CALLCOPYEVENT>\r\n"
).encode()
MAX_BYTES, MAX_FILE_BYTES, JUNK_COUNT = 8192, 1024, 20


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def run_bridge_with_hostile_input(tmp_path: Path, nursery: trio.Nursery, extra: str = "") -> Path:
    """Run the bridge (umask 022) until it has quarantined JUNK_COUNT inputs and logged 7
    events; checks the outbox's -wal/-shm while they exist; returns its stderr file."""
    sim = UptivitySimulator(rate=0, count=7, numbered=True)
    sim.pause()
    port = await nursery.start(sim.serve)
    state, log_file = tmp_path / "new" / "state", tmp_path / "logs" / "sub" / "events.jsonl"
    config = write_config(
        tmp_path,
        f"""
        [bridge]
        state_dir = "{state}"
        {extra}
        [[sources.uptivity]]
        name = "up"
        host = "127.0.0.1"
        port = {port}
        [[sinks.log]]
        name = "file"
        path = "{log_file}"
        """,
    )
    stderr = tmp_path / "bridge.stderr"
    with stderr.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bridge", "run", "--config", str(config), "--shutdown-grace", "1"],
            stdout=subprocess.DEVNULL,
            stderr=err,
            preexec_fn=lambda: os.umask(0o022),
        )
    try:
        await wait_for(lambda: sim.subscribers or proc.poll() is not None, timeout=30)
        assert proc.poll() is None, stderr.read_text()
        for _ in range(JUNK_COUNT):
            await sim.inject(JUNK)
        sim.pause(False)
        await wait_for(lambda: log_file.exists() and len(read_jsonl(log_file)) >= 7, timeout=30)
        await wait_for(lambda: stderr.read_text().count("uptivity_bad_input") >= JUNK_COUNT, timeout=30)
        # SQLite's -wal and -shm exist only while the outbox is open: check them now.
        live = [state / "outbox.sqlite3-wal", state / "outbox.sqlite3-shm"]
        assert {f.name: oct(mode(f)) for f in live} == {f.name: "0o600" for f in live}
    finally:
        proc.send_signal(signal.SIGTERM)
        await trio.to_thread.run_sync(proc.wait)
    return stderr


async def test_state_quarantine_and_log_files_are_private_whatever_the_umask(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    """Item 7, with the default configuration."""
    stderr = await run_bridge_with_hostile_input(tmp_path, nursery)
    state, log_file = tmp_path / "new" / "state", tmp_path / "logs" / "sub" / "events.jsonl"
    quarantine = state / "quarantine" / "up"
    # Every directory the bridge created is 0700, every file 0600.
    created_dirs = [
        tmp_path / "new",
        state,
        state / "quarantine",
        quarantine,
        tmp_path / "logs",
        log_file.parent,
    ]
    assert {d: oct(mode(d)) for d in created_dirs} == {d: "0o700" for d in created_dirs}
    files = [state / "outbox.sqlite3", log_file, *quarantine.iterdir()]
    assert len(files) == 2 + 2 * JUNK_COUNT
    assert {f.name: oct(mode(f)) for f in files} == {f.name: "0o600" for f in files}
    # A file made by hand under umask 022 would have been 0644: the check can fail.
    probe = tmp_path / "probe"
    old = os.umask(0o022)
    try:
        probe.write_text("x")
    finally:
        os.umask(old)
    assert mode(probe) == 0o644
    # The log lines about quarantined input carry no call data, only its shape.
    text = stderr.read_text()
    assert text.count("uptivity_bad_input") >= JUNK_COUNT
    assert CALLER not in text and AGENT not in text
    assert "Traceback" not in text


async def test_quarantine_is_capped_by_bytes_per_source(tmp_path: Path, nursery: trio.Nursery) -> None:
    """Item 9: besides the count, a byte cap per source; the oldest inputs go first."""
    extra = f"""
        [quarantine]
        max_bytes = {MAX_BYTES}
        max_file_bytes = {MAX_FILE_BYTES}
    """
    await run_bridge_with_hostile_input(tmp_path, nursery, extra)
    quarantine = tmp_path / "new" / "state" / "quarantine" / "up"
    kept = sorted(quarantine.glob("*.bin"))
    total = sum(p.stat().st_size for p in quarantine.iterdir())
    assert 1 <= len(kept) < JUNK_COUNT and total <= MAX_BYTES
    assert all(p.stat().st_size == MAX_FILE_BYTES for p in kept)
    assert all(f"(first {MAX_FILE_BYTES} kept)" in p.with_suffix(".txt").read_text() for p in kept)
    assert CALLER.encode() in kept[-1].read_bytes()  # the newest input is there, up to the cap
