"""Sinks: one package per kind, written against :mod:`bridge.components`.

A sink package ``bridge.sinks.<kind>`` exposes ``KIND`` (a ``SinkKind``: its settings
class and factory) and is named by one line in :mod:`bridge.registry`; the TOML table
``[[sinks.<kind>]]`` is that registry key. See ``docs/architecture.md``.
"""
