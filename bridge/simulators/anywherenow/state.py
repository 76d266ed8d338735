"""The simulator's recorder: one call's states, and what it saw of its clients.

Independent of ``bridge.sources``: numbers and names are written here from the vendor
doc ("Get Recording state", "Recording events"), not imported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import trio

RS = "\x1e"
ACTIONS = {1: "Start", 2: "Stop", 3: "Pause", 4: "Save", 5: "Delete", 6: "Mark", 7: "UnMark"}
ACTION_NUMBERS = {name.lower(): number for number, name in ACTIONS.items()}
ERROR_CONFIGURATION, ERROR_VALIDATION = 1, 2  # the doc's "Configuration" / "Validation" errors (order)


def camel(name: str) -> str:
    """ASP.NET Core's (System.Text.Json) camelCase: ``UCCName`` -> ``uccName``."""
    i = 0
    while i < len(name) and name[i].isupper():
        i += 1
    if 1 < i < len(name):
        i -= 1  # the last capital starts the next word
    return name[:i].lower() + name[i:]


def _push(client: _Client, item: tuple[str, Any]) -> bool:
    """Queue a frame for one client; a client that is gone or hopelessly behind is skipped."""
    try:
        client.send.send_nowait(item)
    except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
        return False
    return True


def _field(payload: dict[str, Any], name: str) -> Any:
    for key, value in payload.items():
        if isinstance(key, str) and key.lower() == name.lower():
            return value
    return None


@dataclass
class CallRecord:
    """The recorder state of one call, as "Get Recording state" reports it."""

    ucc: str
    correlation_id: str
    recording: int = 0  # Uninitialized 0, Started 1, Stopped 2, Paused 3
    marking: int = 0  # None 0, Mark 1, Unmark 2
    saving: int = 0  # None 0, Save 1, Delete 2

    def apply(self, action: int) -> None:
        if action == 1:
            self.recording = 1
        elif action == 2:
            self.recording = 2
        elif action == 3:
            self.recording = 3
        elif action == 4:
            self.saving = 1
        elif action == 5:
            self.saving = 2
        elif action == 6:
            self.marking = 1
        elif action == 7:
            self.marking = 2

    def dimensions(self) -> dict[str, str]:
        """The three states by name, as the journal records them."""
        return {
            "recording": {0: "uninitialized", 1: "started", 2: "stopped", 3: "paused"}.get(
                self.recording, "?"
            ),
            "marking": {0: "none", 1: "mark", 2: "unmark"}.get(self.marking, "?"),
            "saving": {0: "none", 1: "save", 2: "delete"}.get(self.saving, "?"),
        }

    def as_json(self, *, report_uninitialized: bool = False, casing: str = "pascal") -> dict[str, Any]:
        """The doc's "session found" answer; ``report_uninitialized`` answers
        RecordingState 0 for a call that is recording (as the doc's own example does)."""
        recording = 0 if report_uninitialized and self.recording in (1, 3) else self.recording
        body = {
            "CorrelationId": self.correlation_id,
            "RecordingState": recording,
            "MarkingState": self.marking,
            "SavingState": self.saving,
            "ErrorMessage": None,
            "UCCName": self.ucc,
        }
        if casing == "camel":
            return {camel(k): v for k, v in body.items()}
        return body


@dataclass
class RequestRecord:
    """One request the simulator received (for tests: did the auth header arrive?)."""

    kind: str  # "http" or "websocket"
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]


@dataclass
class _Client:
    id: str
    send: trio.MemorySendChannel[tuple[str, Any]]
    ready: bool = False  # handshake done
    silent: bool = False  # "hung" hub: sends nothing any more
    handshake: dict[str, Any] = field(default_factory=dict)
