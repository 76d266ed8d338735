"""``[[sources.encore]]``: DVSAnalytics Encore, polled over its SOAP Web API (ECAPI.svc).

Layout: ``settings`` (the TOML keys), ``soap`` (the client and wire format), ``states``
(states, codes, durations), ``tracker`` (the pure per-port state machine), ``resolver``
(extensions and users to unit/port), ``poller`` (the paced sweep), ``source`` (the I/O
shell that ties them together).
"""

from bridge.components import SourceKind
from bridge.sources.encore.settings import EncoreSettings, PortSettings
from bridge.sources.encore.source import EncoreSource

KIND = SourceKind("encore", EncoreSettings, EncoreSource, doc=__doc__ or "")

__all__ = ["KIND", "EncoreSettings", "EncoreSource", "PortSettings"]
