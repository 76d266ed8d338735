"""The Encore source: polls PortStatusEX (7.1) / PortStatus (7.0), asks GetURL where it
decides something, and turns what :mod:`bridge.sources.encore.tracker` plans into events.

Encore has no push channel; the Web API only answers questions. Rules that keep the
source from losing or inventing events:

* One request in flight per server URL by default, shared by every source polling it
  (the docs: "a response must be received before the next request is sent"). GetURL
  and InitStation/InitUser go through the same budget, so the sweep stays paced.
* The last known state per port (and its recording URL) is committed with the events
  that changed it, so a restart announces only what changed while the bridge was down;
  a server whose ``stateDuration`` never grows is remembered the same way.
* A GetURL that fails transiently fails the whole poll: nothing is committed on a guess,
  the port is asked again after the backoff.
* Servers older than 7.1 have no PortStatusEX; the source notices (WCF's
  ActionNotSupported fault) and polls PortStatus, dating changes by observation time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import trio

from bridge.backoff import Backoff
from bridge.components import ComponentBase, Health, SourceContext
from bridge.netutil import redact_url
from bridge.sources.encore import tracker
from bridge.sources.encore.events import build_event, url_status
from bridge.sources.encore.memory import STATIC_KEY, PortStore, state_key
from bridge.sources.encore.poller import Poller
from bridge.sources.encore.resolver import Resolver, Target
from bridge.sources.encore.settings import EncoreSettings
from bridge.sources.encore.soap import SoapClient, SoapError, SoapFault, SoapParseError, SoapResponse
from bridge.sources.encore.states import MISCONFIGURED, SUCCESS, TRANSIENT, normalize_state, parse_duration
from bridge.sources.encore.tracker import Observation, PortMemory, Rules
from bridge.sources.encore.urls import RecordingUrls, Transient
from bridge.tls import client_context


@dataclass(frozen=True)
class Seen:
    """When an answer arrived: wall clock for event times, monotonic for comparisons."""

    wall: float
    mono: float
    asked: float | None = None  # when the request was sent


@dataclass
class PortHealth:
    misconfigured: int | None = None
    recheck_at: float = 0.0
    last_code: int | None = None


class EncoreSource(ComponentBase):
    """Polls one Encore Web API endpoint; see the module docstring."""

    vendor = "encore"

    def __init__(
        self,
        settings: EncoreSettings,
        *,
        wall_clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.name = settings.name
        self.health = Health()
        self.legacy: bool | None = {"7.0": True, "7.1": False}.get(settings.api_version)
        self.resolver = Resolver(settings, self._call, lambda: self.legacy)
        self.store = PortStore()
        self.port_health: dict[tuple[str, str], PortHealth] = {}
        self.urls = RecordingUrls(
            self._call,
            self._quarantine_later,
            redact_url(settings.url),
            None if settings.recording_urls else "recording_urls = false",
        )
        self.rules = Rules(settings.duration_tolerance, settings.infer_transitions)
        self.events_read = 0
        self.parse_errors = 0
        self._wall = wall_clock
        self._mono = monotonic
        self._backoff = Backoff(base=settings.reconnect_min, cap=settings.reconnect_max)
        self._resume_at = 0.0
        self._client: SoapClient | None = None
        self.poller = Poller(
            settings.interval, settings.max_in_flight, self._due, self._poll_target, self._resume, self._idle
        )
        self._logged: set[Any] = set()
        self._ctx: SourceContext | None = None

    # -- the contract --

    def describe(self) -> str:
        return redact_url(self.settings.url)

    @property
    def last_sweep_seconds(self) -> float | None:
        return self.poller.last_sweep_seconds

    def stats(self) -> Mapping[str, float]:
        out = {
            "events_read": float(self.events_read),
            "parse_errors": float(self.parse_errors),
            "url_requests": float(self.urls.requests),
        }
        if self.poller.last_sweep_seconds is not None:
            out["sweep_seconds"] = self.poller.last_sweep_seconds
        return out

    @property
    def targets(self) -> dict[tuple[str, str], Target]:
        return self.resolver.targets

    async def run(self, ctx: SourceContext, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Poll forever; every failure is retried, nothing here returns on its own."""
        task_status.started()
        self._ctx = ctx
        self.store.load(ctx.state)
        s = self.settings
        if not s.verify_tls:
            ctx.log.warning("encore_tls_verification_disabled", url=self.describe())
        tls = client_context(
            s.verify_tls, s.ca_file, s.cert_file, s.key_file, where=f"sources.encore {s.name}"
        )
        self._client = SoapClient(
            s.url,
            namespace=s.namespace,
            soap_action=s.soap_action,
            timeout=s.timeout,
            verify=tls,
            auth=s.auth,
            max_in_flight=s.max_in_flight,
            max_response_bytes=s.max_response_bytes,
        )
        try:
            await self._detect_version(ctx)
            await self.resolver.resolve_all(ctx.log)
            self._update_health(ctx)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self.resolver.resolve_forever, ctx.log)
                await self.poller.run()
        finally:
            with trio.CancelScope(shield=True):
                await self._client.aclose()
                await self._save_last_seen(ctx)

    # -- memory --

    @property
    def memory(self) -> dict[tuple[str, str], PortMemory]:
        return self.store.ports

    @property
    def duration_static(self) -> bool:
        return self.store.static

    async def _save_last_seen(self, ctx: SourceContext) -> None:
        """On the way out, store when each port was last seen (best effort)."""
        state = self.store.on_shutdown()
        if not state:
            return
        try:
            with trio.move_on_after(2.0):
                await ctx.emit([], state=state)
        except Exception as exc:  # the outbox may already be gone; the state is only a hint
            ctx.log.warning("encore_state_not_saved", error=repr(exc))

    # -- plumbing --

    def _once(self, ctx: SourceContext, key: Any, level: str, event: str, **fields: Any) -> None:
        """Log a condition once until it clears."""
        if key not in self._logged:
            self._logged.add(key)
            getattr(ctx.log, level)(event, **fields)

    def _set_health(self, ctx: SourceContext, state: str, detail: str = "") -> None:
        if self.health.set(state, detail):
            ctx.log.info("encore_health", state=state, detail=detail)

    async def _call(self, op: str, params: list[tuple[str, str]]) -> SoapResponse:
        assert self._client is not None
        return await self._client.call(op, params)

    def _quarantine_later(self, reason: str, raw: bytes) -> None:
        if self._ctx is not None:
            self._quarantine(self._ctx, reason, raw)

    def _quarantine(self, ctx: SourceContext, reason: str, raw: bytes) -> None:
        self.parse_errors += 1
        if raw:
            ctx.quarantine.keep(self.name, reason[:500], raw)

    async def _retry_pause(self, ctx: SourceContext, exc: SoapError) -> None:
        delay = self._backoff.next()
        self._set_health(ctx, "error", str(exc)[:300])
        if isinstance(exc, SoapParseError):
            self._quarantine(ctx, f"encore {exc.operation}: {exc}", exc.raw)
        ctx.log.warning("encore_request_failed", error=str(exc)[:500], retry_in=round(delay, 2))
        await trio.sleep(delay)

    async def _detect_version(self, ctx: SourceContext) -> None:
        """auto: ask PortStatusEX once; WCF's ActionNotSupported means a 7.0 server."""
        probe = self.settings.port_keys[0] if self.settings.ports else ("1", "1")
        while self.legacy is None:
            try:
                await self._call("PortStatusEX", [("Unit", probe[0]), ("Port", probe[1])])
                self.legacy = False
            except SoapFault as fault:
                if not fault.action_not_supported:
                    await self._retry_pause(ctx, fault)
                    continue
                self.legacy = True
            except SoapError as exc:
                await self._retry_pause(ctx, exc)
                continue
            self._backoff.reset()
            ctx.log.info(
                "encore_api_detected", api="7.0 (PortStatus)" if self.legacy else "7.1+ (PortStatusEX)"
            )

    # -- polling --

    def _health_of(self, target: Target) -> PortHealth:
        return self.port_health.setdefault(target.key, PortHealth())

    def _due(self) -> list[Target]:
        now = trio.current_time()
        return [t for t in self.resolver.targets.values() if self._health_of(t).recheck_at <= now]

    def _resume(self) -> float:
        return self._resume_at

    def _idle(self) -> None:
        if self._ctx is not None:
            self._set_health(self._ctx, "error", "no port can be polled (see earlier errors)")

    async def _poll_target(self, target: Target) -> None:
        assert self._ctx is not None
        ctx = self._ctx
        try:
            await self.poll_one(ctx, target)
        except Transient as exc:
            delay = self._backoff.next()
            self._resume_at = trio.current_time() + delay
            self._set_health(ctx, "error", str(exc)[:300])
            ctx.log.warning(
                "encore_backoff", subject=target.subject, error=str(exc)[:500], retry_in=round(delay, 2)
            )

    async def poll_one(self, ctx: SourceContext, target: Target) -> None:
        op = "PortStatus" if self.legacy else "PortStatusEX"
        asked = self._wall()
        try:
            resp = await self._call(op, [("Unit", target.unit), ("Port", target.port)])
        except SoapFault as fault:
            if op == "PortStatusEX" and fault.action_not_supported:
                self.legacy = True
                ctx.log.warning("encore_api_detected", api="7.0 (PortStatus)", reason=fault.faultstring)
                return
            raise Transient(str(fault)) from None
        except SoapError as exc:
            if isinstance(exc, SoapParseError):
                self._quarantine(ctx, f"encore {op}: {exc}", exc.raw)
            raise Transient(str(exc)) from None
        await self.handle_response(ctx, target, op, resp, Seen(self._wall(), self._mono(), asked))

    async def handle_response(
        self, ctx: SourceContext, target: Target, op: str, resp: SoapResponse, observed: Seen
    ) -> None:
        code = resp.code
        health = self._health_of(target)
        if code is None:
            self._quarantine(ctx, f"encore {op}: no responseCode", resp.raw)
            raise Transient(f"{op} for {target.subject}: answer has no responseCode")
        if code in TRANSIENT:
            raise Transient(f"{op} for {target.subject}: {code} {resp.message}")
        self._backoff.reset()
        if code in MISCONFIGURED:
            health.recheck_at = trio.current_time() + self.settings.misconfigured_recheck
            if health.misconfigured != code:
                health.misconfigured = code
                ctx.log.error(
                    "encore_port_misconfigured",
                    subject=target.subject,
                    code=code,
                    message=resp.message,
                    meaning=MISCONFIGURED[code],
                    recheck_in=self.settings.misconfigured_recheck,
                )
            self._update_health(ctx)
            return
        if code != SUCCESS:
            if health.last_code != code:
                ctx.log.warning(
                    "encore_port_error", subject=target.subject, code=code, message=resp.message, operation=op
                )
            health.last_code = code
            return
        recovered = health.misconfigured is not None or health.last_code is not None
        if recovered:
            ctx.log.info("encore_port_recovered", subject=target.subject)
        health.misconfigured = health.last_code = None
        if recovered or self.health.state != "polling":
            self._update_health(ctx)  # O(ports): only when something changed, not every poll
        await self._observe(ctx, target, op, resp, observed)

    def _update_health(self, ctx: SourceContext) -> None:
        ports = self.resolver.targets
        bad = [k for k, h in self.port_health.items() if h.misconfigured is not None and k in ports]
        problems = []
        if bad:
            problems.append(f"{len(bad)} misconfigured port(s): {', '.join('/'.join(k) for k in bad)}")
        if self.resolver.unresolved:
            items = ", ".join(
                f"{kind} {value} ({why})" for (kind, value), why in self.resolver.unresolved.items()
            )
            problems.append(f"unresolved: {items}")
        self._set_health(ctx, "polling", "; ".join(problems))

    # -- answers to events --

    async def _observe(
        self, ctx: SourceContext, target: Target, op: str, resp: SoapResponse, seen: Seen
    ) -> None:
        raw_state = resp.get("portStatus")
        state = normalize_state(raw_state)
        if state is None:
            if ("state", raw_state) not in self._logged:
                self._quarantine(ctx, f"encore {op}: unknown portStatus {raw_state!r}", resp.raw)
            self._once(
                ctx,
                ("state", raw_state),
                "warning",
                "encore_unknown_state",
                subject=target.subject,
                portStatus=raw_state,
            )
            return
        self.events_read += 1
        raw_duration = resp.get("stateDuration") if op == "PortStatusEX" else None
        duration = parse_duration(raw_duration)
        if raw_duration is not None and duration is None:
            self._once(
                ctx,
                ("duration", raw_duration),
                "warning",
                "encore_bad_state_duration",
                subject=target.subject,
                stateDuration=raw_duration,
            )
        obs = Observation(state, duration, seen.wall, seen.mono, seen.asked)
        memory = self.memory.get(target.key)
        lookup, url_fields = tracker.NOT_ASKED, None
        if tracker.needs_url(memory, obs, self.duration_static, self.rules):
            lookup, url_fields = await self.urls.lookup(ctx.log, target)
        result = tracker.plan(memory, obs, lookup, static=self.duration_static, rules=self.rules)
        state_update: dict[str, str | None] = {}
        if result.static_cleared:
            self.store.static = False
            state_update[STATIC_KEY] = None
            ctx.log.info("encore_state_duration_counts", effect="stateDuration dates changes again")
        if result.static_detected:
            self.store.static = True
            state_update[STATIC_KEY] = "1"
            ctx.log.warning(
                "encore_state_duration_static",
                stateDuration=duration,
                effect="event times use observation time (data.time_source); nothing is inferred from it",
            )
        key = state_key(target.key)
        if not result.steps:
            self.memory[target.key] = result.memory
            if state_update:
                await ctx.emit([], state=state_update)
            return
        raw: dict[str, Any] = {"operation": op, **resp.fields}
        if url_fields is not None:
            raw["GetURL"] = url_fields
        last = len(result.steps) - 1
        events = [
            build_event(
                self.name,
                target,
                step,
                duration if i == last else None,
                raw,
                url_status(step, lookup, self.urls.unavailable is not None),
            )
            for i, step in enumerate(result.steps)
        ]
        state_update[key] = result.memory.dump()
        # The new state is committed with its events; memory follows only once they are in.
        await ctx.emit(events, state=state_update)
        self.store.persisted.add(key)
        self.memory[target.key] = result.memory
        for event in events:
            ctx.log.info(
                "encore_event", type=event.type, subject=event.subject, inferred=event.data["inferred"]
            )
