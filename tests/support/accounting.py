"""Loss accounting from independent records: the simulators' and receivers' journals only.

Nothing here reads the bridge's outbox, its counters or its logs. Every event a
simulator's journal says it produced is, at every receiver, exactly one of:

* **delivered** (at least once; extra copies must carry the same CloudEvent id);
* **unread**: proven gone in transit. Uptivity has no replay: an event produced while no
  subscriber was connected, or written on a connection past the last byte the bridge's
  kernel acknowledged before the connection died (``tcp_bytes_acked`` in the journal),
  never reached the bridge;
* **in transit at a kill** (``at_kill``, counted apart): the tail of what a bridge that
  was then killed with ``kill -9`` had been sent or shown and had not committed. The proof
  is order: the bridge commits a connection's (or a subject's) events in the order it read
  them, so a missing event *after which* nothing from the same connection (subject) in the
  same bridge lifetime was delivered is that lifetime's uncommitted tail; a missing event
  followed by a delivered one is a gap, and a gap is **lost**. Bridge lifetimes end at the
  kill times the test journals; the last one (stopped gracefully) has no tail to excuse;
* **unobservable**: proven to have existed only between two observations: no poll
  answer, REST answer or hub message the simulator served showed that state;
* **lost**: anything else. A category without proof is lost.

Journal entries this module reads (see ``bridge/simulators/journal.py``):

* Uptivity: ``emit {n, device}`` (n = EVENTXREF, the event's number), ``write {conn, n,
  end}`` (byte offset of the document's end on that connection, once the write
  completed), ``close {conn, acked}`` (bytes the peer's kernel acknowledged).
* State-polled or reconciled vendors (Encore, AnywhereNow): ``change {subject, state,
  n}`` (the subject entered ``state``; n numbers the changes) and ``observe {subject,
  state}`` (the simulator showed ``state`` to the bridge: a poll answer, a REST answer, a
  hub message written to a connected client).

Receivers (``tests/receivers.py``) journal every event they accepted with its id.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bridge.simulators.journal import Journal


def entries(journal: Journal) -> list[dict[str, Any]]:
    """A journal's entries, refusing one that let entries go (nothing could be proven)."""
    assert journal.dropped == 0, f"the journal dropped {journal.dropped} entries: raise its limit"
    return list(journal.entries)


@dataclass
class Tally:
    """One source at one receiver."""

    sent: int = 0
    delivered: int = 0
    duplicated: int = 0  # extra copies with the same id (at-least-once)
    new_id_duplicates: list[Any] = field(default_factory=list)  # same ground-truth event, another id
    unread: int = 0
    at_kill: int = 0  # in transit at a kill -9 (see module docstring)
    unobservable: int = 0
    lost: list[Any] = field(default_factory=list)  # ground-truth keys, with no proof
    unexplained: list[dict[str, Any]] = field(default_factory=list)  # delivered, matches nothing

    def row(self) -> dict[str, int]:
        return {
            "sent": self.sent,
            "delivered": self.delivered,
            "duplicated": self.duplicated + len(self.new_id_duplicates),
            "lost": len(self.lost),
            "unread": self.unread + self.at_kill,
            "unobservable": self.unobservable,
        }


def _lifetime(t: float, kills: Sequence[float]) -> int:
    """Index of the bridge lifetime ``t`` fell in: the first kill at or after it (a killed
    lifetime), or ``len(kills)`` for the last, graceful one."""
    return next((i for i, k in enumerate(kills) if t <= k), len(kills))


def uptivity(
    journal: Sequence[dict[str, Any]],
    delivered: Iterable[tuple[int, str]],
    *,
    kills: Sequence[float] = (),
) -> Tally:
    """``delivered``: (EVENTXREF, CloudEvent id) of every copy a receiver accepted;
    ``kills``: monotonic times of each ``kill -9``, in order (the test's own journal)."""
    tally = Tally()
    ids: dict[int, set[str]] = defaultdict(set)
    copies: dict[int, int] = defaultdict(int)
    for n, event_id in delivered:
        ids[n].add(event_id)
        copies[n] += 1
    acked: dict[Any, int | None] = {e["conn"]: e.get("acked") for e in journal if e["kind"] == "close"}
    writes: dict[int, list[dict[str, Any]]] = defaultdict(list)
    last_delivered: dict[Any, int] = {}  # connection -> journal seq of its last delivered write
    first_write: dict[Any, float] = {}
    for entry in journal:
        if entry["kind"] == "write":
            writes[entry["n"]].append(entry)
            first_write.setdefault(entry["conn"], entry["t"])
            if entry["n"] in ids:
                last_delivered[entry["conn"]] = entry["seq"]

    def tail_of_a_killed_bridge(w: dict[str, Any]) -> bool:
        killed = _lifetime(first_write[w["conn"]], kills) < len(kills)
        return killed and w["seq"] > last_delivered.get(w["conn"], -1)

    for entry in journal:
        if entry["kind"] != "emit":
            continue
        n = entry["n"]
        tally.sent += 1
        if n in ids:
            tally.delivered += 1
            tally.duplicated += copies[n] - len(ids[n])
            if len(ids[n]) > 1:
                tally.new_id_duplicates.append(n)
            continue
        if not writes[n]:
            tally.unread += 1  # produced while no subscriber was connected: no replay
            continue
        proven = all(
            w["conn"] in acked and acked[w["conn"]] is not None and w["end"] > int(acked[w["conn"]] or 0)
            for w in writes[n]
        )
        if proven:
            tally.unread += 1
        elif all(tail_of_a_killed_bridge(w) for w in writes[n]):
            tally.at_kill += 1
        else:
            tally.lost.append(n)
    return tally


Matcher = Callable[[str | None, dict[str, Any], dict[str, Any]], bool]
_WEIGHT = {"lost": 2, "unobservable": 1}


def _align(
    wanted: Sequence[tuple[dict[str, Any], str | None, str, str]],
    events: Sequence[dict[str, Any]],
    matches: Matcher | None,
) -> dict[int, int]:
    """Weighted in-order alignment of changes with events: change index -> event index."""
    n, m = len(wanted), len(events)

    def fits(i: int, j: int) -> bool:
        change, previous, kind, _ = wanted[i]
        return events[j]["type"] == kind and (matches is None or matches(previous, change, events[j]))

    score = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n - 1, -1, -1):
        row, below = score[i], score[i + 1]
        weight = _WEIGHT[wanted[i][3]]
        for j in range(m - 1, -1, -1):
            best = max(below[j], row[j + 1])
            if fits(i, j):
                best = max(best, weight + below[j + 1])
            row[j] = best
    out: dict[int, int] = {}
    i = j = 0
    while i < n and j < m:
        # Among equally good alignments, an event goes to the latest change it can: an
        # event that names no recording (GetURL answered 608) fits an earlier change of
        # the same type too, and the earlier one is the one a killed bridge may not have
        # committed (found by the crash test: a start shown just before a kill took the
        # event of the start the next bridge saw, and that one counted as lost).
        if score[i][j] == score[i + 1][j]:
            i += 1
        elif fits(i, j) and score[i][j] == _WEIGHT[wanted[i][3]] + score[i + 1][j + 1]:
            out[i] = j
            i, j = i + 1, j + 1
        else:
            j += 1
    return out


Alike = Callable[[dict[str, Any], dict[str, Any]], bool]


def _as_seen(
    history: Sequence[dict[str, Any]], observed: Sequence[tuple[int, str, float]], alike: Alike
) -> list[tuple[int, str, float]]:
    """Observations as the bridge could read them. A state entered again too soon after
    the one the previous observation showed (``alike``) may read as that one still
    holding: every observation of it is marked ambiguous (its state gets a ``~`` prefix,
    which matches no change), so it proves neither that state nor the step into the next."""
    seqs = [c["seq"] for c in history]
    out: list[tuple[int, str, float]] = []
    previous: int | None = None  # index in history of the last observation's state
    ambiguous: set[int] = set()
    for seq, state, t in observed:
        at = bisect_right(seqs, seq) - 1
        if at >= 0 and previous is not None and at != previous and alike(history[previous], history[at]):
            ambiguous.add(at)
        previous = at
        out.append((seq, "~" + state if at in ambiguous else state, t))
    return out


def _in_a_killed_tail(
    index: int,
    shown_at: Sequence[Sequence[float]],
    matched: dict[int, int],
    events: Sequence[dict[str, Any]],
    kills: Sequence[float],
) -> bool:
    """Change ``index`` was shown only to bridges that were then killed, each time after
    the last change of its subject that bridge is proven to have committed (delivered
    before it was killed): its uncommitted tail."""
    for t in shown_at[index]:
        life = _lifetime(t, kills)
        if life == len(kills):
            return False
        for other, j in matched.items():
            delivered_by_it = "t" in events[j] and events[j]["t"] <= kills[life]
            if delivered_by_it and any(
                later > t and _lifetime(later, kills) == life for later in shown_at[other]
            ):
                return False
    return True


def _across_a_kill(
    index: int,
    wanted: Sequence[tuple[dict[str, Any], str | None, str, str]],
    matched: dict[int, int],
    observed: Sequence[tuple[int, str, float]],
    shown_at: Sequence[Sequence[float]],
    kills: Sequence[float],
) -> bool:
    """The step into change ``index`` was shown across a kill: the last thing shown before
    it went to a bridge that was killed, and nothing from that change on was delivered, so
    the successor never had the state this change left (it saw no step)."""
    first = min(shown_at[index])
    before = [(seq, t) for seq, _state, t in observed if t < first]
    if not before:
        return False
    seq, t = before[-1]
    if _lifetime(t, kills) >= _lifetime(first, kills):
        return False
    holding = [i for i, (change, *_rest) in enumerate(wanted) if change["seq"] <= seq and i < index]
    start = holding[-1] if holding else 0
    return all(i not in matched for i in range(start, index))


def states(
    journal: Sequence[dict[str, Any]],
    delivered: Iterable[dict[str, Any]],
    expected_type: Callable[[str | None, str], str | None],
    *,
    kills: Sequence[float] = (),
    matches: Matcher | None = None,
    alike: Alike | None = None,
) -> Tally:
    """Accounting for vendors whose state the bridge observes (polls, REST, hub messages).

    ``delivered``: every CloudEvent copy a receiver accepted (``id``, ``subject``,
    ``type``), in arrival order. ``expected_type(previous, new)`` names the event type
    that announces a change from ``previous`` to ``new`` (None: no event expected, e.g. a
    change the bridge is not meant to report).

    Changes are aligned with the delivered events of their subject in order (the longest
    common subsequence of expected and delivered types, preferring changes the bridge was
    shown, so a change nobody could see never takes the event of a later one); ``matches``
    (previous state, change, event) may require more than the type, such as the same
    recording. A change with no match is unobservable unless an observation showed its
    state while it held and the observation before that showed the state it left (the
    bridge was shown exactly this step); else it is lost (or in transit at a kill, when it
    was shown only just before one).

    ``alike(earlier, later)`` (two change entries) says when an observation of the later
    state may look on the wire like the earlier one still holding (Encore: the same state
    name entered again within the resolution of ``stateDuration``); see :func:`_as_seen`.
    """
    tally = Tally()
    by_subject: dict[str, list[dict[str, Any]]] = defaultdict(list)
    seen_ids: set[str] = set()
    for event in delivered:
        if event["id"] in seen_ids:
            tally.duplicated += 1
            continue
        seen_ids.add(event["id"])
        by_subject[str(event.get("subject"))].append(event)

    changes: dict[str, list[dict[str, Any]]] = defaultdict(list)
    # subject -> (journal seq, state, time)
    observed: dict[str, list[tuple[int, str, float]]] = defaultdict(list)
    connected: dict[Any, float] = {}  # hub client -> when it connected
    for entry in journal:
        if entry["kind"] == "change":
            changes[str(entry["subject"])].append(entry)
        elif entry["kind"] == "connect":
            connected[entry["client"]] = entry["t"]
        elif entry["kind"] == "observe":
            t = entry["t"]
            # A message written to a connection belongs to the bridge that opened it, even
            # when the write lands after that bridge was killed.
            opened = connected.get(entry.get("client"), t)
            if _lifetime(opened, kills) < _lifetime(t, kills):
                t = kills[_lifetime(opened, kills)]
            observed[str(entry["subject"])].append((entry["seq"], entry["state"], t))

    for subject, history in changes.items():
        events = by_subject.get(subject, [])
        if alike is not None:
            observed[subject] = _as_seen(history, observed[subject], alike)
        # What each change would be if nothing announced it, from the observations alone.
        wanted: list[tuple[dict[str, Any], str | None, str, str]] = []  # change, prev, type, category
        shown_at: list[list[float]] = []  # per wanted change: when its state was shown
        previous: str | None = None
        for i, change in enumerate(history):
            kind = expected_type(previous, change["state"])
            if kind is not None:
                # Observable: the bridge was shown the new state while it held, and the last
                # thing it was shown before was the state this change left (it saw exactly
                # this step; A, unseen B, A, or A, unseen B, C, shows it something else).
                until = history[i + 1]["seq"] if i + 1 < len(history) else float("inf")
                shown = [
                    t
                    for seq, state, t in observed[subject]
                    if change["seq"] <= seq < until and state == change["state"]
                ]
                before = [state for seq, state, _ in observed[subject] if seq < change["seq"]]
                saw_step = before[-1] == previous if before else previous is None
                category = "lost" if shown and saw_step else "unobservable"
                wanted.append((change, previous, kind, category))
                shown_at.append(shown)
            previous = change["state"]
        matched = _align(wanted, events, matches)

        for index, (change, _previous, kind, category) in enumerate(wanted):
            tally.sent += 1
            if index in matched:
                tally.delivered += 1
            elif category == "unobservable":
                tally.unobservable += 1
            elif _in_a_killed_tail(index, shown_at, matched, events, kills) or _across_a_kill(
                index, wanted, matched, observed[subject], shown_at, kills
            ):
                tally.at_kill += 1
            else:
                tally.lost.append((subject, change.get("n", change["seq"]), kind))
        # A second event for a change that was already matched (a repeat with a new id),
        # or an event that matches no change: both are claims the journal does not back.
        used = set(matched.values())
        tally.unexplained.extend(e for j, e in enumerate(events) if j not in used)
    for subject, events in by_subject.items():
        if subject not in changes:
            tally.unexplained.extend(events)
    return tally
