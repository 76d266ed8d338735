"""The AnywhereNow REST Recording API calls the bridge needs: state and capabilities.

Paths follow the vendor doc: ``<rest_url>/api/v2/recording/<ucc>/<correlationId>`` with
``<rest_url>/api/recording/...`` (v1) as the fallback when a server has no v2 routes.
A 404 without an ErrorMessage body means "no such route" (try v1); a 404 that carries
an ErrorMessage means the server looked and found no such session.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from bridge.sources.anywherenow_hub import describe
from bridge.sources.anywherenow_mapping import field


@dataclass
class RestResult:
    """One REST answer: ``body`` is the JSON object (or None), ``error`` the ErrorMessage."""

    status: int
    body: dict[str, Any] | None
    error: dict[str, Any] | None
    version: str

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300 and self.error is None and self.body is not None


class RestError(Exception):
    """The REST API could not be asked (network, TLS, timeout) or answered nonsense."""


def error_message(body: Any) -> dict[str, Any] | None:
    """The ErrorMessage object (ErrorType, Message) of a response, or None when null."""
    if not isinstance(body, dict):
        return None
    value = field(body, "ErrorMessage")
    if value is None:
        return None
    if isinstance(value, dict):
        inner = field(value, "ErrorMessage")
        if isinstance(inner, dict):  # the doc's example nests it once more
            value = inner
        return {"ErrorType": field(value, "ErrorType"), "Message": field(value, "Message")}
    return {"ErrorType": None, "Message": str(value)}


class RecordingApi:
    """Talks to ``rest_url`` (e.g. https://host/attendantservice) with a shared client."""

    def __init__(self, client: httpx.AsyncClient, rest_url: str, version: str = "auto") -> None:
        self.client = client
        self.base = rest_url.rstrip("/")
        # "auto" tries v2 and falls back to v1 once a server shows it has no v2 routes.
        self.version = version

    def _versions(self) -> list[str]:
        return ["v2", "v1"] if self.version == "auto" else [self.version]

    def _url(self, version: str, tail: str) -> str:
        prefix = "/api/v2/recording" if version == "v2" else "/api/recording"
        return f"{self.base}{prefix}/{tail}"

    async def _get(self, tail: str) -> RestResult:
        last: RestResult | None = None
        for version in self._versions():
            try:
                response = await self.client.get(
                    self._url(version, tail), headers={"Accept": "application/json"}
                )
            except httpx.HTTPError as exc:
                raise RestError(describe(exc)) from exc
            body: Any = None
            if response.content:
                try:
                    body = response.json()
                except ValueError:
                    body = None
            if not isinstance(body, dict):
                body = None
            result = RestResult(response.status_code, body, error_message(body), version)
            if response.status_code == 404 and result.error is None and self.version == "auto":
                last = result  # no such route here: try the older API
                continue
            if self.version == "auto" and version == "v1" and response.status_code < 400:
                self.version = "v1"  # this server has no v2 routes; stop asking for them
            return result
        assert last is not None
        return last

    async def recording_state(self, ucc: str, correlation_id: str) -> RestResult:
        return await self._get(f"{quote(ucc, safe='')}/{quote(correlation_id, safe='')}")

    async def capabilities(self, ucc: str) -> RestResult:
        return await self._get(f"capabilities/{quote(ucc, safe='')}")
