"""Sources: one module per vendor.

A source module ``bridge.sources.<kind>`` exposes ``from_config(table) -> Source``;
the kind is the TOML table name (``[[sources.<kind>]]``). See :mod:`bridge.sources.base`.
"""
