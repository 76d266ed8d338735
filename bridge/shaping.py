"""Per-endpoint shaping: which fields of ``data`` a sink sends, masked, hashed or dropped.

Declared in a sink's ``shape`` table, checked at load (``check-config`` and start) against
the event schemas, applied to the body of each row as it enters the sink's feed, so
webhooks sign what they send, and log and NATS sinks write the same shaped bytes. Only
``data`` changes: ``id`` (deterministic), ``type``, ``time`` and ``subject`` stay, so a
receiver still deduplicates on the id. Rules, in order::

    [sinks.webhook.shape]
    include_fields = ["vendor", "correlation_id", "device_*"]  # only these (globs); empty: all
    exclude_fields = ["user_fields"]                            # never these
    drop_raw = true                                             # no vendor payload
    redact = { "ani" = "mask", "agent_id" = "hash", "dnis" = "drop" }
    hash_key = "${credential:shape-hash-key}"                   # for "hash"

``mask`` keeps the last four characters (``*******4567``); ``hash`` is
``hex(HMAC-SHA256(hash_key, value))`` so a receiver holding the key can still join on
it; ``drop`` removes the field. A redacted field is redacted where the vendor's payload
repeats it too (``raw``: the schema's ``x-raw`` paths), so ``raw`` never leaks what a
rule hides. Every change is listed in ``data.redacted`` (``[{"field", "action"}]``).
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import json
from collections.abc import Callable, Iterator
from typing import Any

from bridge.settings import Validator, setting, settings

__all__ = ["ACTIONS", "ShapeSettings", "Shaper", "body_shaper"]

ACTIONS = ("mask", "hash", "drop")


@settings
class ShapeSettings:
    include_fields: tuple[str, ...] = setting(
        (), doc="only these data fields (dotted paths, globs); empty: all"
    )
    exclude_fields: tuple[str, ...] = setting((), doc="data fields never sent (dotted paths, globs)")
    drop_raw: bool = setting(False, doc="remove data.raw (everything the vendor sent)")
    redact: dict[str, str] = setting(
        factory=dict, doc='field -> "mask" (last 4 kept), "hash" (HMAC with hash_key) or "drop"'
    )
    hash_key: str | None = setting(None, secret=True, doc='key of the HMAC of redact = "hash"')

    @property
    def active(self) -> bool:
        return bool(self.include_fields or self.exclude_fields or self.drop_raw or self.redact)

    def validate(self, v: Validator) -> None:
        from bridge.contract.catalog import catalog

        cat = catalog()  # loads and checks every schema: a broken one is a StartupError
        rules = [(f"include_fields[{i}]", p) for i, p in enumerate(self.include_fields)]
        rules += [(f"exclude_fields[{i}]", p) for i, p in enumerate(self.exclude_fields)]
        rules += [(f"redact.{p}", p) for p in self.redact]
        for key, path in rules:
            if not path or not cat.matches(path):
                close = cat.closest(path)
                hint = f"; closest: {', '.join(close)}" if close else ""
                raise v.error(
                    key, f"{path!r} names no field of any event's data (see `event-bridge schema list`){hint}"
                )
        for path, action in self.redact.items():
            if action not in ACTIONS:
                raise v.error(f"redact.{path}", f"must be one of {', '.join(ACTIONS)}; got {action!r}")
        for path, action in self.redact.items():
            if action != "drop" and path in cat.object_fields():
                raise v.error(
                    f"redact.{path}",
                    f"{path!r} is an object: {action} applies to values; name them ({path}.*) or drop it",
                )
        if "hash" in self.redact.values() and not self.hash_key:
            first = next(p for p, a in self.redact.items() if a == "hash")
            raise v.error(f"redact.{first}", 'needs hash_key = "${credential:...}" (the HMAC key)')
        if self.hash_key is not None and len(self.hash_key) < 16:
            raise v.error("hash_key", "must be at least 16 characters (it keys an HMAC of caller data)")


def mask(value: str) -> str:
    text = value.strip()
    return "*" * len(text) if len(text) <= 4 else "*" * (len(text) - 4) + text[-4:]


def _walk(node: Any, prefix: str) -> Iterator[tuple[str, dict[str, Any], str]]:
    """(dotted path, parent dict, key) of every value below ``node``, depth first."""
    if isinstance(node, dict):
        for key in list(node):
            path = f"{prefix}{key}"
            yield path, node, key
            yield from _walk(node.get(key), f"{path}.")


def _match(path: str, patterns: tuple[str, ...], *, fold: bool = False) -> bool:
    if fold:
        return any(fnmatch.fnmatch(path.lower(), p.lower()) for p in patterns)
    return any(fnmatch.fnmatchcase(path, p) for p in patterns)


def _keep_only(node: dict[str, Any], prefix: str, patterns: tuple[str, ...], changed: dict[str, str]) -> None:
    """Remove from ``node`` every path that no pattern includes (or leads into)."""
    for key in list(node):
        path = f"{prefix}{key}"
        if _match(path, patterns):
            continue  # included, with everything below it
        value = node[key]
        if isinstance(value, dict) and any(p.startswith(f"{path}.") for p in patterns):
            _keep_only(value, f"{path}.", patterns, changed)
            continue
        del node[key]
        changed[path] = "drop"


class Shaper:
    """A compiled :class:`ShapeSettings`: ``event(dict)`` and ``body(bytes)`` are pure."""

    def __init__(self, shape: ShapeSettings, raw_paths: dict[str, tuple[str, ...]] | None = None) -> None:
        self.shape = shape
        self._key = (shape.hash_key or "").encode()
        if raw_paths is None:
            from bridge.contract.catalog import catalog

            raw_paths = catalog().raw_paths()
        self._raw_paths = raw_paths

    def _apply(self, action: str, parent: dict[str, Any], key: str) -> bool:
        value = parent.get(key)
        if action == "drop":
            del parent[key]
            return True
        if value is None or isinstance(value, dict | list) or not str(value).strip():
            return False  # nothing to hide
        text = value if isinstance(value, str) else json.dumps(value)
        if action == "mask":
            parent[key] = mask(text)
        else:
            parent[key] = hmac.new(self._key, text.strip().encode(), hashlib.sha256).hexdigest()
        return True

    def _redact_raw(self, raw: Any, patterns: tuple[str, ...], action: str, changed: dict[str, str]) -> None:
        if not patterns:
            return
        for path, parent, key in list(_walk(raw, "")):
            if key in parent and _match(path, patterns, fold=True) and self._apply(action, parent, key):
                changed[f"raw.{path}"] = action

    def data(self, data: dict[str, Any]) -> dict[str, Any]:
        """A shaped copy of ``data`` with ``redacted`` listing what changed."""
        out: dict[str, Any] = json.loads(json.dumps(data))
        changed: dict[str, str] = {}
        s = self.shape
        if s.include_fields:
            _keep_only(out, "", s.include_fields, changed)
        drop = s.exclude_fields + (("raw",) if s.drop_raw else ())
        for path, parent, key in list(_walk(out, "")):
            if key in parent and _match(path, drop):
                del parent[key]
                changed[path] = "drop"
        for pattern, action in s.redact.items():
            if pattern.startswith("raw."):
                self._redact_raw(out.get("raw"), (pattern[4:],), action, changed)
                continue
            for path, parent, key in list(_walk(out, "")):
                if path.startswith("raw.") or key not in parent:
                    continue
                if fnmatch.fnmatchcase(path, pattern):
                    if self._apply(action, parent, key):
                        changed[path] = action
                    # The same value where the vendor's payload repeats it.
                    self._redact_raw(
                        out.get("raw"), self._raw_paths.get(path.split(".", 1)[0], ()), action, changed
                    )
        if changed:
            out["redacted"] = [{"field": f, "action": a} for f, a in sorted(changed.items())]
        return out

    def event(self, event: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(event.get("data"), dict):
            return event
        return {**event, "data": self.data(event["data"])}

    def body(self, body: bytes) -> bytes:
        """A row's structured CloudEvent bytes, shaped (compact JSON, as the outbox writes)."""
        shaped = self.event(json.loads(body))
        return json.dumps(shaped, separators=(",", ":"), ensure_ascii=False).encode()


def body_shaper(component: Any) -> Callable[[bytes], bytes] | None:
    """The body shaper of a sink whose settings have an active ``shape`` table, else None."""
    shape = getattr(getattr(component, "settings", None), "shape", None)
    if not isinstance(shape, ShapeSettings) or not shape.active:
        return None
    return Shaper(shape).body
