"""``[[sources.anywherenow]]``: SignalR ``RecordingStateChangedEvent`` plus REST reconciliation.

Layout: :mod:`.settings` (every key), :mod:`.mapping` (payloads, pure), :mod:`.calls` and
:mod:`.reconciler` (per-call state and what a message or answer means, pure),
:mod:`.negotiate`, :mod:`.transport` and :mod:`.hub` (SignalR), :mod:`.rest` and
:mod:`.bounded` (REST, every read bounded), :mod:`.recovery` and :mod:`.source` (I/O shell).
"""

from bridge.components import SourceKind
from bridge.sources.anywherenow.settings import AnywhereNowSettings
from bridge.sources.anywherenow.source import AnywhereNowSource

KIND = SourceKind("anywherenow", AnywhereNowSettings, AnywhereNowSource, doc=__doc__ or "")

__all__ = ["KIND", "AnywhereNowSettings", "AnywhereNowSource"]
