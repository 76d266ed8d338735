"""``[[sinks.log]]``: one CloudEvent per line (JSON Lines), to a file or stdout."""

from bridge.components import SinkKind
from bridge.sinks.log.settings import LogSettings
from bridge.sinks.log.sink import LogSink

KIND = SinkKind("log", LogSettings, LogSink, doc=__doc__ or "")

__all__ = ["KIND", "LogSettings", "LogSink"]
