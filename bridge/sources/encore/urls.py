"""GetURL: the link a CRM stores for a recording, and what tells recordings apart.

The docs: GetURL is valid in RECORD and PAUSE and returns "the URL associated with the
recording". The source asks only where it decides something (see
:func:`bridge.sources.encore.tracker.needs_url`), through the server's one in-flight
budget. 658 (no URL player in Web.config) or a server without GetURL turns lookups off
for that server (every source polling it) with one warning; events then say
``data.url_lookup = "unavailable"``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio

from bridge.errors import EndpointError
from bridge.sources.encore import tracker
from bridge.sources.encore.resolver import Target
from bridge.sources.encore.soap import SoapError, SoapFault, SoapParseError, SoapResponse, server_key
from bridge.sources.encore.states import NOT_RECORDING_CODE, SUCCESS, TRANSIENT, URL_PLAYER_MISSING
from bridge.sources.encore.tracker import UrlLookup


class Transient(EndpointError):
    """A retryable failure: back off the whole endpoint, commit nothing for this poll."""


# Servers known to have no URL player, per trio run: one warning per server, not per source.
_NO_URL_PLAYER: dict[tuple[object, str], str] = {}


class RecordingUrls:
    def __init__(
        self,
        call: Callable[[str, list[tuple[str, str]]], Awaitable[SoapResponse]],
        quarantine: Callable[[str, bytes], None],
        where: str,
        unavailable: str | None = None,
    ) -> None:
        self._call = call
        self._quarantine = quarantine
        self.where = where  # the redacted server URL, for the warning
        self.server = server_key(where)  # the same server whoever polls it
        self.unavailable = unavailable  # why lookups are off, or None
        self.requests = 0
        self._warned: set[int | None] = set()

    async def lookup(self, log: Any, target: Target) -> tuple[UrlLookup, dict[str, str] | None]:
        """The port's current recording URL, and the answer's fields as sent."""
        if self.unavailable is None:
            self.unavailable = _NO_URL_PLAYER.get((trio.lowlevel.current_trio_token(), self.server))
        if self.unavailable is not None:
            return UrlLookup(None, tracker.URL_UNAVAILABLE), None
        self.requests += 1
        try:
            resp = await self._call("GetURL", [("Unit", target.unit), ("Port", target.port)])
        except SoapFault as fault:
            if not fault.action_not_supported:
                raise Transient(str(fault)) from None
            return self.disable(log, f"GetURL not supported: {fault.faultstring[:200]}"), None
        except SoapError as exc:
            if isinstance(exc, SoapParseError):
                self._quarantine(f"encore GetURL: {exc}", exc.raw)
            raise Transient(str(exc)) from None
        code, url = resp.code, (resp.get("URL") or "").strip()
        fields = dict(resp.fields)
        if code == SUCCESS and url:
            return UrlLookup(url, tracker.URL_OK), fields
        if code == URL_PLAYER_MISSING:
            return self.disable(log, f"{code} {resp.message}"), fields
        if code == NOT_RECORDING_CODE:
            # The port left RECORD/PAUSE between PortStatus and GetURL: what PortStatus showed
            # is still true and is announced (dropping it could lose that step); no link.
            return UrlLookup(None, tracker.URL_FAILED), fields
        if code in TRANSIENT or code is None:
            raise Transient(f"GetURL for {target.subject}: {code} {resp.message}")
        if code not in self._warned:
            self._warned.add(code)
            log.warning("encore_geturl_failed", subject=target.subject, code=code, message=resp.message)
        return UrlLookup(None, tracker.URL_FAILED), fields

    def disable(self, log: Any, why: str) -> UrlLookup:
        self.unavailable = why
        slot = (trio.lowlevel.current_trio_token(), self.server)
        if slot in _NO_URL_PLAYER:  # another source on this server already said so
            return UrlLookup(None, tracker.URL_UNAVAILABLE)
        _NO_URL_PLAYER[slot] = why
        log.warning(
            "encore_recording_urls_unavailable",
            url=self.where,
            reason=why,
            effect="no data.recording_url; a new recording between two polls cannot be told from an "
            "interruption (data.url_lookup = 'unavailable' and data.inferred_kind say so)",
            fix="configure the URL player in the ECAPI web service's Web.config",
        )
        return UrlLookup(None, tracker.URL_UNAVAILABLE)
