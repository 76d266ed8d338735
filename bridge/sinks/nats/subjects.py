"""Subjects: the template a sink publishes to, rendered per event (pure, no I/O).

Placeholders: ``{vendor}`` (data.vendor), ``{type}`` (the CloudEvent type; its dots
become subject tokens, e.g. ``events.uptivity.call.started``), ``{source}`` (the source
name), ``{subject}`` (the CloudEvent subject, ``_`` when absent) and ``{id}``.
Characters NATS does not allow in a token (space, ``*``, ``>``, and ``.`` except in
``type``) are replaced by ``_``.
"""

from __future__ import annotations

import re
import string
from typing import Any

__all__ = ["PLACEHOLDERS", "default_stream_subjects", "render_subject", "template_problem"]

PLACEHOLDERS = ("vendor", "type", "source", "subject", "id")
_UNSAFE = re.compile(r"[^A-Za-z0-9_\-.]")
_UNSAFE_TOKEN = re.compile(r"[^A-Za-z0-9_\-]")


def _token(value: Any, *, dots: bool) -> str:
    """A value made safe as one (or, with ``dots``, several) NATS subject tokens."""
    text = (_UNSAFE if dots else _UNSAFE_TOKEN).sub("_", str(value or ""))
    return ".".join(part or "_" for part in text.split(".")) if dots else (text or "_")


def render_subject(template: str, event: dict[str, Any], source_name: str) -> str:
    raw_data = event.get("data")
    data: dict[str, Any] = raw_data if isinstance(raw_data, dict) else {}
    values = {
        "vendor": _token(data.get("vendor"), dots=False),
        "type": _token(event.get("type"), dots=True),
        "source": _token(source_name, dots=False),
        "subject": _token(event.get("subject"), dots=False),
        "id": _token(event.get("id"), dots=False),
    }
    return template.format(**values)


def default_stream_subjects(template: str) -> list[str]:
    """``events.{vendor}.{type}`` → ``["events.>"]``: everything the template can produce."""
    literal = template.split("{", 1)[0]
    prefix = literal.rsplit(".", 1)[0] if "." in literal else ""
    return [f"{prefix}.>" if prefix else ">"]


def template_problem(template: str) -> str | None:
    """Why ``template`` cannot make a valid subject, or None when it can."""
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        return f"is not a valid template: {exc}"
    unknown = [f for f in fields if f not in PLACEHOLDERS]
    if unknown:
        return f"unknown placeholder {{{unknown[0]}}}; use {', '.join('{' + p + '}' for p in PLACEHOLDERS)}"
    sample = template.format(**{p: "x" for p in PLACEHOLDERS})
    if any(not part or part in ("*", ">") or _UNSAFE.search(part) for part in sample.split(".")):
        return f"{template!r} does not make a valid NATS subject (tokens of letters, digits, _ -)"
    if sample.startswith("$"):
        return "must not start with $ (reserved NATS subjects)"
    return None
