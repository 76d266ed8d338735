"""What every source implements and what the runner gives it.

A source is an object with a ``name``, a ``vendor``, a :class:`Health` and an async
``run(ctx, task_status)`` that never returns on its own (it reconnects forever) and
calls ``task_status.started()`` once it has begun trying. Everything it learns becomes
:class:`bridge.model.Event` objects handed to ``ctx.emit``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio

from bridge.model import Event
from bridge.quarantine import Quarantine


@dataclass
class Health:
    """A source's connection state as /readyz, systemd STATUS= and metrics show it.

    ``state`` is one of: starting, connected, polling, disconnected, error.
    """

    state: str = "starting"
    detail: str = ""
    reconnects: int = 0
    since: float = field(default_factory=lambda: trio.current_time() if _in_trio() else 0.0)

    @property
    def ready(self) -> bool:
        return self.state in ("connected", "polling")

    def set(self, state: str, detail: str = "") -> bool:
        """Record a state; returns True when it changed (so callers log transitions once)."""
        changed = (state, detail) != (self.state, self.detail)
        if state != self.state and state == "connected" and self.state != "starting":
            self.reconnects += 1
        self.state, self.detail = state, detail
        return changed


def _in_trio() -> bool:
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        return False
    return True


class Emitter(Protocol):
    async def emit(
        self,
        events: Sequence[Event],
        *,
        state: Mapping[str, str | None] | None = None,
        durable: bool = False,
    ) -> None:
        """Queue events for commit to the outbox.

        ``state``: source-scoped key/values (None deletes) committed in the same
        transaction as ``events``, so persisted source state never runs ahead of what
        was recorded. ``durable=True`` waits until that transaction is on disk.
        """


@dataclass
class SourceContext:
    """Handed to ``Source.run``: where events go and what the source may keep."""

    emitter: Emitter
    quarantine: Quarantine
    state: dict[str, str]  # this source's persisted state as of start-up
    log: Any  # a structlog logger bound with source=<name>

    async def emit(
        self,
        events: Sequence[Event],
        *,
        state: Mapping[str, str | None] | None = None,
        durable: bool = False,
    ) -> None:
        await self.emitter.emit(events, state=state, durable=durable)


class Source(Protocol):
    name: str
    vendor: str
    health: Health

    async def run(self, ctx: SourceContext, *, task_status: trio.TaskStatus[None] = ...) -> None: ...
