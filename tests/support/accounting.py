"""Loss accounting from independent records: the simulators' and receivers' journals only.

Nothing here reads the bridge's outbox, its counters or its logs. Every event a
simulator's journal says it produced is, at every receiver, exactly one of:

* **delivered** (at least once; extra copies must carry the same CloudEvent id);
* **unread**: proven gone in transit. Uptivity has no replay: an event produced while no
  subscriber was connected, or written on a connection past the last byte the bridge's
  kernel acknowledged before the connection died (``tcp_bytes_acked`` in the journal),
  never reached the bridge. **In transit at a kill**: what reached the bridge's host no
  earlier than ``window`` seconds before a ``kill -9`` (the test journals the kill time)
  and was not yet committed: a push vendor without acknowledgements cannot send it
  again. It is counted apart (``at_kill``) so that it can never hide a gap elsewhere;
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


def _near_kill(t: float, kills: Sequence[float], window: float) -> bool:
    return any(k - window <= t <= k for k in kills)


def uptivity(
    journal: Sequence[dict[str, Any]],
    delivered: Iterable[tuple[int, str]],
    *,
    kills: Sequence[float] = (),
    window: float = 0.5,
) -> Tally:
    """``delivered``: (EVENTXREF, CloudEvent id) of every copy a receiver accepted;
    ``kills``: monotonic times of each ``kill -9`` (the test's own journal)."""
    tally = Tally()
    ids: dict[int, set[str]] = defaultdict(set)
    copies: dict[int, int] = defaultdict(int)
    for n, event_id in delivered:
        ids[n].add(event_id)
        copies[n] += 1
    acked: dict[Any, int | None] = {e["conn"]: e.get("acked") for e in journal if e["kind"] == "close"}
    writes: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for entry in journal:
        if entry["kind"] == "write":
            writes[entry["n"]].append(entry)
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
        elif all(_near_kill(w["t"], kills, window) for w in writes[n]):
            tally.at_kill += 1
        else:
            tally.lost.append(n)
    return tally


def states(
    journal: Sequence[dict[str, Any]],
    delivered: Iterable[dict[str, Any]],
    expected_type: Callable[[str | None, str], str | None],
    *,
    kills: Sequence[float] = (),
    window: float = 0.5,
) -> Tally:
    """Accounting for vendors whose state the bridge observes (polls, REST, hub messages).

    ``delivered``: every CloudEvent copy a receiver accepted (``id``, ``subject``,
    ``type``), in arrival order. ``expected_type(previous, new)`` names the event type
    that announces a change from ``previous`` to ``new`` (None: no event expected, e.g. a
    change the bridge is not meant to report).

    A change is matched to the next unmatched delivered event of its subject with the
    expected type (in order). A change with no match is unobservable when no observation
    of its state fell between it and the next change of the same subject, or when the last
    observation before it already showed that state (A, unseen B, A); else it is lost.
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
    # subject -> (journal seq, state, shown just before a kill)
    observed: dict[str, list[tuple[int, str, bool]]] = defaultdict(list)
    for entry in journal:
        if entry["kind"] == "change":
            changes[str(entry["subject"])].append(entry)
        elif entry["kind"] == "observe":
            weak = _near_kill(entry["t"], kills, window)
            observed[str(entry["subject"])].append((entry["seq"], entry["state"], weak))

    for subject, history in changes.items():
        events = by_subject.get(subject, [])
        used = [False] * len(events)
        cursor = 0
        previous: str | None = None
        for i, change in enumerate(history):
            wanted = expected_type(previous, change["state"])
            previous = change["state"]
            if wanted is None:
                continue
            tally.sent += 1
            match = next(
                (j for j in range(cursor, len(events)) if not used[j] and events[j]["type"] == wanted), None
            )
            if match is not None:
                used[match] = True
                cursor = match + 1
                tally.delivered += 1
                continue
            # Observable: the bridge was shown the new state while it held, and the last
            # thing it was shown before the change was something else (A, unseen B, A
            # again shows the bridge nothing).
            until = history[i + 1]["seq"] if i + 1 < len(history) else float("inf")
            shown = [
                weak
                for seq, state, weak in observed[subject]
                if change["seq"] <= seq < until and state == change["state"]
            ]
            before = [state for seq, state, _ in observed[subject] if seq < change["seq"]]
            if not shown or (before and before[-1] == change["state"]):
                tally.unobservable += 1
            elif all(shown):
                tally.at_kill += 1  # shown only just before a kill -9
            else:
                tally.lost.append((subject, change["n"], wanted))
        # A second event for a change that was already matched (a repeat with a new id),
        # or an event that matches no change: both are claims the journal does not back.
        for j, event in enumerate(events):
            if not used[j]:
                tally.unexplained.append(event)
    for subject, events in by_subject.items():
        if subject not in changes:
            tally.unexplained.extend(events)
    return tally
