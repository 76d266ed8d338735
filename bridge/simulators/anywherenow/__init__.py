"""AnywhereNow simulator: a SignalR hub (JSON protocol over WebSockets) plus the REST
Recording API, on loopback, built from the vendor doc and the SignalR protocol specs.

It never imports ``bridge.sources``: wire formats are written here independently.
Layout: :mod:`.state` (recorder state), :mod:`.hub` (negotiate, hub protocol),
:mod:`.rest` (REST API), :mod:`.server` (the scriptable simulator), :mod:`.cli`.
"""

from bridge.simulators.anywherenow.cli import DemoHub, add_arguments, for_source, generate, main
from bridge.simulators.anywherenow.server import AnywhereNowSimulator
from bridge.simulators.anywherenow.state import ACTIONS, RS, CallRecord, RequestRecord

__all__ = [
    "ACTIONS",
    "RS",
    "AnywhereNowSimulator",
    "CallRecord",
    "DemoHub",
    "RequestRecord",
    "add_arguments",
    "for_source",
    "generate",
    "main",
]
