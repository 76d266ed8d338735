"""The pure helpers behind what operators see: terminal-safe text, masked excerpts of
quarantined input, URL redaction in messages, private file modes."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from bridge import fsmode
from bridge.logs import masked_excerpt, printable, safe_text

CONTROLS = [chr(c) for c in (*range(0x00, 0x20), *range(0x7F, 0xA0))] + [
    "\u2028",
    "\u2029",
    "\u200e",
    "\u200f",
    "\u202a",
    "\u202e",
    "\u2066",
    "\u2069",
]


@pytest.mark.parametrize("char", CONTROLS, ids=lambda c: f"U+{ord(c):04X}")
def test_printable_escapes_every_control_and_bidi_character(char: str) -> None:
    text = printable(f"a{char}b")
    assert char not in text and text == f"a\\u{ord(char):04x}b"
    # The escape is JSON's own: inside a JSON string it decodes back to the character.
    assert json.loads(f'"{text}"') == f"a{char}b"


def test_printable_keeps_ordinary_text() -> None:
    assert printable("Zoë 1111 — ✔ ü 中文 \\ tab-free") == "Zoë 1111 — ✔ ü 中文 \\ tab-free"


def test_masked_excerpt_keeps_the_shape_not_the_call_data() -> None:
    raw = b"<CALLCOPYEVENT><ANI>5551234567</ANI><AGENTNAME>Zelda Quux</AGENTNAME>"
    masked = masked_excerpt(raw)
    assert masked == "<CALLCOPYEVENT><ANI>**********</ANI><AGENTNAME>***** ****</AGENTNAME>"
    hub = '{"target":"RecordingStateChanged","arguments":[{"Caller":"+15551234","n":42}]}'
    masked = masked_excerpt(hub)
    assert "5551234" not in masked and "42" not in masked and masked.count('"') == hub.count('"')
    assert masked_excerpt(masked) == masked  # masking twice changes nothing
    long = masked_excerpt(b"<A>" + b"9" * 1000, limit=50)
    assert len(long) == 51 and long.endswith("…") and "9" not in long
    assert "\n" not in masked_excerpt(b"<A>x</A>\n<B>\x1b[2J</B>")


def test_safe_text_redacts_every_url_in_a_message() -> None:
    text = "url: got 'https://u:pw-1@h:8443/p?access_token=tok-1&x=2' and ws://h/hub?t=tok-2, ok"
    safe = safe_text(text)
    assert "pw-1" not in safe and "tok-1" not in safe and "tok-2" not in safe
    assert "https://u:***@h:8443/p?access_token=***&x=***" in safe and safe.endswith(", ok")


def test_private_files_and_directories_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o000)
    try:
        target = fsmode.private_dir(tmp_path / "a" / "b")
        with fsmode.open_private(target / "log.jsonl") as f:
            f.write(b"x\n")
        fsmode.write_private(target / "q.bin", b"raw")
        fsmode.ensure_private_file(target / "db.sqlite3")
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "a", target, *target.iterdir())}
    assert modes == {"a": 0o700, "b": 0o700, "log.jsonl": 0o600, "q.bin": 0o600, "db.sqlite3": 0o600}


def test_existing_files_keep_the_mode_the_operator_gave_them(tmp_path: Path) -> None:
    shared = tmp_path / "logs"
    shared.mkdir(mode=0o750)
    os.chmod(shared, 0o750)
    log = shared / "events.jsonl"
    log.write_bytes(b"")
    os.chmod(log, 0o640)
    with fsmode.open_private(log) as f:
        f.write(b"y\n")
    assert stat.S_IMODE(shared.stat().st_mode) == 0o750 and stat.S_IMODE(log.stat().st_mode) == 0o640
    assert log.read_bytes() == b"y\n"
