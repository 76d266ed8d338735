"""Prometheus metrics (prometheus-client), fed by small hooks on the pipeline.

Counters that events drive (received, delivered, retried, dead, latency) are updated
by callbacks on the committer and the sink feeds. Values that are state (connection
state, reconnects, outbox depth, parse errors, sweep time) are read at scrape time by a
custom collector, so nothing has to remember to update them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from bridge.outbox import Row

PREFIX = "event_bridge"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)


class StateCollector(Collector):
    def __init__(self, bridge: Any) -> None:
        self.bridge = bridge
        self.outbox_stats: dict[str, Any] = {}

    def collect(self) -> Iterator[Any]:
        bridge = self.bridge
        connected = GaugeMetricFamily(
            f"{PREFIX}_source_connected",
            "1 when the source is connected or polling",
            labels=["source", "state"],
        )
        reconnects = CounterMetricFamily(
            f"{PREFIX}_source_reconnects", "Reconnections per source", labels=["source"]
        )
        parse_errors = CounterMetricFamily(
            f"{PREFIX}_parse_errors", "Inputs rejected and quarantined per source", labels=["source"]
        )
        sweep = GaugeMetricFamily(
            f"{PREFIX}_encore_sweep_seconds", "Duration of the last full poll sweep", labels=["source"]
        )
        for name, source in bridge.sources.items():
            connected.add_metric([name, source.health.state], 1.0 if source.health.ready else 0.0)
            reconnects.add_metric([name], float(source.health.reconnects))
            parse_errors.add_metric([name], float(getattr(source, "parse_errors", 0)))
            seconds = getattr(source, "last_sweep_seconds", None)
            if seconds is not None:
                sweep.add_metric([name], float(seconds))
        yield from (connected, reconnects, parse_errors, sweep)

        sink_state = GaugeMetricFamily(
            f"{PREFIX}_sink_up", "1 when the sink is delivering normally", labels=["sink", "state"]
        )
        for name, sink in bridge.sinks.items():
            sink_state.add_metric([name, sink.health.state], 1.0 if sink.health.ready else 0.0)
        yield sink_state

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
        stats = self.outbox_stats
        now = time.time()
        for sink in bridge.sinks:
            counts = stats.get("deliveries", {}).get(sink, {})
            depth.add_metric([sink], float(counts.get("pending", 0)))
            dead.add_metric([sink], float(counts.get("dead", 0)))
            received = stats.get("oldest_pending", {}).get(sink)
            oldest.add_metric([sink], max(0.0, now - received) if received else 0.0)
        events = GaugeMetricFamily(f"{PREFIX}_outbox_events", "Events stored in the outbox")
        events.add_metric([], float(stats.get("events", 0)))
        writable = GaugeMetricFamily(f"{PREFIX}_outbox_writable", "1 when commits succeed")
        writable.add_metric([], 0.0 if bridge.committer.unavailable else 1.0)
        yield from (depth, dead, oldest, events, writable)


class Metrics:
    def __init__(self, bridge: Any) -> None:
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

    def on_commit(self, batch: Sequence[Any]) -> None:
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

    def render(self, outbox_stats: dict[str, Any]) -> bytes:
        self.state.outbox_stats = outbox_stats
        return generate_latest(self.registry)
