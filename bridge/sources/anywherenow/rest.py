"""The AnywhereNow REST Recording API calls the bridge needs: state and capabilities.

Paths follow the vendor doc: ``<rest_url>/api/v2/recording/<ucc>/<correlationId>`` with
``<rest_url>/api/recording/...`` (v1) as the fallback when a server has no v2 routes.

Reading answers (doc "Error Messages": *each* recording response may carry an
ErrorMessage, null on success): any status whose body has a non-null ErrorMessage is an
error answer, never a success. An error answer about a session is read as "unknown
session" when it is HTTP 404, when its Message says so, or when its ErrorType is not the
Configuration one; the doc lists the types (Configuration, Validation) but not their
numbers, so the bridge takes doc order (1 = Configuration) and retries those, as the
UCC, not the call, is at fault. A 404 without an ErrorMessage means "no such route".
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from bridge.errors import EndpointError
from bridge.sources.anywherenow import bounded
from bridge.sources.anywherenow.mapping import (
    MARKING_STATES,
    RECORDING_STATES,
    SAVING_STATES,
    field,
    parse_enum,
)
from bridge.sources.anywherenow.reconciler import StateAnswer

_NOT_FOUND = re.compile(
    r"not\s*found|no\s+(recording\s+)?session|unknown\s+(session|correlation)|does\s+not\s+exist", re.I
)


class RestError(EndpointError):
    """The REST API could not be asked (network, TLS, deadline, size) or answered nonsense."""


@dataclass(frozen=True)
class ErrorInfo:
    """The ErrorMessage object of an answer."""

    error_type: int | str | None
    message: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"ErrorType": self.error_type, "Message": self.message}

    @property
    def configuration(self) -> bool:
        kind = self.error_type
        return kind == 1 or (isinstance(kind, str) and kind.strip().lower() == "configuration")


def error_message(body: Any) -> ErrorInfo | None:
    """The ErrorMessage of a response (None when null or absent)."""
    value = field(body, "ErrorMessage")
    if value is None:
        return None
    if isinstance(value, dict):
        inner = field(value, "ErrorMessage")
        if isinstance(inner, dict):  # the doc's example nests it once more
            value = inner
        kind = field(value, "ErrorType")
        message = field(value, "Message")
        return ErrorInfo(
            kind if isinstance(kind, int | str) and not isinstance(kind, bool) else None,
            str(message)[:500] if message is not None else None,
        )
    return ErrorInfo(None, str(value)[:500])


@dataclass(frozen=True)
class RestAnswer:
    """One answer. ``kind``: state, error, not_found, no_route or unreadable."""

    kind: str
    status: int
    version: str
    body: dict[str, Any] | None = None
    error: ErrorInfo | None = None
    state: StateAnswer | None = None
    problem: str = ""


def _json_object(raw: bytes) -> dict[str, Any] | None:
    try:
        body = json.loads(raw) if raw.strip() else None
    except (ValueError, RecursionError):
        return None
    return body if isinstance(body, dict) else None


def read_state_answer(status: int, raw: bytes, version: str, correlation_id: str) -> RestAnswer:
    """Classify a "Get Recording state" answer (pure; the conformance fixtures test it)."""
    body = _json_object(raw)
    error = error_message(body)
    if error is not None:
        gone = status == 404 or bool(error.message and _NOT_FOUND.search(error.message))
        gone = gone or not error.configuration
        return RestAnswer("not_found" if gone else "error", status, version, body, error)
    if status == 404:
        return RestAnswer("no_route", status, version, body)
    if not 200 <= status < 300 or body is None:
        problem = f"HTTP {status}" + ("" if body is not None else ", body is not a JSON object")
        return RestAnswer("unreadable", status, version, body, problem=problem)
    answered = field(body, "CorrelationId")
    if isinstance(answered, str) and answered.strip().lower() != correlation_id.strip().lower():
        return RestAnswer(
            "unreadable", status, version, body, problem="answer is about another CorrelationId"
        )
    state = StateAnswer(
        parse_enum(field(body, "RecordingState"), RECORDING_STATES),
        parse_enum(field(body, "MarkingState"), MARKING_STATES),
        parse_enum(field(body, "SavingState"), SAVING_STATES),
        body,
    )
    if state.recording is None and state.marking is None and state.saving is None:
        return RestAnswer(
            "unreadable", status, version, body, problem="no RecordingState, MarkingState or SavingState"
        )
    return RestAnswer("state", status, version, body, state=state)


def read_capabilities(status: int, raw: bytes, version: str) -> RestAnswer:
    body = _json_object(raw)
    error = error_message(body)
    if error is not None:
        return RestAnswer("error", status, version, body, error)
    if status == 404:
        return RestAnswer("no_route", status, version, body)
    if not 200 <= status < 300 or body is None:
        return RestAnswer("unreadable", status, version, body, problem=f"HTTP {status}")
    return RestAnswer("state", status, version, body)


class RecordingApi:
    """Talks to ``rest_url`` (e.g. https://host/attendantservice) with a shared client."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        rest_url: str,
        version: str = "auto",
        *,
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
        max_bytes: int = 1_048_576,
    ) -> None:
        self.client = client
        self.base = rest_url.rstrip("/")
        self.version = version  # "auto" tries v2 and falls back to v1 once a server shows it has no v2
        self.headers = {"Accept": "application/json", **(headers or {})}
        self.timeout = timeout
        self.max_bytes = max_bytes

    def _versions(self) -> list[str]:
        return ["v2", "v1"] if self.version == "auto" else [self.version]

    def _url(self, version: str, tail: str) -> str:
        prefix = "/api/v2/recording" if version == "v2" else "/api/recording"
        return f"{self.base}{prefix}/{tail}"

    async def _get(self, tail: str, read: Any) -> RestAnswer:
        last: RestAnswer | None = None
        for version in self._versions():
            try:
                answer = await bounded.request(
                    self.client,
                    "GET",
                    self._url(version, tail),
                    headers=self.headers,
                    timeout=self.timeout,
                    max_bytes=self.max_bytes,
                )
            except EndpointError as exc:
                raise RestError(str(exc), status=exc.status) from None
            result: RestAnswer = read(answer.status, answer.body, version)
            if result.kind == "no_route" and self.version == "auto":
                last = result  # no such route here: try the older API
                continue
            if self.version == "auto" and version == "v1" and answer.status < 400:
                self.version = "v1"  # this server has no v2 routes; stop asking for them
            return result
        assert last is not None
        return last

    async def recording_state(self, ucc: str, correlation_id: str) -> RestAnswer:
        tail = f"{quote(ucc, safe='')}/{quote(correlation_id, safe='')}"
        return await self._get(tail, lambda s, b, v: read_state_answer(s, b, v, correlation_id))

    async def capabilities(self, ucc: str) -> RestAnswer:
        return await self._get(f"capabilities/{quote(ucc, safe='')}", read_capabilities)
