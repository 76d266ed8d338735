"""Operational logging: structlog, JSON lines off a terminal, readable on one.

Every line goes to stderr (stdout may carry the event log sink). Configured secrets are
replaced by ``[REDACTED]`` in every value before rendering, whatever logged them.

:func:`printable` is the one way a string from a peer (a vendor's DEVICEID, a receiver's
error page) reaches a terminal: control characters become ``\\uXXXX`` escapes, so such a
string can neither start a new line nor send escape sequences to the terminal.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any

import structlog

from bridge.netutil import redact_url

REDACTED = "[REDACTED]"

# C0 and C1 controls, DEL, the Unicode line/paragraph separators and the bidirectional
# overrides/isolates (which reorder what a terminal shows: "Trojan Source").
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(value: object) -> str:
    """``str(value)`` safe to print on one terminal line.

    Escapes are JSON-compatible (``\\u000a``), so a JSON line stays valid JSON.
    """
    return _UNPRINTABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", str(value))


_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


def safe_text(text: str) -> str:
    """A message for the operator's eyes (config errors, warnings, check-config) with every
    URL passed through :func:`bridge.netutil.redact_url` and every known secret replaced:
    the net under components that quote what they were given."""
    return str(redactor.scrub(_URL.sub(_redact_match, text)))


def _redact_match(match: re.Match[str]) -> str:
    url = match.group()
    core = url.rstrip(".,;:!?)]}")  # punctuation of the sentence, not of the URL
    return redact_url(core) + url[len(core) :]


_EXCERPT_LIMIT = 120
# XML text nodes and quoted strings (JSON values, attributes), possibly cut off at the end.
_TEXT = re.compile(r">[^<]*(?:<|$)|\"[^\"]*(?:\"|$)|'[^']*(?:'|$)")
_WORD = re.compile(r"\w")


def _mask_text(match: re.Match[str]) -> str:
    text = match.group()
    opener, closed = text[0], len(text) > 1 and text[-1] in "<\"'"
    inner = text[1:-1] if closed else text[1:]
    return opener + _WORD.sub("*", inner) + (text[-1] if closed else "")


def masked_excerpt(raw: object, limit: int = _EXCERPT_LIMIT) -> str:
    """The shape of a bad input without its call data, for a log line.

    Markup and punctuation stay; every letter and digit of text nodes and quoted
    values becomes ``*``, every other digit ``#`` (caller numbers, agent ids); at most
    ``limit`` characters, escaped for a terminal. Masking twice changes nothing.
    """
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes | bytearray) else str(raw)
    cut = re.sub(r"\d", "#", _TEXT.sub(_mask_text, text[:limit]))
    return printable(cut) + ("…" if len(text) > limit else "")


_RAW_KEYS = ("raw", "excerpt")


def _mask_quarantined(
    logger: Any, method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A line about quarantined input (it names ``quarantined=`` or says quarantine) carries
    no raw call data: the bytes are in the 0600 quarantine file, the line gets their shape."""
    if "quarantined" in event_dict or "quarantine" in str(event_dict.get("event", "")):
        for key in _RAW_KEYS:
            if key in event_dict and event_dict[key] is not None:
                event_dict[key] = masked_excerpt(event_dict[key])
    return event_dict


def _printable_values(
    logger: Any, method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """On a terminal (console renderer) no logged value may forge a line."""
    for key, value in list(event_dict.items()):
        if isinstance(value, str) and key != "exception":
            event_dict[key] = printable(value)
    return event_dict


class RedactSecrets:
    """A structlog processor that removes secret values from every logged string."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets: list[str] = []
        self.update(secrets)

    def update(self, secrets: Iterable[str]) -> None:
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def scrub(self, value: Any) -> Any:
        if isinstance(value, str):
            for secret in self.secrets:
                if secret in value:
                    value = value.replace(secret, REDACTED)
            return value
        if isinstance(value, dict):
            return {k: self.scrub(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.scrub(v) for v in value)
        if isinstance(value, bytes):
            return self.scrub(value.decode("utf-8", "replace"))
        if isinstance(value, BaseException):
            return self.scrub(str(value))
        return value

    def __call__(
        self, logger: Any, method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        if not self.secrets:
            return event_dict
        for key, value in list(event_dict.items()):
            event_dict[key] = self.scrub(value)
        return event_dict


redactor = RedactSecrets()


def configure(level: str = "info", *, json_output: bool | None = None, stream: Any = None) -> None:
    """Set up structlog for the process; safe to call again (e.g. after a reload)."""
    stream = stream or sys.stderr
    if json_output is None:
        json_output = not stream.isatty()
    renderer: Any = (
        structlog.processors.JSONRenderer(sort_keys=False)
        if json_output
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _mask_quarantined,
            redactor,
            *([] if json_output else [_printable_values]),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
