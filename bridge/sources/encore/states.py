"""Encore's recording states, response codes and ``stateDuration`` formats (pure).

Everything here comes from the Web API 7.1/7.0 docs: the four ``portStatus`` values of
PortStatus/PortStatusEX, the response codes of Appendix D, and the fact that the docs
give ``stateDuration`` no type (so several encodings are accepted).
"""

from __future__ import annotations

import re

NOT_RECORDING = "NOT RECORDING"
RECORD = "RECORD"
PAUSE = "PAUSE"
SUSPENDED = "SUSPENDED"
STATES = frozenset({NOT_RECORDING, RECORD, PAUSE, SUSPENDED})
ACTIVE = frozenset({RECORD, PAUSE, SUSPENDED})
# GetURL: "Valid Recording States: RECORD, PAUSE".
URL_STATES = frozenset({RECORD, PAUSE})

# Wordings seen in the docs (7.0 Appendix A says "Recording", "Pause", "Not Recording").
_STATE_SYNONYMS = {
    "RECORDING": RECORD,
    "PAUSED": PAUSE,
    "NOTRECORDING": NOT_RECORDING,
    "NOT_RECORDING": NOT_RECORDING,
    "SUSPEND": SUSPENDED,
}

SUCCESS = 100
NOT_RECORDING_CODE = 608  # "Warning: Port was not recording" (GetURL outside RECORD/PAUSE)
URL_PLAYER_MISSING = 658  # "URL player address is not defined in ECAPI Web service's Web.config"
MISCONFIGURED = {606: "recording unit does not exist", 611: "port does not exist"}
# Failures of the recorder or the service itself: back off and ask again.
TRANSIENT = frozenset({621, 651, 653, 801})


def normalize_state(text: str | None) -> str | None:
    """The canonical state name, or None for something the docs do not define."""
    if text is None:
        return None
    folded = " ".join(text.split()).upper()
    if folded in STATES:
        return folded
    return _STATE_SYNONYMS.get(folded.replace(" ", ""), _STATE_SYNONYMS.get(folded))


# No port stays in one state for ten years; anything longer would date the event
# before year 1 (datetime raises) or simply be wrong.
MAX_STATE_DURATION = 10 * 366 * 86400

_ISO_DURATION = re.compile(
    r"^P(?:(?P<d>\d+(?:\.\d+)?)D)?(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?"
    r"(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)
_TIMESPAN = re.compile(r"^(?:(?P<d>\d+)\.)?(?P<h>\d+):(?P<m>\d{1,2}):(?P<s>\d{1,2}(?:\.\d+)?)$")


def parse_duration(text: str | None) -> float | None:
    """``stateDuration`` in seconds. The docs give no type, so accept plain seconds,
    xs:duration (WCF's TimeSpan: ``PT1M5S``) and .NET ``[d.]hh:mm:ss[.fff]``."""
    if text is None or not text.strip():
        return None
    value = text.strip()
    try:
        seconds = float(value)
    except ValueError:
        match = _ISO_DURATION.match(value) or _TIMESPAN.match(value)
        parts = {k: float(v) for k, v in match.groupdict().items() if v} if match else {}
        if not parts:  # no match, or "P" / "PT" with no component at all
            return None
        seconds = (
            parts.get("d", 0.0) * 86400
            + parts.get("h", 0.0) * 3600
            + parts.get("m", 0.0) * 60
            + parts.get("s", 0.0)
        )
    if not 0 <= seconds <= MAX_STATE_DURATION:  # negative, NaN, infinite or absurd
        return None
    return int(seconds) if seconds.is_integer() else seconds
