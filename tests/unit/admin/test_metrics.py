"""Metrics read components only through the contract: health and stats() (STAT_METRICS keys)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from bridge.components import STAT_METRICS, ComponentBase, Health, SinkHealth
from bridge.metrics import Metrics


class FakeSource(ComponentBase):
    vendor = "test"

    def __init__(self, name: str, stats: dict[str, float] | None, state: str = "connected") -> None:
        self.name = name
        self._stats = stats
        self.health = Health(state=state, reconnects=3)

    def stats(self) -> dict[str, float]:
        if self._stats is None:
            raise RuntimeError("stats broke")
        return self._stats


class FakeSink(ComponentBase):
    def __init__(self, name: str, stats: dict[str, float]) -> None:
        self.name = name
        self._stats = stats
        self.health = SinkHealth(state="open")

    def stats(self) -> dict[str, float]:
        return self._stats


def scrape(bridge: Any, outbox: dict[str, Any]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = Metrics(bridge).render(outbox).decode()
    families = {f.name: f.type for f in text_string_to_metric_families(text)}
    assert families["event_bridge_source_events_read"] == "counter"
    assert families["event_bridge_encore_sweep_seconds"] == "gauge"
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }


def test_stats_keys_become_their_families_and_a_broken_component_does_not_break_the_scrape() -> None:
    bridge = SimpleNamespace(
        sources={
            "enc": FakeSource("enc", {"events_read": 7, "parse_errors": 2, "sweep_seconds": 1.5, "bogus": 9}),
            "up": FakeSource("up", {"events_read": 4, "reconciled": 1}, state="disconnected"),
            "bad": FakeSource("bad", None),
        },
        sinks={"crm": FakeSink("crm", {"throttled_seconds": 2.5})},
        committer=SimpleNamespace(on_commit=[], unavailable=None),
        delivery_observers=[],
    )
    outbox = {"events": 5, "deliveries": {"crm": {"pending": 4, "dead": 1}}, "oldest_pending": {}}
    samples = scrape(bridge, outbox)
    assert samples[("event_bridge_source_events_read_total", (("source", "enc"),))] == 7
    assert samples[("event_bridge_parse_errors_total", (("source", "enc"),))] == 2
    assert samples[("event_bridge_encore_sweep_seconds", (("source", "enc"),))] == 1.5
    assert samples[("event_bridge_source_reconciled_events_total", (("source", "up"),))] == 1
    assert samples[("event_bridge_sink_throttled_seconds_total", (("sink", "crm"),))] == 2.5
    assert not any("bogus" in name for name, _ in samples)
    assert ("event_bridge_encore_sweep_seconds", (("source", "up"),)) not in samples  # not reported
    # The broken one still has its health metrics; its stats are simply absent.
    assert samples[("event_bridge_source_connected", (("source", "bad"), ("state", "connected")))] == 1
    assert samples[("event_bridge_source_reconnects_total", (("source", "bad"),))] == 3
    assert samples[("event_bridge_source_connected", (("source", "up"), ("state", "disconnected")))] == 0
    assert samples[("event_bridge_sink_up", (("sink", "crm"), ("state", "open")))] == 0
    assert samples[("event_bridge_outbox_pending", (("sink", "crm"),))] == 4
    assert samples[("event_bridge_outbox_dead_letters", (("sink", "crm"),))] == 1
    assert samples[("event_bridge_outbox_writable", ())] == 1


def test_every_stat_key_has_a_family() -> None:
    assert set(STAT_METRICS) >= {"events_read", "parse_errors", "sweep_seconds", "reconciled"}
