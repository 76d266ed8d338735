"""Sources: one package per kind, written against :mod:`bridge.components`.

A source package ``bridge.sources.<kind>`` exposes ``KIND`` (a ``SourceKind``: its settings
class and factory) and is named by one line in :mod:`bridge.registry`; the TOML table
``[[sources.<kind>]]`` is that registry key. See ``docs/architecture.md``.
"""
