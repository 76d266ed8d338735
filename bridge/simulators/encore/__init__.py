"""Encore Web API simulator: the SOAP service of "Appendix A: Simulator", on loopback.

``protocol`` (the wire, written from the docs: it shares nothing with
``bridge.sources.encore``), ``state`` (the recorder's behaviour), ``server`` (HTTP),
``cli`` (``event-bridge simulate encore`` and the demo recorder).
"""

from bridge.simulators.encore.cli import DemoRecorder, add_arguments, build, for_source, main
from bridge.simulators.encore.protocol import DATACONTRACT_NS, MESSAGES
from bridge.simulators.encore.server import EncoreSimulator
from bridge.simulators.encore.state import NOT_RECORDING, PAUSE, RECORD, SUSPENDED, Reply, SimPort

__all__ = [
    "DATACONTRACT_NS",
    "MESSAGES",
    "NOT_RECORDING",
    "PAUSE",
    "RECORD",
    "SUSPENDED",
    "DemoRecorder",
    "EncoreSimulator",
    "Reply",
    "SimPort",
    "add_arguments",
    "build",
    "for_source",
    "main",
]
