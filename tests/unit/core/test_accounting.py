"""The loss accounting itself: every category needs its proof, anything else is lost."""

from __future__ import annotations

from typing import Any

from tests.support.accounting import states, uptivity


def journal(*entries: tuple[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"seq": i + 1, "t": float(i), "kind": kind, **fields} for i, (kind, fields) in enumerate(entries)]


def test_uptivity_categories_each_need_their_proof() -> None:
    j = journal(
        ("emit", {"n": 1}),  # no subscriber: unread (no replay)
        ("emit", {"n": 2}),
        ("write", {"conn": 1, "n": 2, "end": 100}),
        ("emit", {"n": 3}),
        ("write", {"conn": 1, "n": 3, "end": 200}),
        ("emit", {"n": 4}),
        ("write", {"conn": 1, "n": 4, "end": 300}),
        ("close", {"conn": 1, "acked": 200}),  # 4 was past the acknowledged bytes
        ("emit", {"n": 5}),
        ("write", {"conn": 2, "n": 5, "end": 50}),
        ("close", {"conn": 2, "acked": None}),  # the kernel could not say: no proof
    )
    tally = uptivity(j, [(2, "a"), (2, "a")])
    assert tally.sent == 5
    assert tally.delivered == 1 and tally.duplicated == 1
    assert tally.unread == 2  # 1 (no subscriber) and 4 (in transit)
    assert tally.lost == [3, 5]  # 3 was acknowledged by the bridge's kernel; 5 has no proof


def test_uptivity_new_id_duplicate_is_counted_by_ground_truth() -> None:
    j = journal(("emit", {"n": 1}), ("write", {"conn": 1, "n": 1, "end": 10}))
    tally = uptivity(j, [(1, "a"), (1, "b")])
    assert tally.new_id_duplicates == [1]
    assert tally.row()["duplicated"] == 1


TYPES = {
    (None, "RECORD"): "recording.started",
    ("NOT", "RECORD"): "recording.started",
    ("RECORD", "PAUSE"): "recording.paused",
    ("PAUSE", "RECORD"): "recording.resumed",
    ("RECORD", "NOT"): "recording.stopped",
    ("PAUSE", "NOT"): "recording.stopped",
}


def expected(previous: str | None, new: str) -> str | None:
    return TYPES.get((previous, new))


def ev(i: str, subject: str, type_: str, t: float = 0.0) -> dict[str, Any]:
    return {"id": i, "subject": subject, "type": type_, "t": t}


def test_states_unobservable_needs_no_observation_in_between() -> None:
    j = journal(
        ("change", {"subject": "1/1", "state": "RECORD", "n": 1}),
        ("observe", {"subject": "1/1", "state": "RECORD"}),
        ("change", {"subject": "1/1", "state": "PAUSE", "n": 2}),  # never shown
        ("change", {"subject": "1/1", "state": "RECORD", "n": 3}),
        ("observe", {"subject": "1/1", "state": "RECORD"}),
        ("change", {"subject": "1/1", "state": "NOT", "n": 4}),
        ("observe", {"subject": "1/1", "state": "NOT"}),
    )
    got = [ev("a", "1/1", "recording.started"), ev("b", "1/1", "recording.stopped")]
    tally = states(j, got, expected)
    assert (tally.sent, tally.delivered, tally.unobservable, tally.lost) == (4, 2, 2, [])
    assert tally.unexplained == []


def test_states_a_dropped_but_observed_change_is_lost() -> None:
    j = journal(
        ("change", {"subject": "c", "state": "RECORD", "n": 1}),
        ("observe", {"subject": "c", "state": "RECORD"}),
        ("change", {"subject": "c", "state": "PAUSE", "n": 2}),
        ("observe", {"subject": "c", "state": "PAUSE"}),  # the bridge was shown the pause
        ("change", {"subject": "c", "state": "RECORD", "n": 3}),
        ("observe", {"subject": "c", "state": "RECORD"}),
    )
    got = [ev("a", "c", "recording.started"), ev("c", "c", "recording.resumed")]
    tally = states(j, got, expected)
    assert tally.lost == [("c", 2, "recording.paused")]


def test_states_repeat_with_a_new_id_is_unexplained_not_excused() -> None:
    j = journal(
        ("change", {"subject": "c", "state": "RECORD", "n": 1}),
        ("observe", {"subject": "c", "state": "RECORD"}),
        ("change", {"subject": "c", "state": "NOT", "n": 2}),
        ("observe", {"subject": "c", "state": "NOT"}),
    )
    got = [
        ev("a", "c", "recording.started"),
        ev("b", "c", "recording.stopped"),
        ev("b", "c", "recording.stopped"),  # same id: an at-least-once copy
        ev("x", "c", "recording.stopped"),  # another id: a second claim
    ]
    tally = states(j, got, expected)
    assert tally.delivered == 2 and tally.duplicated == 1
    assert [e["id"] for e in tally.unexplained] == ["x"]


def test_in_transit_at_a_kill_is_the_tail_of_a_killed_bridge_and_a_gap_is_lost() -> None:
    j = journal(
        ("emit", {"n": 1}),
        ("write", {"conn": 1, "n": 1, "end": 10}),  # t = 1.0
        ("emit", {"n": 2}),
        ("write", {"conn": 1, "n": 2, "end": 20}),  # t = 3.0
        ("close", {"conn": 1, "acked": 20}),  # t = 4.0
    )
    tally = uptivity(j, [(1, "a")], kills=[3.5])
    assert (tally.at_kill, tally.lost) == (1, [])  # 2 was the killed bridge's tail
    assert uptivity(j, [(2, "b")], kills=[3.5]).lost == [1]  # 1 is a gap: 2 came after it
    assert uptivity(j, [(1, "a")]).lost == [2]  # no kill, no tail to excuse


def test_states_a_change_shown_to_a_killed_bridge_is_its_tail_unless_a_later_one_arrived() -> None:
    j = journal(
        ("change", {"subject": "c", "state": "RECORD", "n": 1}),
        ("observe", {"subject": "c", "state": "RECORD"}),  # t = 1.0
        ("change", {"subject": "c", "state": "PAUSE", "n": 2}),
        ("observe", {"subject": "c", "state": "PAUSE"}),  # t = 3.0
        ("change", {"subject": "c", "state": "RECORD", "n": 3}),
        ("observe", {"subject": "c", "state": "RECORD"}),  # t = 5.0
    )
    tail = states(j, [ev("a", "c", "recording.started")], expected, kills=[3.5])
    # The pause was the killed bridge's tail; its successor never saw the step to RECORD.
    assert (tail.at_kill, tail.lost) == (2, [])
    gap = states(
        j, [ev("a", "c", "recording.started"), ev("c", "c", "recording.resumed")], expected, kills=[5.5]
    )
    assert gap.lost == [("c", 2, "recording.paused")]  # the resume, shown later, was delivered


def test_a_change_nobody_saw_never_takes_the_event_of_a_later_one() -> None:
    j = journal(
        ("change", {"subject": "c", "state": "RECORD", "n": 1}),
        ("observe", {"subject": "c", "state": "RECORD"}),
        ("change", {"subject": "c", "state": "PAUSE", "n": 2}),  # unseen
        ("change", {"subject": "c", "state": "RECORD", "n": 3}),  # unseen (A, B, A)
        ("observe", {"subject": "c", "state": "RECORD"}),
        ("change", {"subject": "c", "state": "PAUSE", "n": 4}),
        ("observe", {"subject": "c", "state": "PAUSE"}),
        ("change", {"subject": "c", "state": "RECORD", "n": 5}),
        ("observe", {"subject": "c", "state": "RECORD"}),
    )
    got = [
        ev("a", "c", "recording.started"),
        ev("b", "c", "recording.paused"),
        ev("d", "c", "recording.resumed"),
    ]
    tally = states(j, got, expected)
    assert (tally.delivered, tally.unobservable, tally.lost, tally.unexplained) == (3, 2, [], [])


# -- Encore: what a PortStatus answer can and cannot tell apart -------------------------


def port_journal(rows: list[tuple[float, str, str]]) -> list[dict[str, Any]]:
    """Journal entries of port 1/1 from (time, kind, state) rows, numbered in order."""
    return [
        {"seq": i + 1, "t": t, "kind": kind, "subject": "1/1", "state": state}
        for i, (t, kind, state) in enumerate(rows)
    ]


def encore_journal(second_pause_after: float) -> list[dict[str, Any]]:
    """Call 1 pauses and is seen paused; call 1 resumes and stops, call 2 starts and pauses
    ``second_pause_after`` seconds after call 1 paused, is seen paused, then resumes."""
    rows = [
        (0.0, "change", "RECORD@1"),
        (0.1, "observe", "RECORD@1"),
        (1.0, "change", "PAUSE@1"),
        (1.1, "observe", "PAUSE@1"),
        (1.2, "change", "RECORD@1"),
        (1.3, "change", "NOT RECORDING"),
        (1.4, "change", "RECORD@2"),
        (1.0 + second_pause_after, "change", "PAUSE@2"),
        (1.1 + second_pause_after, "observe", "PAUSE@2"),
        (1.2 + second_pause_after, "change", "RECORD@2"),
        (1.3 + second_pause_after, "observe", "RECORD@2"),
    ]
    return port_journal(rows)


def url(call: int) -> dict[str, Any]:
    return {"recording_url": f"https://encore.example/urlplayer.aspx?fldCallIndex={call}.0001&siteid=1"}


def test_encore_a_pause_entered_again_too_soon_to_tell_excuses_only_what_it_hides() -> None:
    """Whole-second stateDuration: a PAUSE entered 1.5 s after the PAUSE the bridge saw can
    read as the same pause, so call 2's resume was not visible (the bridge announced the
    new recording only when RECORD came). Five seconds later it can be told: lost."""
    from tests.support.ground_truth import encore_alike, encore_expected, encore_same_recording

    got = [
        {**ev("a", "1/1", "recording.started"), "data": url(1)},
        {**ev("b", "1/1", "recording.paused"), "data": url(1)},
        {**ev("c", "1/1", "recording.stopped"), "data": url(1)},
        {**ev("d", "1/1", "recording.started"), "data": url(2)},
    ]
    same, alike = encore_same_recording, encore_alike
    soon = states(encore_journal(1.5), got, encore_expected, matches=same, alike=alike)
    assert soon.lost == [] and soon.delivered == 4
    late = states(encore_journal(5.0), got, encore_expected, matches=same, alike=alike)
    assert [kind for _, _, kind in late.lost] == ["recording.resumed"]
    # Without the rule, the same run counts the hidden resume as lost.
    strict = states(encore_journal(1.5), got, encore_expected, matches=encore_same_recording)
    assert [kind for _, _, kind in strict.lost] == ["recording.resumed"]


def test_encore_an_event_must_name_the_recording_of_its_change() -> None:
    """A stop announced with call 1's link does not account for call 2's stop."""
    from tests.support.ground_truth import encore_expected, encore_same_recording

    j = [
        {"seq": 1, "t": 0.0, "kind": "change", "subject": "1/1", "state": "RECORD@2"},
        {"seq": 2, "t": 0.1, "kind": "observe", "subject": "1/1", "state": "RECORD@2"},
        {"seq": 3, "t": 9.0, "kind": "change", "subject": "1/1", "state": "NOT RECORDING"},
        {"seq": 4, "t": 9.1, "kind": "observe", "subject": "1/1", "state": "NOT RECORDING"},
    ]
    wrong = [
        {**ev("a", "1/1", "recording.started"), "data": url(2)},
        {**ev("b", "1/1", "recording.stopped"), "data": url(1)},
    ]
    tally = states(j, wrong, encore_expected, matches=encore_same_recording)
    assert [kind for _, _, kind in tally.lost] == ["recording.stopped"] and len(tally.unexplained) == 1


def test_an_event_without_a_recording_goes_to_the_latest_change_it_fits() -> None:
    """Found by the crash test: a start shown just before a kill (never committed) and the
    next start, which the next bridge saw and announced without a URL (GetURL answered
    608). The event is the second start's; the first is the killed bridge's tail."""
    from tests.support.ground_truth import encore_expected, encore_same_recording

    rows = [
        (0.0, "change", "NOT RECORDING"),
        (0.1, "observe", "NOT RECORDING"),
        (1.0, "change", "RECORD@1"),
        (1.1, "observe", "RECORD@1"),  # shown to the bridge killed at 1.2
        (1.3, "change", "NOT RECORDING"),
        (1.5, "observe", "NOT RECORDING"),  # the next bridge
        (2.0, "change", "RECORD@2"),
        (2.1, "observe", "RECORD@2"),
        (2.2, "change", "NOT RECORDING"),
        (2.3, "observe", "NOT RECORDING"),
    ]
    j = port_journal(rows)
    got = [
        {**ev("a", "1/1", "recording.started", 2.4), "data": {"recording_url": None}},
        {**ev("b", "1/1", "recording.stopped", 2.5), "data": {"recording_url": None}},
    ]
    tally = states(j, got, encore_expected, kills=[1.2], matches=encore_same_recording)
    assert tally.lost == [] and tally.at_kill == 2 and tally.delivered == 2  # start 1 and its stop
