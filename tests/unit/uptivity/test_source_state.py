"""The device state the source persists with live events (what reconciliation compares
with after a reconnect or restart): no sockets, the real source with a memory emitter."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import structlog

from bridge.components import SourceContext
from bridge.quarantine import Quarantine
from bridge.simulators.uptivity.examples import EXAMPLES
from bridge.sources.uptivity import UptivitySettings, UptivitySource
from bridge.sources.uptivity.mapping import to_event
from bridge.sources.uptivity.reconcile import Known, known_from_state
from bridge.sources.uptivity.stream import element_fields, parse_document
from tests.support.helpers import MemoryEmitter


def source_and_ctx(tmp_path: Path, **settings: object) -> tuple[UptivitySource, SourceContext, MemoryEmitter]:
    source = UptivitySource(UptivitySettings(name="up", host="127.0.0.1", **settings))  # type: ignore[arg-type]
    emitter = MemoryEmitter()
    ctx = SourceContext(
        emitter=emitter, quarantine=Quarantine(tmp_path), state={}, log=structlog.get_logger()
    )
    return source, ctx, emitter


def event(name: str, device: str = "1111"):
    raw = EXAMPLES[name].replace(b"<DEVICEID>1111</DEVICEID>", f"<DEVICEID>{device}</DEVICEID>".encode())
    return to_event(
        element_fields(parse_document(raw)),
        source_name="up",
        tz=ZoneInfo("UTC"),
        received=datetime(2026, 1, 1, tzinfo=UTC),
        raw=raw,
    )


async def test_state_follows_the_recording_and_is_persisted_with_the_events(tmp_path: Path) -> None:
    source, ctx, emitter = source_and_ctx(tmp_path)
    await source._flush(ctx, [event("CALLSTART"), event("RECORDINGSTARTED")])
    file = "C:\\Recordings\\20110131\\1111\\1111-14-39-50.au"
    assert known_from_state(emitter.state) == {"1111": Known("recording", file, None)}
    paused = event("RECORDINGPAUSED")
    paused.data["filename"] = None  # a pause that does not repeat FILENAME keeps the recording's
    await source._flush(ctx, [paused])
    assert known_from_state(emitter.state) == {"1111": Known("paused", file, None)}
    await source._flush(ctx, [event("RECORDINGRESUMED"), event("RECORDINGSTOPPED")])
    assert known_from_state(emitter.state) == {} and source.known == {}
    assert source.stats()["events_read"] == 5 and len(emitter.events) == 5


async def test_tracked_devices_are_bounded(tmp_path: Path) -> None:
    source, ctx, emitter = source_and_ctx(tmp_path, max_tracked_devices=3)
    await source._flush(ctx, [event("RECORDINGSTARTED", str(d)) for d in range(1, 8)])
    assert list(source.known) == ["5", "6", "7"]
    assert set(known_from_state(emitter.state)) == {"5", "6", "7"}
    assert len(emitter.events) == 7  # the events themselves are all kept
