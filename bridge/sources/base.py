"""Transitional re-exports: the contract lives in :mod:`bridge.components`."""

from bridge.components import Emitter, Health, Source, SourceContext

__all__ = ["Emitter", "Health", "Source", "SourceContext"]
