"""The Encore port state machine, pure: one test per row of the README's Encore mapping table.

Every expectation comes from the Web API 7.1 docs (state table of the recording control
requests, PortStatusEX's stateDuration, GetURL) and from the issue's mapping, never from
the code's output. Times are plain numbers: the bridge polled at ``T`` (previous state
seen) and again at ``T + 1``; wall and monotonic clocks agree here.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from bridge.sources.encore.states import NOT_RECORDING, PAUSE, RECORD, SUSPENDED
from bridge.sources.encore.tracker import (
    NOT_ASKED,
    URL_FAILED,
    URL_OK,
    URL_UNAVAILABLE,
    Observation,
    PortMemory,
    Rules,
    UrlLookup,
    needs_url,
    plan,
)

T = 1_700_000_000.0
A = "https://encore.example/urlplayer.aspx?fldCallIndex=1.0007&siteid=1"
B = "https://encore.example/urlplayer.aspx?fldCallIndex=2.0007&siteid=1"
RULES = Rules(tolerance=2.0, infer=True)


def obs(state: str, duration: float | None, at: float) -> Observation:
    return Observation(state, duration, at, at)


def ok(url: str) -> UrlLookup:
    return UrlLookup(url, URL_OK)


def seen(
    state: str, entered: float, at: float, url: str | None = None, held: str | None = None
) -> PortMemory:
    """The bridge's memory after a poll at ``at`` that saw ``state`` entered at ``entered``."""
    memory = PortMemory(state, entered, at, url=url, held_url=held, entered_mono=entered)
    memory.duration, memory.duration_seen = at - entered, at
    return memory


def kinds(steps: Iterable[object]) -> list[tuple[str, str | None, str, bool]]:
    return [(s.type, s.previous, s.state, s.inferred) for s in steps]  # type: ignore[attr-defined]


# -- first sight ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (RECORD, [("recording.started", None, RECORD, False)]),
        (PAUSE, [("recording.paused", None, PAUSE, False)]),
        (SUSPENDED, [("recording.suspended", None, SUSPENDED, False)]),
        (NOT_RECORDING, []),
    ],
)
def test_first_sight_says_where_the_port_is(state: str, expected: list[tuple[str, None, str, bool]]) -> None:
    lookup = ok(A) if state in (RECORD, PAUSE) else NOT_ASKED
    result = plan(None, obs(state, 30 if state != NOT_RECORDING else 0, T), lookup, rules=RULES)
    assert kinds(result.steps) == expected
    if expected:
        (step,) = result.steps
        assert step.at == T - 30 and step.time_source == "state_duration"  # "now - stateDuration"
        assert step.url == (A if state != SUSPENDED else None)


# -- one change between two polls -------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        (NOT_RECORDING, RECORD, [("recording.started", NOT_RECORDING, RECORD, False)]),
        (RECORD, PAUSE, [("recording.paused", RECORD, PAUSE, False)]),
        (PAUSE, RECORD, [("recording.resumed", PAUSE, RECORD, False)]),
        (RECORD, SUSPENDED, [("recording.suspended", RECORD, SUSPENDED, False)]),
        (SUSPENDED, RECORD, [("recording.resumed", SUSPENDED, RECORD, False)]),
        # PauseRecording: "Valid Entry State: RECORD, SUSPENDED".
        (SUSPENDED, PAUSE, [("recording.paused", SUSPENDED, PAUSE, False)]),
        # ResumeRecording: exit state "RECORD, SUSPENDED": the pause is over, the call is on hold.
        (
            PAUSE,
            SUSPENDED,
            [
                ("recording.resumed", PAUSE, SUSPENDED, False),
                ("recording.suspended", PAUSE, SUSPENDED, False),
            ],
        ),
        (RECORD, NOT_RECORDING, [("recording.stopped", RECORD, NOT_RECORDING, False)]),
        (PAUSE, NOT_RECORDING, [("recording.stopped", PAUSE, NOT_RECORDING, False)]),
        (SUSPENDED, NOT_RECORDING, [("recording.stopped", SUSPENDED, NOT_RECORDING, False)]),
        # A start the bridge never saw came first (PAUSE/SUSPENDED need a recording).
        (
            NOT_RECORDING,
            PAUSE,
            [("recording.started", NOT_RECORDING, RECORD, True), ("recording.paused", RECORD, PAUSE, False)],
        ),
        (
            NOT_RECORDING,
            SUSPENDED,
            [
                ("recording.started", NOT_RECORDING, RECORD, True),
                ("recording.suspended", RECORD, SUSPENDED, False),
            ],
        ),
    ],
)
def test_a_change_of_state_within_one_recording(
    before: str, after: str, expected: list[tuple[str, str, str, bool]]
) -> None:
    url = None if before == NOT_RECORDING else A
    memory = seen(before, T - 100, T, url=url)
    lookup = ok(A) if after in (RECORD, PAUSE) else NOT_ASKED
    result = plan(memory, obs(after, 0.5 if after != NOT_RECORDING else 0, T + 1), lookup, rules=RULES)
    assert kinds(result.steps) == expected
    # The same recording throughout: its link on every event (GetURL has no answer for a
    # recording first seen on hold).
    expected_url = None if (before, after) == (NOT_RECORDING, SUSPENDED) else A
    for step in result.steps:
        assert step.url == expected_url
        assert T <= step.at <= T + 1  # between the two polls
    assert result.memory.state == after
    assert result.memory.url == (None if after == NOT_RECORDING else expected_url)


def test_nothing_changed_emits_nothing_and_asks_nothing() -> None:
    memory = seen(RECORD, T - 100, T, url=A)
    observation = obs(RECORD, 101, T + 1)
    assert not needs_url(memory, observation, False, RULES)
    result = plan(memory, observation, rules=RULES)
    assert result.steps == [] and result.memory.seen == T + 1 and result.memory.url == A


# -- two or more changes between two polls ---------------------------------------------


def test_stop_and_start_between_two_polls_are_two_recordings() -> None:
    """Back-to-back calls: RECORD again, younger, and GetURL names another recording."""
    memory = seen(RECORD, T - 100, T, url=A)
    observation = obs(RECORD, 0.4, T + 1)
    assert needs_url(memory, observation, False, RULES)
    steps = plan(memory, observation, ok(B), rules=RULES).steps
    assert kinds(steps) == [
        ("recording.stopped", RECORD, NOT_RECORDING, True),
        ("recording.started", NOT_RECORDING, RECORD, True),
    ]
    assert [s.url for s in steps] == [A, B]
    assert steps[0].at == T and steps[0].time_source == "last_poll"  # the earliest it can have ended
    assert steps[1].at == pytest.approx(T + 0.6) and steps[1].time_source == "state_duration"


def test_stop_start_and_pause_between_two_polls() -> None:
    memory = seen(RECORD, T - 100, T, url=A)
    steps = plan(memory, obs(PAUSE, 0.2, T + 1), ok(B), rules=RULES).steps
    assert kinds(steps) == [
        ("recording.stopped", RECORD, NOT_RECORDING, True),
        ("recording.started", NOT_RECORDING, RECORD, True),
        ("recording.paused", RECORD, PAUSE, False),
    ]
    assert [s.url for s in steps] == [A, B, B]


def test_pause_and_back_to_another_recording() -> None:
    memory = seen(PAUSE, T - 50, T, url=A)
    steps = plan(memory, obs(RECORD, 0.3, T + 1), ok(B), rules=RULES).steps
    assert kinds(steps) == [
        ("recording.stopped", PAUSE, NOT_RECORDING, True),
        ("recording.started", NOT_RECORDING, RECORD, True),
    ]


def test_pause_and_resume_or_hold_and_retrieve_is_an_interruption_not_a_pause() -> None:
    """The answer cannot tell a pause (PCI: card data protected) from a hold: never a plain pause."""
    memory = seen(RECORD, T - 100, T, url=A)
    steps = plan(memory, obs(RECORD, 0.5, T + 1), ok(A), rules=RULES).steps
    assert kinds(steps) == [("recording.interrupted", RECORD, RECORD, True)]
    (step,) = steps
    assert step.inferred_kind == "pause_or_hold" and step.url == A
    assert step.window_start == T and step.at == pytest.approx(T + 0.5)


def test_without_geturl_a_younger_record_may_also_be_a_new_recording() -> None:
    """658 (no URL player): today's inference, said plainly."""
    memory = seen(RECORD, T - 100, T)
    steps = plan(memory, obs(RECORD, 0.5, T + 1), UrlLookup(None, URL_UNAVAILABLE), rules=RULES).steps
    assert kinds(steps) == [("recording.interrupted", RECORD, RECORD, True)]
    assert steps[0].inferred_kind == "pause_hold_or_new_recording" and steps[0].url is None
    failed = plan(memory, obs(RECORD, 0.5, T + 1), UrlLookup(None, URL_FAILED), rules=RULES).steps
    assert failed[0].inferred_kind == "pause_hold_or_new_recording"


def test_resume_and_pause_again_between_two_polls() -> None:
    """PAUSE is entered only by PauseRecording: a younger PAUSE is a second pause, for sure."""
    memory = seen(PAUSE, T - 100, T, url=A)
    steps = plan(memory, obs(PAUSE, 0.5, T + 1), ok(A), rules=RULES).steps
    assert kinds(steps) == [
        ("recording.resumed", PAUSE, RECORD, True),
        ("recording.paused", RECORD, PAUSE, True),
    ]
    assert all(s.inferred_kind is None for s in steps)


def test_a_younger_suspended_cannot_be_named() -> None:
    memory = seen(SUSPENDED, T - 100, T, url=A)
    observation = obs(SUSPENDED, 0.5, T + 1)
    assert not needs_url(memory, observation, False, RULES)  # GetURL: "Valid States: RECORD, PAUSE"
    steps = plan(memory, observation, rules=RULES).steps
    assert kinds(steps) == [("recording.interrupted", SUSPENDED, SUSPENDED, True)]
    assert steps[0].inferred_kind == "retrieve_pause_or_new_recording"


def test_a_held_call_and_another_recording_on_the_same_port() -> None:
    """The docs: a port can have a call on hold (SUSPENDED) and an active recording (RECORD)."""
    memory = seen(SUSPENDED, T - 100, T, url=A)
    result = plan(memory, obs(RECORD, 0.5, T + 1), ok(B), rules=RULES)
    assert kinds(result.steps) == [("recording.started", SUSPENDED, RECORD, False)]
    assert result.steps[0].url == B and result.steps[0].held_url == A
    assert (result.memory.url, result.memory.held_url) == (B, A)
    # When the port stops recording, nothing is left: both calls are over.
    stopped = plan(result.memory, obs(NOT_RECORDING, 0, T + 2), rules=RULES).steps
    assert kinds(stopped) == [
        ("recording.stopped", RECORD, NOT_RECORDING, False),
        ("recording.stopped", SUSPENDED, NOT_RECORDING, True),
    ]
    assert [s.url for s in stopped] == [B, A]


def test_a_recording_that_starts_and_stops_between_two_polls_cannot_be_seen() -> None:
    memory = seen(NOT_RECORDING, T - 100, T)
    assert plan(memory, obs(NOT_RECORDING, 0, T + 1), rules=RULES).steps == []


def test_a_younger_state_within_the_tolerance_is_the_same_state() -> None:
    memory = seen(RECORD, T - 100, T, url=A)
    assert not needs_url(memory, obs(RECORD, 100.5, T + 1), False, RULES)  # 0.5 s: noise
    observation = obs(RECORD, 99.5, T + 1)  # 1.5 s: noise, or entered again; GetURL can tell
    assert needs_url(memory, observation, False, RULES)
    assert plan(memory, observation, ok(A), rules=RULES).steps == []  # the same recording
    assert plan(memory, observation, rules=RULES).steps == []  # not asked: nothing claimed


def test_a_slightly_younger_state_with_another_url_is_another_recording() -> None:
    """Found by the soak: pause, then resume, stop, start and pause again within 2 s. The
    PAUSE looks only 1.5 s younger (whole seconds), but GetURL names another recording,
    so the port's next RECORD is that recording's resume, not an unexplained start."""
    memory = seen(PAUSE, T - 0.5, T, url=A)
    observation = obs(PAUSE, 0, T + 1)
    assert needs_url(memory, observation, False, RULES)
    result = plan(memory, observation, ok(B), rules=RULES)
    assert kinds(result.steps) == [
        ("recording.stopped", PAUSE, NOT_RECORDING, True),
        ("recording.started", NOT_RECORDING, RECORD, True),
        ("recording.paused", RECORD, PAUSE, False),
    ]
    assert [s.url for s in result.steps] == [A, B, B] and result.memory.url == B
    resumed = plan(result.memory, obs(RECORD, 0, T + 2), ok(B), rules=RULES).steps
    assert kinds(resumed) == [("recording.resumed", PAUSE, RECORD, False)]


def test_inference_can_be_turned_off() -> None:
    memory = seen(RECORD, T - 100, T, url=A)
    assert plan(memory, obs(RECORD, 0.5, T + 1), rules=Rules(infer=False)).steps == []


# -- dating -----------------------------------------------------------------------------


def test_a_change_is_never_dated_before_the_poll_that_saw_the_old_state() -> None:
    memory = seen(NOT_RECORDING, T - 100, T)
    (step,) = plan(memory, obs(RECORD, 20, T + 1), ok(A), rules=RULES).steps
    assert step.at == T and step.time_source == "last_poll"


def test_fixed_duration_servers_are_detected_and_then_dated_by_observation() -> None:
    """Appendix A: "If any other state is returned, the stateDuration is 20"."""
    memory = seen(NOT_RECORDING, T - 100, T)
    first = plan(memory, obs(RECORD, 20, T + 1), ok(A), rules=RULES)
    assert not first.static_detected
    second = plan(first.memory, obs(RECORD, 20, T + 2), rules=RULES)
    assert not second.static_detected and second.steps == []
    third = plan(second.memory, obs(RECORD, 20, T + 4), rules=RULES)  # whole seconds: 3 s is not proof
    assert not third.static_detected
    fourth = plan(third.memory, obs(RECORD, 20, T + 5.5), rules=RULES)  # 4.5 s later, still "20"
    assert fourth.static_detected and fourth.steps == []
    # From then on stateDuration dates nothing and reveals nothing.
    paused = plan(fourth.memory, obs(PAUSE, 20, T + 6), ok(A), static=True, rules=RULES).steps
    assert kinds(paused) == [("recording.paused", RECORD, PAUSE, False)]
    assert paused[0].at == T + 6 and paused[0].time_source == "received"


def test_a_whole_second_duration_that_repeats_for_a_second_is_not_a_fixed_duration() -> None:
    """stateDuration 1 answered for just under a second, then 2: a counting server."""
    rules = Rules(tolerance=1.0)
    memory = plan(None, obs(RECORD, 1, T), ok(A), rules=rules).memory
    for at in (T + 0.3, T + 0.6, T + 0.95):
        result = plan(memory, obs(RECORD, 1, at), rules=rules)
        assert not result.static_detected
        memory = result.memory
    assert not plan(memory, obs(RECORD, 2, T + 1.0), rules=rules).static_detected


def test_a_server_thought_fixed_that_counts_after_all_is_trusted_again() -> None:
    memory = seen(RECORD, T - 20, T, url=A)
    result = plan(memory, obs(RECORD, 25, T + 5), static=True, rules=RULES)
    assert result.static_cleared and result.steps == []
    assert not plan(memory, obs(RECORD, 20, T + 5), static=True, rules=RULES).static_cleared


def test_after_a_restart_a_fixed_duration_server_re_announces_nothing() -> None:
    """Persisted memory plus the persisted detection: the same RECORD, nothing to say."""
    memory = PortMemory.load(seen(RECORD, T, T + 30, url=A).dump())
    assert memory is not None and memory.url == A
    observation = obs(RECORD, 20, T + 600)  # "20" again, ten minutes later
    assert not needs_url(memory, observation, True, RULES)
    assert plan(memory, observation, static=True, rules=RULES).steps == []
    # Without the detection that "20" would look like a state entered 9 minutes later.
    assert kinds(plan(memory, observation, ok(A), rules=RULES).steps) == [
        ("recording.interrupted", RECORD, RECORD, True)
    ]


def test_70_servers_give_no_duration_changes_are_dated_by_observation() -> None:
    memory = seen(RECORD, T - 100, T, url=A)
    (step,) = plan(memory, obs(PAUSE, None, T + 1), ok(A), rules=RULES).steps
    assert (step.type, step.at, step.time_source) == ("recording.paused", T + 1, "received")
    assert plan(memory, obs(RECORD, None, T + 1), rules=RULES).steps == []  # nothing to compare


# -- memory -----------------------------------------------------------------------------


def test_memory_round_trips_and_bad_memory_is_ignored() -> None:
    memory = seen(SUSPENDED, T, T + 5, url=A, held=B)
    loaded = PortMemory.load(memory.dump())
    assert loaded is not None
    assert (loaded.state, loaded.entered, loaded.seen, loaded.url, loaded.held_url) == (
        SUSPENDED,
        T,
        T + 5,
        A,
        B,
    )
    assert loaded.entered_mono is None  # monotonic clocks do not survive a restart
    for bad in (
        "",
        "{}",
        '{"state": "DEFROSTING", "entered": 1}',
        "[1]",
        '{"state": "RECORD", "entered": "x"}',
    ):
        assert PortMemory.load(bad) is None
    old = PortMemory.load('{"state": "RECORD", "entered": 5, "seen": 9}')  # before GetURL
    assert old is not None and old.url is None


def test_an_unknown_url_is_asked_once_then_kept() -> None:
    memory = seen(RECORD, T - 100, T)  # e.g. memory from before GetURL was used
    observation = obs(RECORD, 101, T + 1)
    assert needs_url(memory, observation, False, RULES)
    kept = plan(memory, observation, ok(A), rules=RULES)
    assert kept.steps == [] and kept.memory.url == A
    failed = plan(memory, observation, UrlLookup(None, URL_FAILED), rules=RULES)
    assert not needs_url(failed.memory, obs(RECORD, 102, T + 2), False, RULES)  # not on every poll


def test_last_seen_is_when_the_request_was_sent_not_when_the_answer_came() -> None:
    """The old state held at some moment between sending and receiving: a later change
    can only be bounded by the sending time."""
    first = plan(None, Observation(RECORD, 10, T + 1, T + 1, asked=T), ok(A), rules=RULES)
    assert first.memory.seen == T
    (stopped,) = plan(
        first.memory, Observation(NOT_RECORDING, 0, T + 3, T + 3, asked=T + 2), rules=RULES
    ).steps
    assert stopped.at == T + 3  # stateDuration 0 in NOT RECORDING: dated on arrival
    again = plan(first.memory, Observation(RECORD, 0.5, T + 3, T + 3, asked=T + 2), ok(B), rules=RULES).steps
    assert again[0].type == "recording.stopped" and again[0].at == T  # the earliest it can have happened


def test_a_duration_that_did_not_move_is_no_evidence_of_a_re_entry() -> None:
    """First seen on a fixed-duration server before the detection: "20" twice is not "younger"."""
    first = plan(None, obs(RECORD, 20, T), ok(A), rules=RULES)
    again = plan(first.memory, obs(RECORD, 20, T + 2.5), rules=RULES)
    assert again.steps == [] and not again.static_detected
