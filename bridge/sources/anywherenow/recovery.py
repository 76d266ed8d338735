"""Reconciliation over REST after a (re)connect, and forgetting calls nobody confirms.

Runs beside the live hub messages, never in front of them: at most ``max_in_flight``
requests at a time, workers taking calls in turn. A call a live message changed while
its request was in flight is asked again (the answer may predate the message), so a
transition is announced once, by whichever saw it first. When the API cannot be reached
the pass stops asking and the rest waits for a retry with backoff.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import trio

from bridge.backoff import Backoff
from bridge.components import SourceContext
from bridge.model import Event
from bridge.sources.anywherenow.calls import Key
from bridge.sources.anywherenow.reconciler import Reconciled, reconcile, reconciled_event, session_gone
from bridge.sources.anywherenow.rest import RecordingApi, RestAnswer, RestError

if TYPE_CHECKING:
    from bridge.sources.anywherenow.source import AnywhereNowSource

ASK_AGAIN = 3  # a call that keeps changing live while asked is left to the live messages
# How long a call finished by a REST answer is kept (in memory) to recognise the hub's
# late copy of that change: far longer than a message takes once its connection is up.
LATE_COPY_GRACE = 60.0


class Recovery:
    def __init__(self, source: AnywhereNowSource) -> None:
        self.source = source

    async def after_connect(self, ctx: SourceContext, api: RecordingApi | None) -> None:
        """One pass over every remembered call, then retries for the unanswered ones."""
        src = self.source
        calls = [key for key, state in src.book.items() if not state.finished]
        if not calls:
            src.reconciliations += 1
            return
        if api is None:
            ctx.log.warning(
                "anywherenow_reconcile_skipped", open_calls=len(calls), reason="rest_url is not set"
            )
            return
        ctx.log.info("anywherenow_reconcile_started", open_calls=len(calls))
        unanswered = await self.run_pass(ctx, api, calls)
        src.reconciliations += 1
        retry = Backoff(base=src.settings.reconnect_min, cap=src.settings.reconnect_max)
        while unanswered:
            # The API may come back later than the hub: ask again until every remembered
            # call has an answer (or is forgotten after forget_after).
            await trio.sleep(retry.next())
            unanswered = await self.run_pass(ctx, api, [k for k in unanswered if k in src.book])

    async def run_pass(self, ctx: SourceContext, api: RecordingApi, calls: list[Key]) -> list[Key]:
        src = self.source
        unanswered: list[Key] = []
        todo: Iterator[Key] = iter(calls)
        emitted_before = src.reconciled
        down = False

        async def worker() -> None:
            nonlocal down
            for key in todo:
                if down:
                    unanswered.append(key)
                    continue
                try:
                    answered = await self.reconcile_one(ctx, api, key)
                except RestError as exc:
                    ctx.log.warning(
                        "anywherenow_reconcile_failed", error=str(exc), ucc=key[0], correlation_id=key[1]
                    )
                    down = True  # unreachable or silent: the others wait for the next try
                    answered = False
                if not answered:
                    unanswered.append(key)

        async with trio.open_nursery() as nursery:
            for _ in range(min(src.settings.max_in_flight, len(calls))):
                nursery.start_soon(worker)
        ctx.log.info(
            "anywherenow_reconcile_done",
            checked=len(calls),
            emitted=src.reconciled - emitted_before,
            unanswered=len(unanswered),
        )
        waiting = set(unanswered)
        return [key for key in calls if key in waiting]  # the original order: oldest first

    async def reconcile_one(self, ctx: SourceContext, api: RecordingApi, key: Key) -> bool:
        """Ask about one call and commit what was missed; False: ask again later."""
        src = self.source
        ucc, correlation_id = key
        where = {"ucc": ucc, "correlation_id": correlation_id}
        if not ucc:
            ctx.log.warning("anywherenow_reconcile_no_ucc", **where)
            await self.maybe_forget(ctx, key)
            return True
        for _ in range(ASK_AGAIN):
            before = src.book.get(key)
            if before is None or before.finished:
                return True
            answer = await api.recording_state(ucc, correlation_id)
            if src.book.get(key) is before:
                break
            ctx.log.info("anywherenow_reconcile_superseded_by_live", **where)
        else:
            return True
        now = time.time()
        if answer.kind == "state" and answer.state is not None:
            outcome = reconcile(before, answer.state, now)
            reason = "state_changed_while_disconnected"
        elif answer.kind == "not_found":
            self._log_error(ctx, answer, **where)
            outcome = session_gone(before, now)
            reason = "session_not_found"
        else:
            if answer.error is not None:
                self._log_error(ctx, answer, **where)
            else:
                ctx.log.warning(
                    "anywherenow_rest_unexpected_answer",
                    request="recording_state",
                    status=answer.status,
                    api=answer.version,
                    problem=answer.problem or answer.kind,
                    **where,
                )
            await self.maybe_forget(ctx, key)
            return key not in src.book
        await self._commit(ctx, key, outcome, answer, reason)
        return True

    async def _commit(
        self, ctx: SourceContext, key: Key, outcome: Reconciled, answer: RestAnswer, reason: str
    ) -> None:
        src = self.source
        events: list[Event] = [
            reconciled_event(src.name, key[0], key[1], t, answer.body, reason) for t in outcome.transitions
        ]
        persist: dict[str, str | None] = {}
        # A finished call is handed over as it is (remember keeps it for the hub's late copy).
        keep = not outcome.forget or outcome.state.finished
        src.remember(ctx, key, outcome.state if keep else None, persist)
        src.reconciled += len(events)
        for t in outcome.transitions:
            ctx.log.info(
                "anywherenow_reconciled", type=t.type, ucc=key[0], correlation_id=key[1], reason=reason
            )
        if outcome.unconfirmed:
            self._unconfirmed(ctx, key, "the API no longer knows the session; its saving state is unknown")
        await src.commit(ctx, events, persist)

    def _log_error(self, ctx: SourceContext, answer: RestAnswer, **where: str) -> None:
        error = answer.error
        ctx.log.warning(
            "anywherenow_rest_error_message",
            request="recording_state",
            status=answer.status,
            api=answer.version,
            error_type=error.error_type if error else None,
            message=error.message if error else None,
            read_as="unknown session" if answer.kind == "not_found" else "error (asked again later)",
            **where,
        )

    def _unconfirmed(self, ctx: SourceContext, key: Key, why: str) -> None:
        self.source.forgotten_unconfirmed += 1
        ctx.log.warning(
            "anywherenow_call_forgotten_unconfirmed",
            ucc=key[0],
            correlation_id=key[1],
            reason=why,
            forgotten_unconfirmed_total=self.source.forgotten_unconfirmed,
        )

    async def maybe_forget(self, ctx: SourceContext, key: Key) -> None:
        """Stop asking about a call nobody can answer for, once it is older than forget_after."""
        src = self.source
        state = src.book.get(key)
        if state is None or time.time() - state.since <= src.settings.forget_after:
            return
        self._unconfirmed(ctx, key, "no usable REST answer and older than forget_after")
        persist: dict[str, str | None] = {}
        src.remember(ctx, key, None, persist)
        await src.commit(ctx, [], persist)

    async def sweep(self, ctx: SourceContext) -> None:
        """Forget calls whose saving state never became final within forget_after."""
        src = self.source
        period = min(max(src.settings.forget_after / 4, 1.0), 600.0)
        while True:
            await trio.sleep(period)
            now = time.time()
            for key in src.book.settled(now, LATE_COPY_GRACE):
                src.book.remove(key)  # finished by reconciliation; no late copy came
            expired = src.book.expired(now, src.settings.forget_after)
            if not expired:
                continue
            persist: dict[str, str | None] = {}
            for i, key in enumerate(expired):
                if i < 20:
                    self._unconfirmed(ctx, key, "no final saving state (Save or Delete) within forget_after")
                else:
                    src.forgotten_unconfirmed += 1
                src.remember(ctx, key, None, persist)
            if len(expired) > 20:
                ctx.log.warning("anywherenow_calls_forgotten_unconfirmed", count=len(expired))
            await src.commit(ctx, [], persist)
