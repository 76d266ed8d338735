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


def ev(i: str, subject: str, type_: str) -> dict[str, Any]:
    return {"id": i, "subject": subject, "type": type_}


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


def test_in_transit_at_a_kill_needs_the_kill_time_and_is_counted_apart() -> None:
    j = journal(
        ("emit", {"n": 1}),
        ("write", {"conn": 1, "n": 1, "end": 10}),  # t = 1.0
        ("emit", {"n": 2}),
        ("write", {"conn": 1, "n": 2, "end": 20}),  # t = 3.0
        ("close", {"conn": 1, "acked": 20}),
    )
    assert uptivity(j, [], kills=[3.2], window=0.5).lost == [1]  # 1 was written 2.2 s before
    tally = uptivity(j, [(1, "a")], kills=[3.2], window=0.5)
    assert (tally.at_kill, tally.lost) == (1, [])
    assert uptivity(j, [(1, "a")]).lost == [2]  # without a kill, no excuse


def test_states_observation_just_before_a_kill_is_in_transit() -> None:
    j = journal(
        ("change", {"subject": "c", "state": "RECORD", "n": 1}),
        ("observe", {"subject": "c", "state": "RECORD"}),  # t = 1.0
        ("change", {"subject": "c", "state": "PAUSE", "n": 2}),
        ("observe", {"subject": "c", "state": "PAUSE"}),  # t = 3.0, just before the kill
        ("change", {"subject": "c", "state": "RECORD", "n": 3}),
        ("observe", {"subject": "c", "state": "RECORD"}),  # t = 5.0
    )
    got = [ev("a", "c", "recording.started")]
    tally = states(j, got, expected, kills=[3.1], window=0.5)
    assert tally.at_kill == 1  # the pause, shown only just before the kill
    assert tally.lost == [("c", 3, "recording.resumed")]  # the resume was shown long after
