"""``[[sources.uptivity]]``: the Uptivity / inContact WFO Event Proxy (TCP XML stream),
with state recovered from the API server's status requests after every reconnect."""

from bridge.components import SourceKind
from bridge.sources.uptivity.api import events_request
from bridge.sources.uptivity.mapping import parse_vendor_time, to_event
from bridge.sources.uptivity.settings import UptivitySettings
from bridge.sources.uptivity.source import UptivitySource

KIND = SourceKind("uptivity", UptivitySettings, UptivitySource, doc=__doc__ or "")

__all__ = ["KIND", "UptivitySettings", "UptivitySource", "events_request", "parse_vendor_time", "to_event"]
