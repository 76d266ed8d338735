"""Per-vendor accounting of a run from the simulators' and receivers' journals.

Used by the kill -9 crash test and the soak: each vendor simulator's journal (what it
produced and what it showed the bridge) against one receiver's journal (what it accepted),
classified by :mod:`tests.support.accounting`. Nothing here reads the bridge's outbox.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from tests.support.accounting import Tally, entries, states, uptivity

# Encore states as the simulator journals them: NOT RECORDING, or "<state>@<call index>".
NOT_RECORDING = "NOT RECORDING"


def _split(state: str | None) -> tuple[str | None, str | None]:
    if state is None or state == NOT_RECORDING:
        return state, None
    name, _, call = state.partition("@")
    return name, call


def encore_expected(previous: str | None, new: str) -> str | None:
    """The event that announces an Encore port change (README, Encore mapping table)."""
    old, old_call = _split(previous)
    name, call = _split(new)
    if name == NOT_RECORDING:
        return None if old in (None, NOT_RECORDING) else "recording.stopped"
    if old in (None, NOT_RECORDING) or old_call != call:
        return "recording.started" if name == "RECORD" else None
    return {
        ("RECORD", "PAUSE"): "recording.paused",
        ("PAUSE", "RECORD"): "recording.resumed",
        ("RECORD", "SUSPENDED"): "recording.suspended",
        ("SUSPENDED", "RECORD"): "recording.resumed",
        ("SUSPENDED", "PAUSE"): "recording.paused",
        ("PAUSE", "SUSPENDED"): "recording.suspended",
    }.get((old or "", name or ""))


def encore_same_recording(previous: str | None, change: dict[str, Any], event: dict[str, Any]) -> bool:
    """An Encore event belongs to a change when it names the same recording: GetURL's link
    carries the recording's call index (``fldCallIndex=<call>.<port>``)."""
    _, call = _split(change["state"])
    if call is None:
        _, call = _split(previous)
    url = str((event.get("data") or {}).get("recording_url") or "")
    return call is None or not url or f"fldCallIndex={call}." in url


# stateDuration counts whole seconds and the bridge allows ``duration_tolerance`` (2 s) of
# slack: a state entered again less than this long after the same state was entered
# reads, in a PortStatus answer, like that state still holding (README, Encore mapping).
ENCORE_ALIKE_WITHIN = 2.0 + 1.0


def encore_alike(earlier: dict[str, Any], later: dict[str, Any]) -> bool:
    """Whether a poll showing ``later`` (a change entry) can be read as ``earlier`` still
    holding: the same state name (PortStatus shows no call), entered again too soon."""
    return (
        _split(earlier["state"])[0] == _split(later["state"])[0] != NOT_RECORDING
        and later["t"] - earlier["t"] <= ENCORE_ALIKE_WITHIN
    )


_ANW = {
    "recording": {"started": None, "paused": "recording.paused", "stopped": "recording.stopped"},
    "marking": {"mark": "recording.marked", "unmark": "recording.unmarked"},
    "saving": {"save": "recording.saved", "delete": "recording.deleted"},
}
_ANW_DIMENSION = {t: dim for dim, table in _ANW.items() for t in table.values() if t}
_ANW_DIMENSION.update({"recording.started": "recording", "recording.resumed": "recording"})


def anywherenow_expected(previous: str | None, new: str) -> str | None:
    """Subjects are ``<CorrelationId>#<dimension>``; states as the simulator names them."""
    if new == "started":
        return "recording.resumed" if previous and previous.endswith("paused") else "recording.started"
    for table in _ANW.values():
        if new in table:
            return table[new]
    return None


def of_source(events: Iterable[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in events if str(e.get("source", "")).endswith("/" + name)]


def account(
    receiver_journal: Sequence[dict[str, Any]],
    *,
    up: tuple[str, Any] | None = None,
    anw: tuple[str, Any] | None = None,
    enc: tuple[str, Any] | None = None,
    kills: Sequence[float] = (),
) -> dict[str, Tally]:
    """``up``/``anw``/``enc``: (source name in the bridge config, simulator) pairs."""
    out: dict[str, Tally] = {}
    if up is not None:
        name, sim = up
        got = [
            (int(e["data"]["raw"]["EVENTXREF"]), e["id"])
            for e in of_source(receiver_journal, name)
            if not e["data"].get("reconciled") and "EVENTXREF" in (e["data"].get("raw") or {})
        ]
        out[name] = uptivity(entries(sim.journal), got, kills=kills)
    if anw is not None:
        name, sim = anw
        got = [
            {**e, "subject": f"{e['subject']}#{_ANW_DIMENSION.get(e['type'], '?')}"}
            for e in of_source(receiver_journal, name)
        ]
        out[name] = states(entries(sim.journal), got, anywherenow_expected, kills=kills)
    if enc is not None:
        name, sim = enc
        out[name] = states(
            entries(sim.journal),
            of_source(receiver_journal, name),
            encore_expected,
            kills=kills,
            matches=encore_same_recording,
            alike=encore_alike,
        )
    return out


def unbacked_claims(tally: Tally) -> list[dict[str, Any]]:
    """Delivered events the journal does not back (a repeat with a new id, an invention).

    An Encore ``recording.interrupted`` says "left and re-entered recording between two
    polls, cannot say how": it matches no single change, so it is set aside here when the
    journal shows changes no poll could see (``tally.unobservable``).
    """
    if tally.unobservable:
        return [e for e in tally.unexplained if e.get("type") != "recording.interrupted"]
    return list(tally.unexplained)
