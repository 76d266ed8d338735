"""``[[sinks.nats]]``: every event published to a JetStream stream, deduplicated by id."""

from bridge.components import SinkKind
from bridge.sinks.nats.settings import NatsSettings
from bridge.sinks.nats.sink import NatsSink
from bridge.sinks.nats.subjects import default_stream_subjects, render_subject

KIND = SinkKind("nats", NatsSettings, NatsSink, doc=__doc__ or "")

__all__ = ["KIND", "NatsSettings", "NatsSink", "default_stream_subjects", "render_subject"]
