"""Sinks: one module per kind.

A sink module ``bridge.sinks.<kind>`` exposes ``from_config(table) -> Sink``; the kind
is the TOML table name (``[[sinks.<kind>]]``). See :mod:`bridge.sinks.base`.
"""
