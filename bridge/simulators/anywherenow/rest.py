"""The simulator's REST Recording API (vendor doc "Core REST Recording API").

v1 ``/api/recording`` and v2 ``/api/v2/recording`` under ``rest_prefix``: get state, set
state, capabilities; ErrorMessage objects on errors. An unknown session is answered as
``not_found`` says: ``"404"`` (HTTP 404 with an ErrorMessage) or ``"200"`` (HTTP 200
with an ErrorMessage, which the doc allows just as well).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote

import trio

from bridge.simulators.anywherenow.state import (
    ACTION_NUMBERS,
    ACTIONS,
    ERROR_CONFIGURATION,
    ERROR_VALIDATION,
    CallRecord,
    RequestRecord,
    _field,
)
from bridge.simulators.journal import Journal


class RestSide:
    """Mixin of :class:`AnywhereNowSimulator`: the REST routes."""

    rest_prefix: str
    v2_enabled: bool
    agent_can_edit: bool
    not_found: str
    report_uninitialized: bool
    rest_casing: str
    rest_gate: trio.Event | None
    rest_waiting: int
    calls: dict[tuple[str, str], CallRecord]
    journal: Journal

    def _apply(self, ucc: str, correlation_id: str, action: int | str) -> CallRecord:
        raise NotImplementedError

    def _broadcast_event(self, ucc: str, correlation_id: str, action: int | str) -> int:
        raise NotImplementedError

    async def _rest(self, record: RequestRecord, body: bytes) -> tuple[int, Any] | None:
        """The answer to a REST request, or None when the path is not a REST route."""
        path = record.path.rstrip("/")
        for version, prefix in (("v2", "/api/v2/recording"), ("v1", "/api/recording")):
            base = self.rest_prefix + prefix
            if not path.startswith(base + "/"):
                continue
            if version == "v2" and not self.v2_enabled:
                return 404, "Not Found"
            rest = [unquote(part) for part in path[len(base) + 1 :].split("/")]
            if rest == ["set"] and record.method == "POST":
                return self._set(body)
            if len(rest) == 2 and rest[0] == "capabilities" and record.method == "GET":
                return 200, {
                    "AgentCanEditRecordings": self.agent_can_edit,
                    "ErrorMessage": None,
                    "UCCName": rest[1],
                }
            if len(rest) == 2 and record.method == "GET":
                if self.rest_gate is not None:
                    self.rest_waiting += 1
                    try:
                        await self.rest_gate.wait()
                    finally:
                        self.rest_waiting -= 1
                call = self.calls.get((rest[0], rest[1]))
                if call is None:
                    return (404 if self.not_found == "404" else 200), {
                        "CorrelationId": rest[1],
                        "RecordingState": 0,
                        "MarkingState": 0,
                        "SavingState": 0,
                        "UCCName": rest[0],
                        "ErrorMessage": {
                            "ErrorType": ERROR_VALIDATION,
                            "Message": "No recording session found for this CorrelationId",
                        },
                    }
                answer = call.as_json(report_uninitialized=self.report_uninitialized, casing=self.rest_casing)
                shown = call.dimensions()
                if self.report_uninitialized and call.recording in (1, 3):
                    shown["recording"] = "uninitialized"
                for dim, state in shown.items():
                    self.journal.add("observe", subject=f"{rest[1]}#{dim}", state=state, via="rest")
                return 200, answer
        return None

    def _set(self, body: bytes) -> tuple[int, Any]:
        try:
            payload = json.loads(body)
            if not isinstance(payload, dict):
                raise ValueError
        except ValueError:
            return 400, {
                "ErrorMessage": {"ErrorType": ERROR_VALIDATION, "Message": "Body must be a JSON object"}
            }
        ucc = _field(payload, "UCCName")
        correlation_id = _field(payload, "CorrelationId")
        action = self.action_number(_field(payload, "Action"))
        if not isinstance(ucc, str) or not isinstance(correlation_id, str) or action is None:
            return 400, {
                "ErrorMessage": {
                    "ErrorType": ERROR_VALIDATION,
                    "Message": "UCCName, CorrelationId and a valid Action are required",
                }
            }
        if not isinstance(_field(payload, "RequesterSipUri"), str):
            return 400, {
                "ErrorMessage": {
                    "ErrorType": ERROR_VALIDATION,
                    "Message": "RequesterSipUri must be a valid Agent in the UCC",
                }
            }
        if not self.agent_can_edit:
            return 200, {
                "CorrelationId": correlation_id,
                "UCCName": ucc,
                "ErrorMessage": {
                    "ErrorType": ERROR_CONFIGURATION,
                    "Message": "AgentCanEditAudioRecording is disabled for this UCC",
                },
            }
        call = self._apply(ucc, correlation_id, action)
        self._broadcast_event(ucc, correlation_id, action)
        return 200, call.as_json()

    @staticmethod
    def action_number(value: Any) -> int | None:
        if isinstance(value, bool):
            return None
        if isinstance(value, int):
            return value if value in ACTIONS else None
        if isinstance(value, str):
            if value.strip().isdigit():
                return RestSide.action_number(int(value))
            return ACTION_NUMBERS.get(value.strip().lower())
        return None

    # ---- WebSocket: the hub --------------------------------------------------------------
