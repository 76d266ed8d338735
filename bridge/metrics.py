"""Prometheus metrics (prometheus-client), fed by small hooks on the pipeline.

Counters that events drive (received, delivered, retried, dead, latency) are updated
by callbacks on the committer and the sink feeds. Values that are state (connection
state, reconnects, outbox depth) are read at scrape time by a custom collector, so
nothing has to remember to update them. Component-specific numbers come only through
the contract: ``component.stats()``, whose keys :data:`bridge.components.STAT_METRICS`
maps to metric families. Outbox counts are the admin cache's (refreshed in the
background), never a query per scrape.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bridge.components import STAT_METRICS, Component
from bridge.outbox import Pending, Row

if TYPE_CHECKING:
    from bridge.service import Bridge

log = structlog.get_logger("bridge.metrics")

PREFIX = "event_bridge"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)
# stats() keys that only ever grow (Prometheus counters); the others are gauges.
COUNTER_STATS = frozenset({"events_read", "parse_errors", "reconciled", "throttled_seconds"})
_warned: set[tuple[str, str]] = set()


def component_stats(component: Component) -> Mapping[str, float]:
    """``component.stats()``, or nothing (logged once) when a component's stats() fails."""
    try:
        return component.stats()
    except Exception as exc:  # one broken component must not take /metrics down
        key = (component.name, type(exc).__name__)
        if key not in _warned:
            _warned.add(key)
            log.warning("component_stats_failed", component=component.name, error=repr(exc))
        return {}


def _stat_families(role: str) -> dict[str, CounterMetricFamily | GaugeMetricFamily]:
    families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {}
    for key, (name, doc) in STAT_METRICS.items():
        kind = CounterMetricFamily if key in COUNTER_STATS else GaugeMetricFamily
        families[key] = kind(f"{PREFIX}_{name}", doc, labels=[role])
    return families


class StateCollector(Collector):
    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge
        self.outbox_stats: Mapping[str, Any] = {}

    def collect(self) -> Iterator[Metric]:
        bridge = self.bridge
        connected = GaugeMetricFamily(
            f"{PREFIX}_source_connected",
            "1 when the source is connected or polling",
            labels=["source", "state"],
        )
        reconnects = CounterMetricFamily(
            f"{PREFIX}_source_reconnects", "Reconnections per source", labels=["source"]
        )
        stats = _stat_families("source")
        for name, source in bridge.sources.items():
            connected.add_metric([name, source.health.state], 1.0 if source.health.ready else 0.0)
            reconnects.add_metric([name], float(source.health.reconnects))
            for key, value in component_stats(source).items():
                if key in stats:
                    stats[key].add_metric([name], float(value))
        yield from (connected, reconnects)
        yield from (f for f in stats.values() if f.samples)

        sink_state = GaugeMetricFamily(
            f"{PREFIX}_sink_up", "1 when the sink is delivering normally", labels=["sink", "state"]
        )
        sink_stats = _stat_families("sink")
        for name, sink in bridge.sinks.items():
            sink_state.add_metric([name, sink.health.state], 1.0 if sink.health.ready else 0.0)
            for key, value in component_stats(sink).items():
                if key in sink_stats:
                    sink_stats[key].add_metric([name], float(value))
        yield sink_state
        yield from (f for f in sink_stats.values() if f.samples)

        depth = GaugeMetricFamily(
            f"{PREFIX}_outbox_pending", "Events waiting for delivery per sink", labels=["sink"]
        )
        dead = GaugeMetricFamily(
            f"{PREFIX}_outbox_dead_letters", "Dead-lettered events per sink", labels=["sink"]
        )
        oldest = GaugeMetricFamily(
            f"{PREFIX}_outbox_oldest_pending_age_seconds",
            "Age of the oldest undelivered event",
            labels=["sink"],
        )
        outbox = self.outbox_stats
        now = time.time()
        for sink_name in bridge.sinks:
            counts = outbox.get("deliveries", {}).get(sink_name, {})
            depth.add_metric([sink_name], float(counts.get("pending", 0)))
            dead.add_metric([sink_name], float(counts.get("dead", 0)))
            received = outbox.get("oldest_pending", {}).get(sink_name)
            oldest.add_metric([sink_name], max(0.0, now - received) if received else 0.0)
        events = GaugeMetricFamily(f"{PREFIX}_outbox_events", "Events stored in the outbox")
        events.add_metric([], float(outbox.get("events", 0)))
        writable = GaugeMetricFamily(f"{PREFIX}_outbox_writable", "1 when commits succeed")
        writable.add_metric([], 0.0 if outbox.get("unwritable") or bridge.committer.unavailable else 1.0)
        age = GaugeMetricFamily(
            f"{PREFIX}_outbox_stats_age_seconds",
            "Age of the outbox counts above (refreshed in the background)",
        )
        refreshed = outbox.get("refreshed_at")
        age.add_metric([], max(0.0, now - refreshed) if refreshed else 0.0)
        yield from (depth, dead, oldest, events, writable, age)


class Metrics:
    def __init__(self, bridge: Bridge) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.received = Counter(
            f"{PREFIX}_events_received",
            "Events committed to the outbox",
            ["source", "type"],
            registry=self.registry,
        )
        self.deliveries = Counter(
            f"{PREFIX}_deliveries", "Delivery outcomes per sink", ["sink", "outcome"], registry=self.registry
        )
        self.latency = Histogram(
            f"{PREFIX}_delivery_latency_seconds",
            "From commit to confirmed delivery",
            ["sink"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.state = StateCollector(bridge)
        self.registry.register(self.state)
        bridge.committer.on_commit.append(self.on_commit)
        bridge.delivery_observers.append(self.on_delivery)

    def on_commit(self, batch: Sequence[Pending]) -> None:
        for pending in batch:
            for event in pending.events:
                self.received.labels(pending.source, event.type).inc()

    def on_delivery(self, sink: str, rows: Sequence[Row], outcome: str) -> None:
        self.deliveries.labels(sink, outcome).inc(len(rows))
        if outcome == "delivered":
            now = time.time()
            histogram = self.latency.labels(sink)
            for row in rows:
                histogram.observe(max(0.0, now - row.received_at))

    def render(self, outbox_stats: Mapping[str, Any]) -> bytes:
        self.state.outbox_stats = outbox_stats
        return generate_latest(self.registry)
