"""A planned :class:`~bridge.sources.encore.tracker.Step` as a CloudEvent's data (pure).

``data`` of every Encore event: unit, port, the extension/user it was resolved from,
previousState, state, stateDuration (of the final event only), inferred, time_source,
recording_url (GetURL), url_lookup, and when they apply inferred_kind, window_start and
held_recording_url; ``raw`` holds every field of the status answer as sent (plus the
GetURL answer under ``raw.GetURL``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bridge.model import Event
from bridge.sources.encore.resolver import Target
from bridge.sources.encore.tracker import URL_OK, URL_UNAVAILABLE, Step, UrlLookup

VENDOR = "encore"


def url_status(step: Step, lookup: UrlLookup, urls_unavailable: bool) -> str:
    if step.url is not None:
        return URL_OK
    if urls_unavailable:
        return URL_UNAVAILABLE
    return lookup.status


def build_event(
    source_name: str,
    target: Target,
    step: Step,
    duration: float | None,
    raw: dict[str, Any],
    url_lookup: str,
) -> Event:
    data: dict[str, Any] = {"unit": target.unit, "port": target.port}
    for kind, value in target.origins:
        data.setdefault(kind, value)
    data.update(
        {
            "previousState": step.previous,
            "state": step.state,
            "stateDuration": duration,
            "inferred": step.inferred,
            "time_source": step.time_source,
            "recording_url": step.url,
            "url_lookup": url_lookup,
        }
    )
    if step.inferred_kind is not None:
        data["inferred_kind"] = step.inferred_kind
    if step.window_start is not None:
        data["window_start"] = iso(step.window_start)
    if step.held_url is not None:
        data["held_recording_url"] = step.held_url
    data["raw"] = raw
    # The id is computed from this: the same change seen twice (a replayed poll, a
    # second bridge) gets the same id; two recordings in the same second do not.
    identity: dict[str, Any] = {
        "unit": target.unit,
        "port": target.port,
        "type": step.type,
        "from": step.previous,
        "to": step.state,
        "at": round(step.at),
    }
    if step.url is not None:
        identity["url"] = step.url
    return Event(
        source_name=source_name,
        vendor=VENDOR,
        type=step.type,
        subject=target.subject,
        time=datetime.fromtimestamp(step.at, UTC),
        data=data,
        identity=identity,
    )


def iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat().replace("+00:00", "Z")
