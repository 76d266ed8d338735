"""What one port's answers mean: the pure state machine of the Encore source.

No trio, no sockets: :func:`plan` takes what the bridge knew about a port
(:class:`PortMemory`), the new PortStatus/PortStatusEX answer (:class:`Observation`)
and, when :func:`needs_url` asked for one, the GetURL answer (:class:`UrlLookup`), and
returns the events to emit and the new memory. The rules (the README's Encore mapping
table states them for users; ``tests/unit/encore/`` has one test per row):

* The docs' state table: ``PAUSE`` is entered only by PauseRecording, ``SUSPENDED`` is a
  call on hold, ResumeRecording leaves ``PAUSE`` for ``RECORD`` *or* ``SUSPENDED`` (a
  paused call that is on hold), and a port may hold one call while recording another.
* ``stateDuration`` dates a change (``now - stateDuration``), never earlier than the
  last time the bridge saw the port in its previous state. A state *younger* than the
  one already seen was left and entered again between two polls.
* ``GetURL`` (valid in RECORD and PAUSE) names the recording: a different URL is a new
  recording (``recording.stopped`` for the old one, ``recording.started`` for the new,
  both ``inferred``); the same URL is an interruption of the same recording.
* An interruption the bridge cannot name (pause or hold: the answer does not say) is
  ``recording.interrupted`` with ``data.inferred_kind``, never a plain pause.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace

from bridge.sources.encore.states import (
    ACTIVE,
    NOT_RECORDING,
    PAUSE,
    RECORD,
    SUSPENDED,
    URL_STATES,
    normalize_state,
)

INTERRUPTED = "recording.interrupted"

# data.time_source values: how an event's time was found.
BY_DURATION = "state_duration"  # now - stateDuration
BY_OBSERVATION = "received"  # when the bridge saw it (7.0 servers, durations that never grow)
BY_LAST_POLL = "last_poll"  # the earliest it can have happened: the last poll that saw the old state

# data.url_lookup values: what GetURL said for this event's recording.
URL_OK = "ok"
URL_UNAVAILABLE = "unavailable"  # 658 (URL player not configured) or turned off: identity unknown
URL_FAILED = "failed"  # asked, but no URL came back (an unexpected code)
URL_NOT_ASKED = "not_asked"  # the state has no URL (SUSPENDED) or nothing was ambiguous


@dataclass
class PortMemory:
    """What the bridge last knew about a port; all but the last three fields are persisted."""

    state: str
    entered: float  # epoch seconds the state was (estimated to be) entered
    seen: float  # epoch seconds the port was last seen in that state
    url: str | None = None  # GetURL of the current recording
    held_url: str | None = None  # a call kept on hold while another one records
    # Not persisted: compared on the monotonic clock, so a wall-clock step (NTP) between
    # two polls is never mistaken for a state that was left and re-entered.
    entered_mono: float | None = None
    duration: float | None = None  # last stateDuration reported
    duration_seen: float = 0.0  # monotonic time that duration value was first reported
    url_asked: bool = field(default=False, compare=False)

    def dump(self) -> str:
        data: dict[str, object] = {
            "state": self.state,
            "entered": round(self.entered, 3),
            "seen": round(self.seen, 3),
        }
        if self.url is not None:
            data["url"] = self.url
        if self.held_url is not None:
            data["held_url"] = self.held_url
        return json.dumps(data)

    @classmethod
    def load(cls, text: str) -> PortMemory | None:
        try:
            data = json.loads(text)
            state = normalize_state(data["state"])
            entered = float(data["entered"])
            seen = float(data.get("seen", entered))
            url, held = data.get("url"), data.get("held_url")
        except (ValueError, KeyError, TypeError, AttributeError):
            return None
        if state is None:
            return None
        return cls(
            state,
            entered,
            max(seen, entered),
            url=url if isinstance(url, str) else None,
            held_url=held if isinstance(held, str) else None,
        )


@dataclass(frozen=True)
class Observation:
    """One successful status answer: the state, its parsed stateDuration, when it came."""

    state: str
    duration: float | None  # None: PortStatus (7.0) or an unreadable stateDuration
    wall: float  # when the answer arrived
    mono: float
    # When the request was sent: the port was in ``state`` at some moment after this, so
    # it is the safe "last seen" bound for a change that comes later (the arrival is not).
    asked: float | None = None

    @property
    def seen(self) -> float:
        return self.asked if self.asked is not None else self.wall


@dataclass(frozen=True)
class UrlLookup:
    url: str | None
    status: str  # URL_OK, URL_UNAVAILABLE, URL_FAILED or URL_NOT_ASKED


NOT_ASKED = UrlLookup(None, URL_NOT_ASKED)


@dataclass(frozen=True)
class Rules:
    tolerance: float = 2.0  # seconds of slack comparing stateDuration with what was seen
    infer: bool = True  # announce what a younger stateDuration reveals


@dataclass(frozen=True)
class Step:
    """One event to emit."""

    type: str
    previous: str | None
    state: str
    at: float  # epoch seconds
    time_source: str
    inferred: bool = False
    url: str | None = None
    inferred_kind: str | None = None
    window_start: float | None = None  # earliest moment an inferred change can have happened
    held_url: str | None = None


@dataclass
class Plan:
    steps: list[Step]
    memory: PortMemory
    static_detected: bool = False  # stateDuration stood still: the server's durations date nothing
    static_cleared: bool = False  # a server thought static counts after all (trust it from now on)


def trusted_duration(obs: Observation, static: bool) -> float | None:
    return None if static else obs.duration


def younger_by(memory: PortMemory, obs: Observation, duration: float) -> float:
    """How much later the state (same as before) was entered than the bridge thought."""
    if memory.entered_mono is not None:
        return (obs.mono - duration) - memory.entered_mono
    return (obs.wall - duration) - memory.entered  # memory from before a restart: wall clock


def reentered(
    memory: PortMemory | None, obs: Observation, static: bool, rules: Rules, *, slack: float | None = None
) -> bool:
    """Same state as before, but entered again since: it was left between two polls.
    ``slack`` (default: the tolerance) is how much younger counts."""
    duration = trusted_duration(obs, static)
    if memory is None or memory.state != obs.state or duration is None or not rules.infer:
        return False
    if obs.state not in ACTIVE:  # NOT RECORDING: "this parameter is 0", it dates nothing
        return False
    if memory.duration is not None and obs.duration == memory.duration:
        return False  # a duration that did not move says nothing (a fixed one is detected apart)
    return younger_by(memory, obs, duration) > (rules.tolerance if slack is None else slack)


def needs_url(memory: PortMemory | None, obs: Observation, static: bool, rules: Rules) -> bool:
    """Ask GetURL before :func:`plan`? Only where it decides something: a recording state
    (RECORD/PAUSE) entered, re-entered, or whose URL the bridge does not know yet."""
    if obs.state not in URL_STATES:
        return False
    if memory is None or memory.state != obs.state:
        return True
    if memory.url is None and not memory.url_asked:
        return True
    # Possibly younger is enough to ask: whole-second durations make a state entered again
    # 1-2 s later ambiguous, and a different URL settles it (another recording). Only a
    # state younger by more than the tolerance is claimed re-entered without one.
    return reentered(memory, obs, static, rules, slack=rules.tolerance / 2)


# stateDuration counts whole seconds: the same value is legitimately reported for up to
# a second (plus the latency of two answers), so "it stood still" needs more than that.
RESOLUTION = 1.0


def static_duration(memory: PortMemory | None, obs: Observation, rules: Rules) -> bool:
    """A stateDuration that stays the same while time passes (the vendor's test service,
    Appendix A, always answers 20) cannot date anything."""
    return (
        memory is not None
        and obs.duration is not None
        and obs.duration > 0
        and memory.state == obs.state
        and memory.duration == obs.duration
        and obs.mono - memory.duration_seen > rules.tolerance + RESOLUTION
    )


def growing_duration(memory: PortMemory | None, obs: Observation) -> bool:
    """The same state with a larger stateDuration: the server's durations do count."""
    return (
        memory is not None
        and memory.state == obs.state
        and obs.duration is not None
        and memory.duration is not None
        and obs.duration > memory.duration
    )


def _remember_duration(memory: PortMemory, obs: Observation) -> None:
    if obs.duration != memory.duration:
        memory.duration, memory.duration_seen = obs.duration, obs.mono


def plan(
    memory: PortMemory | None,
    obs: Observation,
    lookup: UrlLookup = NOT_ASKED,
    *,
    static: bool = False,
    rules: Rules = Rules(),
) -> Plan:
    """The events ``obs`` reveals after ``memory``, and what to remember next."""
    detected = not static and static_duration(memory, obs, rules)
    cleared = static and growing_duration(memory, obs)
    static = static or detected
    duration = trusted_duration(obs, static)
    entered, source = (
        (obs.wall - duration, BY_DURATION) if duration is not None else (obs.wall, BY_OBSERVATION)
    )
    entered_mono = obs.mono - (duration or 0.0)
    url = lookup.url if lookup.status == URL_OK else None
    # The same state, but GetURL names another recording than the one remembered.
    other = memory is not None and None not in (url, memory.url) and url != memory.url
    again = reentered(memory, obs, static, rules) or other
    if memory is not None and (memory.state != obs.state or again) and entered < memory.seen:
        # It cannot have changed before the last poll that saw the old state.
        entered, entered_mono, source = min(memory.seen, obs.wall), obs.mono, BY_LAST_POLL
    if memory is None or (memory.state != obs.state) or again:
        steps = _steps(memory, obs.state, entered, source, lookup, again)
    else:
        steps = []
    if steps or memory is None:
        new = PortMemory(obs.state, entered, max(obs.seen, entered), entered_mono=entered_mono)
        new.url = _current_url(memory, obs.state, url, steps)
        new.held_url = _held_url(memory, obs.state, steps)
        new.url_asked = lookup.status != URL_NOT_ASKED
        _remember_duration(new, obs)
        return Plan(steps, new, detected, cleared)
    kept = replace(memory, seen=max(memory.seen, obs.seen))
    if kept.entered_mono is None:  # first look after a restart: anchor it
        kept.entered_mono = entered_mono
    if lookup.status != URL_NOT_ASKED:
        kept.url_asked = True
        if url is not None and kept.url is None:
            kept.url = url
    _remember_duration(kept, obs)
    return Plan([], kept, detected, cleared)


def _current_url(memory: PortMemory | None, state: str, url: str | None, steps: list[Step]) -> str | None:
    if state == NOT_RECORDING:
        return None
    if url is not None:
        return url
    if steps and steps[-1].url is not None:
        return steps[-1].url
    return memory.url if memory is not None and memory.state in ACTIVE else None


def _held_url(memory: PortMemory | None, state: str, steps: list[Step]) -> str | None:
    if state == NOT_RECORDING:
        return None
    for step in steps:
        if step.held_url is not None:
            return step.held_url
    return memory.held_url if memory is not None else None


def _steps(
    memory: PortMemory | None, state: str, at: float, source: str, lookup: UrlLookup, again: bool
) -> list[Step]:
    url = lookup.url if lookup.status == URL_OK else None
    if memory is None:  # first sight: say where the port is, nothing more is known
        first = {RECORD: "recording.started", PAUSE: "recording.paused", SUSPENDED: "recording.suspended"}
        return [Step(first[state], None, state, at, source, url=url)] if state in first else []
    old = memory.state
    old_url = memory.url
    bound = min(memory.seen, at)  # an inferred change happened after the last poll saw the old state
    ctx = _Ctx(memory, at, source, bound, url, lookup.status)
    if state == NOT_RECORDING:
        steps = [Step("recording.stopped", old, state, at, source, url=old_url)]
        if memory.held_url is not None:  # nothing records any more: the held call is over too
            steps.append(
                Step("recording.stopped", SUSPENDED, state, at, source, inferred=True, url=memory.held_url)
            )
        return steps
    if old == NOT_RECORDING:
        if state == RECORD:
            return [Step("recording.started", old, state, at, source, url=url)]
        kind = "recording.paused" if state == PAUSE else "recording.suspended"
        return [
            Step("recording.started", old, RECORD, at, source, inferred=True, url=url, window_start=bound),
            Step(kind, RECORD, state, at, source, url=url),
        ]
    if url is not None and old_url is not None and url != old_url:
        return ctx.new_recording(old, state, old_url, url)
    if again:
        return ctx.gap(state)
    return ctx.transition(old, state)


@dataclass(frozen=True)
class _Ctx:
    memory: PortMemory
    at: float
    source: str
    bound: float
    url: str | None
    url_status: str

    @property
    def known(self) -> str | None:
        return self.url if self.url is not None else self.memory.url

    def new_recording(self, old: str, state: str, old_url: str, url: str) -> list[Step]:
        """GetURL names another recording than the one the bridge knew."""
        if old == SUSPENDED and state == RECORD:
            # The docs: a port may keep a call on hold while recording another one.
            return [Step("recording.started", old, state, self.at, self.source, url=url, held_url=old_url)]
        steps = [
            Step(
                "recording.stopped", old, NOT_RECORDING, self.bound, BY_LAST_POLL,
                inferred=True, url=old_url, window_start=self.memory.seen,
            ),
            Step(
                "recording.started", NOT_RECORDING, RECORD, self.at if state == RECORD else self.bound,
                self.source if state == RECORD else BY_LAST_POLL, inferred=True, url=url,
                window_start=self.memory.seen,
            ),
        ]  # fmt: skip
        if state == PAUSE:
            steps.append(Step("recording.paused", RECORD, PAUSE, self.at, self.source, url=url))
        return steps

    def gap(self, state: str) -> list[Step]:
        """The same state, entered again since the last poll; what came between is unseen."""
        url, unknown = self.known, self.url_status in (URL_UNAVAILABLE, URL_FAILED)
        if state == PAUSE:
            # PAUSE is entered only by PauseRecording: the pause ended and a new one began.
            kind = "pause_again_or_new_recording" if unknown else None
            return [
                Step(
                    "recording.resumed", PAUSE, RECORD, self.bound, BY_LAST_POLL, inferred=True,
                    url=url, inferred_kind=kind, window_start=self.memory.seen,
                ),
                Step(
                    "recording.paused", RECORD, PAUSE, self.at, self.source, inferred=True,
                    url=url, inferred_kind=kind,
                ),
            ]  # fmt: skip
        if state == RECORD:
            kind = "pause_hold_or_new_recording" if unknown else "pause_or_hold"
        else:  # SUSPENDED: GetURL has no answer on hold, so a new recording cannot be told
            kind = "retrieve_pause_or_new_recording"
        return [
            Step(
                INTERRUPTED, state, state, self.at, self.source, inferred=True, url=url,
                inferred_kind=kind, window_start=self.memory.seen,
            )
        ]  # fmt: skip

    def transition(self, old: str, state: str) -> list[Step]:
        """A change of state within the same recording (or one GetURL could not name)."""
        url = self.known
        step = Step  # local alias keeps the table below readable
        if state == PAUSE:
            return [step("recording.paused", old, state, self.at, self.source, url=url)]
        if state == SUSPENDED:
            if old == PAUSE:
                # ResumeRecording on a paused call that is on hold: the pause is over.
                return [
                    step("recording.resumed", old, state, self.at, self.source, url=url),
                    step("recording.suspended", old, state, self.at, self.source, url=url),
                ]
            return [step("recording.suspended", old, state, self.at, self.source, url=url)]
        # state == RECORD, from PAUSE or SUSPENDED (GetURL found the same recording or could not tell)
        return [step("recording.resumed", old, state, self.at, self.source, url=url)]
