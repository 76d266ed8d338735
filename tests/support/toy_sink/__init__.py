"""A toy sink written only against the contract: the proof that adding a sink needs no
edit outside its own package except one registry line (see docs/architecture.md)."""

from __future__ import annotations

import json

import trio

from bridge.components import ComponentBase, SinkHealth, SinkKind
from bridge.settings import setting, settings
from bridge.sinks.base import SinkFeed


@settings
class ToySettings:
    name: str = setting(doc="unique name of this sink")
    batch: int = setting(100, min=1, doc="rows read per turn")


class ToySink(ComponentBase):
    """Keeps the CloudEvent types it was handed, in order."""

    received: list[str]

    def __init__(self, settings: ToySettings) -> None:
        self.settings = settings
        self.name = settings.name
        self.health = SinkHealth()
        self.received = []

    def stats(self) -> dict[str, float]:
        return {"delivered": float(len(self.received))}

    async def run(
        self, feed: SinkFeed, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        self.health.state = "ok"
        while True:
            rows = await feed.pending(self.settings.batch)
            if not rows:
                await feed.wait_for_new(timeout=1.0)
                continue
            self.received.extend(json.loads(r.body)["type"] for r in rows)
            await feed.delivered(rows)


KIND = SinkKind("toy", ToySettings, ToySink, doc=__doc__ or "")
