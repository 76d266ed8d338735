"""Warn once per UCC when agents may not change the recorder state (doc: "Recording
capabilities", AgentCanEditAudioRecording). Bounded: at most :data:`QUEUE` checks wait,
and at most :data:`MAX_UCCS` UCCs are remembered as checked, so a hub that invents a new
UCC name per message cannot grow memory or the request rate."""

from __future__ import annotations

from typing import Any

import trio

from bridge.backoff import Backoff
from bridge.sources.anywherenow.mapping import field
from bridge.sources.anywherenow.rest import RecordingApi, RestError

QUEUE = 100
MAX_UCCS = 10_000


class CapabilityChecks:
    def __init__(self, reconnect_min: float, reconnect_max: float) -> None:
        self._send, self._receive = trio.open_memory_channel[str](QUEUE)
        self._checked: set[str] = set()
        self._backoff = (reconnect_min, reconnect_max)
        self.skipped = 0  # UCCs not checked because the queue was full or too many UCCs

    def want(self, ucc: str) -> None:
        """Ask for a check of ``ucc`` (once); never blocks."""
        if not ucc or ucc in self._checked:
            return
        if len(self._checked) >= MAX_UCCS:
            self.skipped += 1
            return
        try:
            self._send.send_nowait(ucc)
        except trio.WouldBlock:
            self.skipped += 1  # not marked checked: asked again when it is seen again
            return
        self._checked.add(ucc)

    async def run(self, api: RecordingApi, log: Any) -> None:
        async for ucc in self._receive:
            backoff = Backoff(base=self._backoff[0], cap=self._backoff[1])
            while True:
                try:
                    result = await api.capabilities(ucc)
                    break
                except RestError as exc:
                    delay = backoff.next()
                    log.warning(
                        "anywherenow_capabilities_failed", ucc=ucc, error=str(exc), retry_in=round(delay, 3)
                    )
                    await trio.sleep(delay)
            if result.error is not None:
                log.warning(
                    "anywherenow_rest_error_message",
                    request="capabilities",
                    status=result.status,
                    api=result.version,
                    error_type=result.error.error_type,
                    message=result.error.message,
                    ucc=ucc,
                )
                continue
            if result.kind != "state":
                log.warning(
                    "anywherenow_rest_unexpected_answer",
                    request="capabilities",
                    status=result.status,
                    ucc=ucc,
                )
                continue
            can_edit = field(result.body, "AgentCanEditRecordings")
            if can_edit is False:
                log.warning(
                    "anywherenow_agents_cannot_edit_recordings",
                    ucc=ucc,
                    detail="AgentCanEditRecordings is false for this UCC: agents cannot start, stop or "
                    "pause recordings, so no such events will come from agents. Enable "
                    "AgentCanEditAudioRecording (and UseAudioRecording) on the UCC.",
                )
            else:
                log.info("anywherenow_capabilities", ucc=ucc, agent_can_edit_recordings=can_edit)
