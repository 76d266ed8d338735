"""The event contract: one JSON Schema (draft 2020-12) per event type, and what is built from it.

The schemas live in ``bridge/schemas/<family>/v<N>.json`` (``<family>`` is the event
type, ``vendor`` for every ``vendor.*`` type) and are the source of truth: the README
catalog, the AsyncAPI document (:mod:`.asyncapi`), the field names shaping rules may use
(:mod:`bridge.shaping`) and ``event-bridge schema ...`` (:mod:`.cli`) are all read from
them. Every event names its schema in ``dataschema`` (:func:`bridge.model.dataschema`).
"""

from bridge.contract.catalog import Catalog, SchemaEntry, catalog

__all__ = ["Catalog", "SchemaEntry", "catalog"]
