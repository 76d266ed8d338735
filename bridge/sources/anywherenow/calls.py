"""What the bridge remembers per call, and the bounded book that holds it (pure).

Per call: the last known recording, marking and saving state, as the REST enums number
them (vendor doc "Get Recording state"), plus when it last changed. It is committed with
the events (``ctx.emit(state=...)``) so a restart reconciles from the same memory. A call
is remembered until its recording stopped and its saving state is final (Save or
Delete), until ``forget_after`` passes, or until ``max_calls`` pushes it out.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from bridge.sources.anywherenow.mapping import REC_PAUSED, REC_STARTED, REC_STOPPED

Key = tuple[str, str]  # (UCC name, CorrelationId)
Enum = int | str | None  # a known or unknown enum value; None: never reported
FINAL_SAVING = (1, 2)  # Save, Delete
DIMENSIONS = ("recording", "marking", "saving")


def _enum(value: Any) -> Enum:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value:
        return value[:64]
    return None


@dataclass(frozen=True)
class CallState:
    recording: Enum = None
    marking: Enum = None
    saving: Enum = None
    since: float = 0.0  # wall-clock seconds of the last change the bridge saw
    # Dimensions whose value came from a reconcile answer: the first live message that
    # leads to the same value is the hub's late copy of that change, not a new one.
    from_reconcile: frozenset[str] = field(default=frozenset(), compare=False)

    @property
    def stopped(self) -> bool:
        return self.recording == REC_STOPPED

    @property
    def finished(self) -> bool:
        """Nothing more can happen to it: stopped, and saved or deleted."""
        return self.stopped and self.saving in FINAL_SAVING

    def value(self, dimension: str) -> Enum:
        result: Enum = getattr(self, dimension)
        return result

    def with_(self, dimension: str, value: Enum, since: float, *, reconciled: bool) -> CallState:
        flags = set(self.from_reconcile)
        if reconciled:
            flags.add(dimension)
        else:
            flags.discard(dimension)
        changes: dict[str, Any] = {dimension: value, "since": since, "from_reconcile": frozenset(flags)}
        return replace(self, **changes)

    def encode(self) -> str:
        data = {"r": self.recording, "m": self.marking, "s": self.saving, "since": round(self.since, 3)}
        return json.dumps(data, separators=(",", ":"))

    @staticmethod
    def decode(value: str, now: float) -> CallState | None:
        """Read a persisted state; the old form ``{"state": "started"|"paused"}`` too."""
        try:
            data = json.loads(value)
        except ValueError:
            data = {"state": value}
        if not isinstance(data, dict):
            return None
        since = data.get("since")
        moment = float(since) if isinstance(since, int | float) and not isinstance(since, bool) else now
        if "state" in data:  # written before marking and saving were remembered
            recording = {"started": REC_STARTED, "paused": REC_PAUSED}.get(str(data["state"]))
            return None if recording is None else CallState(recording, since=moment)
        state = CallState(_enum(data.get("r")), _enum(data.get("m")), _enum(data.get("s")), moment)
        if state.recording is None and state.marking is None and state.saving is None:
            return None
        return state


class CallBook:
    """Remembered calls, at most ``max_calls``; over it the oldest stopped calls go first."""

    def __init__(self, max_calls: int) -> None:
        self.max_calls = max_calls
        # OrderedDicts: taking the oldest is O(1) even after many removals at the front.
        self._calls: OrderedDict[Key, CallState] = OrderedDict()
        self._stopped: OrderedDict[Key, None] = OrderedDict()  # stopped, waiting for Save/Delete
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._calls)

    def __contains__(self, key: object) -> bool:
        return key in self._calls

    def get(self, key: Key) -> CallState | None:
        return self._calls.get(key)

    def items(self) -> Iterator[tuple[Key, CallState]]:
        return iter(list(self._calls.items()))

    def keys(self) -> set[Key]:
        return set(self._calls)

    def put(self, key: Key, state: CallState) -> list[Key]:
        """Remember ``state``; returns the calls pushed out to stay within ``max_calls``."""
        self._calls[key] = state
        if state.stopped:
            if key not in self._stopped:
                self._stopped[key] = None
        else:
            self._stopped.pop(key, None)
        evicted: list[Key] = []
        while len(self._calls) > self.max_calls:
            victim = next((k for k in self._stopped if k != key), None)
            if victim is None:
                victim = next(k for k in self._calls if k != key)
            self.remove(victim)
            evicted.append(victim)
        self.evicted += len(evicted)
        return evicted

    def settle(self, key: Key, state: CallState | None) -> None:
        """Forget a finished call, except one a REST answer finished: the hub may still
        deliver its copy of that change (the answer can be newer than a message not read
        yet), so it stays, unwatched, until the copy comes or :meth:`settled` lets it go."""
        if state is not None and (not state.finished or state.from_reconcile):
            self.put(key, state)
        else:
            self.remove(key)

    def remove(self, key: Key) -> CallState | None:
        self._stopped.pop(key, None)
        return self._calls.pop(key, None)

    def expired(self, now: float, forget_after: float) -> list[Key]:
        """Calls still waiting for a final answer, unchanged for longer than forget_after."""
        return [
            k for k, state in self._calls.items() if not state.finished and now - state.since > forget_after
        ]

    def settled(self, now: float, grace: float) -> list[Key]:
        """Finished calls (kept for the hub's late copy of a reconciled change) past ``grace``."""
        return [k for k, state in self._calls.items() if state.finished and now - state.since > grace]
