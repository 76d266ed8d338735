"""Which unit/ports to poll: configured pairs plus extensions (InitStation) and Windows
login IDs (InitUser), re-resolved periodically because agents move desks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from bridge.backoff import Backoff
from bridge.sources.encore.settings import EncoreSettings
from bridge.sources.encore.soap import SoapError, SoapResponse
from bridge.sources.encore.states import SUCCESS, TRANSIENT

Call = Callable[[str, list[tuple[str, str]]], Awaitable[SoapResponse]]


@dataclass
class Target:
    """A unit/port being polled and what it was resolved from."""

    unit: str
    port: str
    origins: list[tuple[str, str]] = field(default_factory=list)  # ("extension"|"user", value)

    @property
    def key(self) -> tuple[str, str]:
        return (self.unit, self.port)

    @property
    def subject(self) -> str:
        return f"{self.unit}/{self.port}"


class Resolver:
    """Keeps ``targets`` up to date; a failed resolution keeps the last good mapping."""

    def __init__(self, settings: EncoreSettings, call: Call, legacy: Callable[[], bool | None]) -> None:
        self.settings = settings
        self._call = call
        self._legacy = legacy
        self.targets: dict[tuple[str, str], Target] = {k: Target(*k) for k in settings.port_keys}
        self.resolved: dict[tuple[str, str], tuple[str, str]] = {}  # origin -> unit/port
        self.unresolved: dict[tuple[str, str], str] = {}  # (kind, value) -> why
        self._logged: set[tuple[str, str]] = set()

    def origins(self) -> list[tuple[str, str]]:
        return [("extension", e) for e in self.settings.extensions] + [
            ("user", u) for u in self.settings.users
        ]

    def request(self, kind: str, value: str) -> tuple[str, list[tuple[str, str]]]:
        if kind == "extension":
            return "InitStation", [("Extension", value)]
        machine = self.settings.machine or value  # the docs: use the login ID if unknown
        if self._legacy():
            return "InitUser", [("userName", value), ("machineName", machine)]
        return "InitUser", [("Machine", machine), ("User", value)]

    async def resolve_one(self, log: Any, kind: str, value: str) -> bool:
        """Resolve one extension/user; False if it should be retried soon."""
        op, params = self.request(kind, value)
        try:
            resp = await self._call(op, params)
        except SoapError as exc:
            self.unresolved[(kind, value)] = type(exc).__name__
            if (kind, value) not in self._logged:
                self._logged.add((kind, value))
                log.warning("encore_resolve_failed", **{kind: value}, error=str(exc)[:500])
            return False
        code = resp.code
        unit, port = (resp.get("Unit") or "").strip(), (resp.get("Port") or "").strip()
        if code == SUCCESS and unit and port and (unit, port) != ("0", "0"):
            self._logged.discard((kind, value))
            self.unresolved.pop((kind, value), None)
            previous = self.resolved.get((kind, value))
            if previous != (unit, port):
                self.resolved[(kind, value)] = (unit, port)
                log.info(
                    "encore_resolved",
                    **{kind: value},
                    unit=unit,
                    port=port,
                    previous=f"{previous[0]}/{previous[1]}" if previous else None,
                )
            return True
        self.unresolved[(kind, value)] = str(code)
        if (kind, value) not in self._logged:
            self._logged.add((kind, value))
            log.error(
                "encore_resolve_failed",
                **{kind: value},
                code=code,
                message=resp.message,
                operation=op,
                hint="check the extension/user in the Encore Recorded User record",
            )
        return code not in TRANSIENT and code is not None

    async def resolve_all(self, log: Any) -> bool:
        """Resolve every extension/user and rebuild ``targets``."""
        complete = True
        for kind, value in self.origins():
            complete = await self.resolve_one(log, kind, value) and complete
        targets = {key: Target(*key) for key in self.settings.port_keys}
        for (kind, value), (unit, port) in self.resolved.items():
            targets.setdefault((unit, port), Target(unit, port)).origins.append((kind, value))
        for key in set(self.targets) - set(targets):
            log.warning(
                "encore_port_dropped",
                unit=key[0],
                port=key[1],
                reason="no configured extension/user resolves to it any more",
            )
        self.targets = targets
        return complete

    async def resolve_forever(self, log: Any) -> None:
        if not self.origins():
            return
        interval = self.settings.resolve_interval
        retry = Backoff(base=min(5.0, interval), cap=interval)
        complete = True
        while True:
            await trio.sleep(interval if complete else retry.next())
            complete = await self.resolve_all(log)
            if complete:
                retry.reset()
