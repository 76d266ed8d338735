"""What the source keeps across restarts, in its persisted state (committed with events).

``port:<unit>/<port>`` holds a :class:`~bridge.sources.encore.tracker.PortMemory` (state,
when entered and last seen, the recording's URL); ``server:static_duration`` remembers
that the server's stateDuration never grows, so a restart does not mistake its "20" for
a state entered again.
"""

from __future__ import annotations

from collections.abc import Mapping

from bridge.sources.encore.states import NOT_RECORDING
from bridge.sources.encore.tracker import PortMemory

STATE_KEY_PREFIX = "port:"
STATIC_KEY = "server:static_duration"

Key = tuple[str, str]


def state_key(key: Key) -> str:
    return f"{STATE_KEY_PREFIX}{key[0]}/{key[1]}"


class PortStore:
    def __init__(self) -> None:
        self.ports: dict[Key, PortMemory] = {}
        self.static = False
        self.persisted: set[str] = set()  # keys committed at least once
        self.loaded = False

    def load(self, state: Mapping[str, str]) -> None:
        """The persisted state, on the first run only: when the supervisor restarts ``run``
        after a crash, the start-up state is older than what this object knows."""
        if self.loaded:
            return
        self.loaded = True
        self.static = state.get(STATIC_KEY) == "1"
        for key, value in state.items():
            if not key.startswith(STATE_KEY_PREFIX):
                continue
            unit, _, port = key[len(STATE_KEY_PREFIX) :].partition("/")
            memory = PortMemory.load(value)
            if memory is not None and port:
                self.ports[(unit, port)] = memory
                self.persisted.add(key)

    def on_shutdown(self) -> dict[str, str | None]:
        """When each port was last seen in its state, so events inferred after a restart
        are dated no earlier than that."""
        return {
            state_key(key): memory.dump()
            for key, memory in self.ports.items()
            if memory.state != NOT_RECORDING or state_key(key) in self.persisted
        }
