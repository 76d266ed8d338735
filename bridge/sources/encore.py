"""Encore source: polls PortStatusEX and turns recording-state changes into events.

Encore has no push channel; the Web API only answers questions. So the source keeps
asking every configured port "what state are you in, and for how long?" and announces
the differences. Rules that keep it from losing or inventing events:

* One request in flight per endpoint by default (the docs: "a response must be
  received before the next request is sent"); requests are spread evenly over the
  interval and a slow server stretches the sweep instead of queueing requests.
* ``stateDuration`` dates a change (``time = now - stateDuration``) and reveals changes
  between two polls: same state but younger than we already saw it -> the port left and
  came back; the missing events are emitted with ``data.inferred = true``.
* The last known state per port is committed with the events that changed it, so a
  restart announces only what changed while the bridge was down.
* Servers older than 7.1 have no PortStatusEX; the source notices (WCF's
  ActionNotSupported fault) and polls PortStatus, dating changes by observation time.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import trio

from bridge.backoff import Backoff
from bridge.components import ComponentBase
from bridge.config import ConfigError, Table
from bridge.model import Event
from bridge.netutil import safe_url
from bridge.sources.base import Health, SourceContext
from bridge.sources.encore_soap import (
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_NAMESPACE,
    DEFAULT_SOAP_ACTION,
    SoapClient,
    SoapError,
    SoapFault,
    SoapParseError,
    SoapResponse,
)

NOT_RECORDING = "NOT RECORDING"
RECORD = "RECORD"
PAUSE = "PAUSE"
SUSPENDED = "SUSPENDED"
STATES = frozenset({NOT_RECORDING, RECORD, PAUSE, SUSPENDED})
# Wordings seen in the docs (7.0 Appendix A says "Recording", "Pause", "Not Recording").
_STATE_SYNONYMS = {
    "RECORDING": RECORD,
    "PAUSED": PAUSE,
    "NOTRECORDING": NOT_RECORDING,
    "NOT_RECORDING": NOT_RECORDING,
    "SUSPEND": SUSPENDED,
}

SUCCESS = 100
MISCONFIGURED = {606: "recording unit does not exist", 611: "port does not exist"}
TRANSIENT = frozenset({621, 651, 653, 801})
STATE_KEY_PREFIX = "port:"


# -- settings ------------------------------------------------------------------------


@dataclass
class EncoreSettings:
    """Everything ``[[sources.encore]]`` configures (see config/encore-only.example.toml)."""

    name: str
    url: str
    interval: float = 1.0
    max_in_flight: int = 1
    api_version: str = "auto"  # auto | 7.1 | 7.0
    namespace: str = DEFAULT_NAMESPACE
    soap_action: str = DEFAULT_SOAP_ACTION
    timeout: float = 10.0
    verify: bool | str = True
    auth: tuple[str, str] | None = None
    ports: list[tuple[str, str]] = field(default_factory=list)
    extensions: list[str] = field(default_factory=list)
    users: list[str] = field(default_factory=list)
    machine: str | None = None
    resolve_interval: float = 300.0
    misconfigured_recheck: float = 300.0
    duration_tolerance: float = 2.0
    infer_transitions: bool = True
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES


def _unit_or_port(table: Table, name: str) -> str:
    """Unit and port are strings in the API; accept ``7`` as well as ``"7"``."""
    value = table.data.get(name)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(table.int(name, min=0))
    text = table.str(name).strip()
    if not text:
        raise table.error(name, "must not be empty")
    return text


def from_config(table: Table) -> EncoreSource:
    """Build the source from one ``[[sources.encore]]`` table."""
    name = table.name()
    url = table.str("url")
    if urlparse(url).password:  # basic credentials in the URL: redact them like any secret
        table.ctx.secrets.add(urlparse(url).password or "")
    if urlparse(url).scheme not in ("http", "https") or not urlparse(url).netloc:
        raise table.error("url", f"must be an http:// or https:// URL of ECAPI.svc, got {safe_url(url)!r}")
    soap_action = table.str("soap_action", DEFAULT_SOAP_ACTION)
    try:
        soap_action.format(namespace="", operation="")
    except (KeyError, IndexError, ValueError):
        raise table.error(
            "soap_action", "may only use the placeholders {namespace} and {operation}"
        ) from None
    verify: bool | str = table.bool("verify_tls", True)
    ca_file: Path | None = table.path_value("ca_file", None)
    if ca_file is not None:
        if not Path(ca_file).is_file():
            raise table.error("ca_file", f"{ca_file} is not a readable file")
        verify = str(ca_file) if verify else False
    username = table.str("username", None)
    password = table.str("password", None, secret=True)
    if (username is None) != (password is None):
        raise table.error("password" if username else "username", "username and password go together")
    ports = []
    for sub in table.tables("ports"):
        ports.append((_unit_or_port(sub, "unit"), _unit_or_port(sub, "port")))
        sub.check_unknown()
    settings = EncoreSettings(
        name=name,
        url=url,
        interval=table.float("interval", 1.0, min=0.05),
        max_in_flight=table.int("max_in_flight", 1, min=1, max=64),
        api_version=table.str("api_version", "auto", choices=("auto", "7.1", "7.0")),
        namespace=table.str("namespace", DEFAULT_NAMESPACE),
        soap_action=soap_action,
        timeout=table.float("timeout", 10.0, min=0.1),
        verify=verify,
        auth=(username, password) if username is not None else None,
        ports=ports,
        extensions=table.str_list("extensions", []),
        users=table.str_list("users", []),
        machine=table.str("machine", None),
        resolve_interval=table.float("resolve_interval", 300.0, min=1.0),
        misconfigured_recheck=table.float("misconfigured_recheck", 300.0, min=1.0),
        duration_tolerance=table.float("duration_tolerance", 2.0, min=1.0),
        infer_transitions=table.bool("infer_transitions", True),
        max_response_bytes=table.int("max_response_bytes", DEFAULT_MAX_RESPONSE_BYTES, min=4096),
    )
    if not (settings.ports or settings.extensions or settings.users):
        raise ConfigError(
            table.ctx.file,
            table.path,
            "nothing to poll: set extensions, users and/or [[…ports]] tables with unit and port",
        )
    return EncoreSource(settings)


# -- pure helpers ----------------------------------------------------------------------


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


@dataclass(frozen=True)
class Step:
    """One announced change: event type, from-state, to-state, whether it was inferred."""

    type: str
    previous: str | None
    state: str
    inferred: bool = False


def plan_transition(previous: str | None, state: str) -> list[Step]:
    """Events for a change from ``previous`` (None: never seen) to ``state``."""
    if previous == state:
        return []
    if previous is None:
        first = {RECORD: "recording.started", PAUSE: "recording.paused", SUSPENDED: "recording.suspended"}
        return [Step(first[state], None, state)] if state in first else []
    if state == NOT_RECORDING:
        return [Step("recording.stopped", previous, state)]
    if state == RECORD:
        kind = "recording.started" if previous == NOT_RECORDING else "recording.resumed"
        return [Step(kind, previous, state)]
    kind = "recording.paused" if state == PAUSE else "recording.suspended"
    if previous == NOT_RECORDING:  # a start we never saw happened first
        return [Step("recording.started", previous, RECORD, True), Step(kind, RECORD, state)]
    return [Step(kind, previous, state)]


def plan_gap(state: str) -> list[Step]:
    """Inferred events for "same state, but entered again since the last poll"."""
    if state == RECORD:
        return [
            Step("recording.paused", RECORD, PAUSE, True),
            Step("recording.resumed", PAUSE, RECORD, True),
        ]
    if state == PAUSE:
        return [
            Step("recording.resumed", PAUSE, RECORD, True),
            Step("recording.paused", RECORD, PAUSE, True),
        ]
    if state == SUSPENDED:
        return [
            Step("recording.resumed", SUSPENDED, RECORD, True),
            Step("recording.suspended", RECORD, SUSPENDED, True),
        ]
    return []


# -- runtime state ---------------------------------------------------------------------


@dataclass
class PortMemory:
    """What we last knew about a port; ``state``/``entered`` are persisted."""

    state: str
    entered: float  # epoch seconds the state was (estimated to be) entered
    seen: float  # epoch seconds we last saw it in that state
    # Not persisted: compared on the monotonic clock, so a wall-clock step (NTP) between
    # two polls is never mistaken for a state that was left and re-entered.
    entered_mono: float | None = None
    duration: float | None = None  # last stateDuration reported
    duration_seen: float = 0.0  # monotonic time that duration value was first reported

    def dump(self) -> str:
        return json.dumps(
            {"state": self.state, "entered": round(self.entered, 3), "seen": round(self.seen, 3)}
        )

    @classmethod
    def load(cls, text: str) -> PortMemory | None:
        try:
            data = json.loads(text)
            state = normalize_state(data["state"])
            entered = float(data["entered"])
            seen = float(data.get("seen", entered))
        except (ValueError, KeyError, TypeError, AttributeError):
            return None
        return cls(state, entered, max(seen, entered)) if state else None


@dataclass(frozen=True)
class Seen:
    """When an answer arrived: wall clock for event times, monotonic for comparisons."""

    wall: float
    mono: float


@dataclass
class Target:
    """A unit/port being polled and what it was resolved from."""

    unit: str
    port: str
    origins: list[tuple[str, str]] = field(default_factory=list)  # ("extension"|"user", value)

    @property
    def key(self) -> tuple[str, str]:
        return (self.unit, self.port)

    @property
    def subject(self) -> str:
        return f"{self.unit}/{self.port}"


@dataclass
class PortHealth:
    misconfigured: int | None = None
    recheck_at: float = 0.0
    last_code: int | None = None


class _Transient(Exception):
    """A retryable failure: back off the whole endpoint."""


# -- the source --------------------------------------------------------------------------


class EncoreSource(ComponentBase):
    """Polls one Encore Web API endpoint; see the module docstring."""

    vendor = "encore"

    def __init__(
        self, settings: EncoreSettings, *, wall_clock: Any = time.time, monotonic: Any = time.monotonic
    ) -> None:
        self.settings = settings
        self.name = settings.name
        self.health = Health()
        self.legacy: bool | None = {"7.0": True, "7.1": False}.get(settings.api_version)
        self.targets: dict[tuple[str, str], Target] = {}
        self.resolved: dict[tuple[str, str], tuple[str, str]] = {}  # origin -> unit/port
        self.memory: dict[tuple[str, str], PortMemory] = {}
        self.port_health: dict[tuple[str, str], PortHealth] = {}
        self.unresolved: dict[tuple[str, str], str] = {}  # (kind, value) -> why
        self.duration_static = False
        self._wall = wall_clock
        self._mono = monotonic
        self._backoff = Backoff(base=0.5, cap=30.0)
        self._resume_at = 0.0
        self._client: SoapClient | None = None
        self._logged: set[Any] = set()
        self._loaded = False
        self._persisted: set[str] = set()

    # -- lifecycle --

    async def run(self, ctx: SourceContext, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Poll forever; every failure is retried, nothing here returns on its own."""
        task_status.started()
        self._load_memory(ctx)
        self._initial_targets()
        if self.settings.verify is False:
            ctx.log.warning("encore_tls_verification_disabled", url=safe_url(self.settings.url))
        s = self.settings
        self._client = SoapClient(
            s.url,
            namespace=s.namespace,
            soap_action=s.soap_action,
            timeout=s.timeout,
            verify=s.verify,
            auth=s.auth,
            max_in_flight=s.max_in_flight,
            max_response_bytes=s.max_response_bytes,
        )
        try:
            await self._detect_version(ctx)
            await self._resolve_all(ctx)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._resolve_forever, ctx)
                await self._poll_forever(ctx)
        finally:
            with trio.CancelScope(shield=True):
                await self._client.aclose()
                await self._save_last_seen(ctx)

    async def _save_last_seen(self, ctx: SourceContext) -> None:
        """On the way out, store when each port was last seen in its state, so events
        inferred after the restart are dated no earlier than that (best effort)."""
        state = {
            f"{STATE_KEY_PREFIX}{unit}/{port}": memory.dump()
            for (unit, port), memory in self.memory.items()
            if memory.state != NOT_RECORDING or f"{STATE_KEY_PREFIX}{unit}/{port}" in self._persisted
        }
        if not state:
            return
        try:
            with trio.move_on_after(2.0):
                await ctx.emit([], state=state)
        except Exception as exc:  # the outbox may already be gone; the state is only a hint
            ctx.log.warning("encore_state_not_saved", error=repr(exc))

    def _load_memory(self, ctx: SourceContext) -> None:
        """Persisted port states, on the first run only: when the supervisor restarts
        ``run`` after a crash, ``ctx.state`` is older than what this object knows."""
        if self._loaded:
            return
        self._loaded = True
        for key, value in ctx.state.items():
            if not key.startswith(STATE_KEY_PREFIX):
                continue
            unit, _, port = key[len(STATE_KEY_PREFIX) :].partition("/")
            memory = PortMemory.load(value)
            if memory is not None and port:
                self.memory[(unit, port)] = memory
                self._persisted.add(key)

    def _initial_targets(self) -> None:
        for unit, port in self.settings.ports:
            self.targets.setdefault((unit, port), Target(unit, port))

    def _once(self, ctx: SourceContext, key: Any, level: str, event: str, **fields: Any) -> None:
        """Log a condition once until it clears (see ``_clear``)."""
        if key not in self._logged:
            self._logged.add(key)
            getattr(ctx.log, level)(event, **fields)

    def _clear(self, key: Any) -> bool:
        if key in self._logged:
            self._logged.discard(key)
            return True
        return False

    def _set_health(self, ctx: SourceContext, state: str, detail: str = "") -> None:
        if self.health.set(state, detail):
            ctx.log.info("encore_health", state=state, detail=detail)

    async def _call(self, op: str, params: list[tuple[str, str]]) -> SoapResponse:
        assert self._client is not None
        return await self._client.call(op, params)

    async def _retry_pause(self, ctx: SourceContext, exc: BaseException) -> None:
        delay = self._backoff.next()
        self._set_health(ctx, "error", str(exc)[:300])
        if isinstance(exc, SoapParseError) and exc.raw:
            ctx.quarantine.keep(self.name, f"encore {exc.operation}: {exc}"[:500], exc.raw)
        ctx.log.warning("encore_request_failed", error=str(exc)[:500], retry_in=round(delay, 2))
        await trio.sleep(delay)

    # -- version detection --

    async def _detect_version(self, ctx: SourceContext) -> None:
        """auto: ask PortStatusEX once; WCF's ActionNotSupported means a 7.0 server."""
        probe = self.settings.ports[0] if self.settings.ports else ("1", "1")
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
                "encore_api_detected",
                api="7.0 (PortStatus)" if self.legacy else "7.1+ (PortStatusEX)",
            )

    # -- resolution --

    def _origins(self) -> list[tuple[str, str]]:
        return [("extension", e) for e in self.settings.extensions] + [
            ("user", u) for u in self.settings.users
        ]

    def _resolution_request(self, kind: str, value: str) -> tuple[str, list[tuple[str, str]]]:
        if kind == "extension":
            return "InitStation", [("Extension", value)]
        machine = self.settings.machine or value  # the docs: use the login ID if unknown
        if self.legacy:
            return "InitUser", [("userName", value), ("machineName", machine)]
        return "InitUser", [("Machine", machine), ("User", value)]

    async def _resolve_one(self, ctx: SourceContext, kind: str, value: str) -> bool:
        """Resolve one extension/user; False if it should be retried soon."""
        op, params = self._resolution_request(kind, value)
        try:
            resp = await self._call(op, params)
        except SoapError as exc:
            self.unresolved[(kind, value)] = type(exc).__name__
            self._once(
                ctx,
                ("resolve", kind, value, "error"),
                "warning",
                "encore_resolve_failed",
                **{kind: value},
                error=str(exc)[:500],
            )
            return False
        code = resp.code
        unit, port = (resp.get("Unit") or "").strip(), (resp.get("Port") or "").strip()
        if code == SUCCESS and unit and port and (unit, port) != ("0", "0"):
            self._clear(("resolve", kind, value, "error"))
            self.unresolved.pop((kind, value), None)
            previous = self.resolved.get((kind, value))
            if previous != (unit, port):
                self.resolved[(kind, value)] = (unit, port)
                ctx.log.info(
                    "encore_resolved",
                    **{kind: value},
                    unit=unit,
                    port=port,
                    previous=f"{previous[0]}/{previous[1]}" if previous else None,
                )
            return True
        self.unresolved[(kind, value)] = str(code)
        self._once(
            ctx,
            ("resolve", kind, value, "error"),
            "error",
            "encore_resolve_failed",
            **{kind: value},
            code=code,
            message=resp.message,
            operation=op,
            hint="check the extension/user in the Encore Recorded User record",
        )
        return code not in TRANSIENT and code is not None

    async def _resolve_all(self, ctx: SourceContext) -> bool:
        """Resolve every extension/user; keeps the last good mapping for failures."""
        complete = True
        for kind, value in self._origins():
            complete = await self._resolve_one(ctx, kind, value) and complete
        targets = {(u, p): Target(u, p) for u, p in self.settings.ports}
        for (kind, value), (unit, port) in self.resolved.items():
            targets.setdefault((unit, port), Target(unit, port)).origins.append((kind, value))
        for key in set(self.targets) - set(targets):
            ctx.log.warning(
                "encore_port_dropped",
                unit=key[0],
                port=key[1],
                reason="no configured extension/user resolves to it any more",
            )
        self.targets = targets
        return complete

    async def _resolve_forever(self, ctx: SourceContext) -> None:
        if not self._origins():
            return
        retry = Backoff(base=min(5.0, self.settings.resolve_interval), cap=self.settings.resolve_interval)
        complete = True
        while True:
            await trio.sleep(self.settings.resolve_interval if complete else retry.next())
            complete = await self._resolve_all(ctx)
            if complete:
                retry.reset()

    # -- polling --

    async def _poll_forever(self, ctx: SourceContext) -> None:
        """Round-robin over due ports, one request start per interval/len(ports)."""
        slots = trio.Semaphore(self.settings.max_in_flight)
        next_start = trio.current_time()
        while True:
            now = trio.current_time()
            due = [t for t in self.targets.values() if self._health_of(t).recheck_at <= now]
            if not due:
                self._set_health(ctx, "error", "no port can be polled (see earlier errors)")
                await trio.sleep(self.settings.interval)
                continue
            step = self.settings.interval / len(due)
            async with trio.open_nursery() as nursery:
                for target in due:
                    next_start = max(next_start + step, trio.current_time())
                    await trio.sleep_until(next_start)
                    await slots.acquire()
                    await trio.sleep_until(self._resume_at)  # endpoint backoff
                    nursery.start_soon(self._poll_slot, ctx, target, slots)

    def _health_of(self, target: Target) -> PortHealth:
        return self.port_health.setdefault(target.key, PortHealth())

    async def _poll_slot(self, ctx: SourceContext, target: Target, slots: trio.Semaphore) -> None:
        try:
            await self._poll_one(ctx, target)
        except _Transient as exc:
            delay = self._backoff.next()
            self._resume_at = trio.current_time() + delay
            self._set_health(ctx, "error", str(exc)[:300])
            ctx.log.warning(
                "encore_backoff", subject=target.subject, error=str(exc)[:500], retry_in=round(delay, 2)
            )
        finally:
            slots.release()

    async def _poll_one(self, ctx: SourceContext, target: Target) -> None:
        op = "PortStatus" if self.legacy else "PortStatusEX"
        try:
            resp = await self._call(op, [("Unit", target.unit), ("Port", target.port)])
        except SoapFault as fault:
            if op == "PortStatusEX" and fault.action_not_supported:
                self.legacy = True
                ctx.log.warning("encore_api_detected", api="7.0 (PortStatus)", reason=fault.faultstring)
                return
            raise _Transient(str(fault)) from None
        except SoapError as exc:
            if isinstance(exc, SoapParseError) and exc.raw:
                ctx.quarantine.keep(self.name, f"encore {op}: {exc}"[:500], exc.raw)
            raise _Transient(str(exc)) from None
        observed = Seen(self._wall(), self._mono())
        await self._handle_response(ctx, target, op, resp, observed)

    async def _handle_response(
        self, ctx: SourceContext, target: Target, op: str, resp: SoapResponse, observed: Seen
    ) -> None:
        code = resp.code
        health = self._health_of(target)
        if code is None:
            ctx.quarantine.keep(self.name, f"encore {op}: no responseCode", resp.raw)
            raise _Transient(f"{op} for {target.subject}: answer has no responseCode")
        if code in TRANSIENT:
            raise _Transient(f"{op} for {target.subject}: {code} {resp.message}")
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
        bad = [k for k, h in self.port_health.items() if h.misconfigured is not None and k in self.targets]
        problems = []
        if bad:
            problems.append(f"{len(bad)} misconfigured port(s): {', '.join('/'.join(k) for k in bad)}")
        if self.unresolved:
            items = ", ".join(f"{kind} {value} ({why})" for (kind, value), why in self.unresolved.items())
            problems.append(f"unresolved: {items}")
        self._set_health(ctx, "polling", "; ".join(problems))

    # -- states to events --

    async def _observe(
        self, ctx: SourceContext, target: Target, op: str, resp: SoapResponse, observed: Seen
    ) -> None:
        raw_state = resp.get("portStatus")
        state = normalize_state(raw_state)
        if state is None:
            if ("state", raw_state) not in self._logged:
                ctx.quarantine.keep(self.name, f"encore {op}: unknown portStatus {raw_state!r}", resp.raw)
            self._once(
                ctx,
                ("state", raw_state),
                "warning",
                "encore_unknown_state",
                subject=target.subject,
                portStatus=raw_state,
            )
            return
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
        memory = self.memory.get(target.key)
        self._check_static_duration(ctx, memory, state, duration, observed.mono)
        trusted = duration if not self.duration_static else None
        age = trusted if trusted is not None else 0.0
        current = PortMemory(state, observed.wall - age, observed.wall, observed.mono - age)
        self._remember_duration(current, duration, observed.mono)
        steps = self._steps(memory, current, trusted is not None)
        if not steps:
            if memory is None:
                self.memory[target.key] = current
            else:
                self._remember_duration(memory, duration, observed.mono)
                memory.seen = observed.wall
                if memory.entered_mono is None:  # first look after a restart: anchor it
                    memory.entered_mono = current.entered_mono
            return
        events = self._events(target, steps, memory, current.entered, duration, op, resp)
        key = f"{STATE_KEY_PREFIX}{target.unit}/{target.port}"
        # The new state is committed with its events; memory follows only once they are in.
        await ctx.emit(events, state={key: current.dump()})
        self._persisted.add(key)
        self.memory[target.key] = current
        for event in events:
            ctx.log.info(
                "encore_event", type=event.type, subject=event.subject, inferred=event.data["inferred"]
            )

    def _steps(self, memory: PortMemory | None, current: PortMemory, trusted: bool) -> list[Step]:
        """What to announce going from ``memory`` to ``current``: a plain transition, or,
        for the same state entered again since we last saw it, the inferred round trip."""
        if memory is None or memory.state != current.state:
            return plan_transition(memory.state if memory else None, current.state)
        if not trusted or not self.settings.infer_transitions:
            return []
        if memory.entered_mono is not None and current.entered_mono is not None:
            younger_by = current.entered_mono - memory.entered_mono
        else:  # memory from before a restart: only the wall clock spans the gap
            younger_by = current.entered - memory.entered
        return plan_gap(current.state) if younger_by > self.settings.duration_tolerance else []

    @staticmethod
    def _remember_duration(memory: PortMemory, duration: float | None, observed: float) -> None:
        if duration != memory.duration:
            memory.duration, memory.duration_seen = duration, observed

    def _check_static_duration(
        self, ctx: SourceContext, memory: PortMemory | None, state: str, duration: float | None, now: float
    ) -> None:
        """A stateDuration that never grows (the vendor's test service always says 20)
        cannot date anything; stop inferring from it rather than invent events."""
        if self.duration_static or memory is None or duration is None or not duration:
            return
        if (
            memory.state == state
            and memory.duration == duration
            and now - memory.duration_seen >= self.settings.duration_tolerance
        ):
            self.duration_static = True
            ctx.log.warning(
                "encore_state_duration_static",
                stateDuration=duration,
                effect="event times use observation time; no inferred events",
            )

    def _events(
        self,
        target: Target,
        steps: list[Step],
        memory: PortMemory | None,
        entered: float,
        duration: float | None,
        op: str,
        resp: SoapResponse,
    ) -> list[Event]:
        # An inferred step happened some time after we last saw the old state: date it
        # at that bound (never after the final change, which stateDuration dates).
        last_seen = memory.seen if memory is not None else entered
        raw = {
            "operation": op,
            "responseCode": resp.get("responseCode"),
            "portStatus": resp.get("portStatus"),
            "stateDuration": resp.get("stateDuration"),
        }
        events = []
        for index, step in enumerate(steps):
            final = index == len(steps) - 1
            moment = entered if final else min(last_seen, entered)
            events.append(self._event(target, step, moment, duration if final else None, raw))
        return events

    def _event(
        self, target: Target, step: Step, moment: float, duration: float | None, raw: dict[str, Any]
    ) -> Event:
        when = datetime.fromtimestamp(moment, UTC)
        data: dict[str, Any] = {"unit": target.unit, "port": target.port}
        for kind, value in target.origins:
            data.setdefault(kind, value)
        data.update(
            {
                "previousState": step.previous,
                "state": step.state,
                "stateDuration": duration,
                "inferred": step.inferred,
                "raw": raw,
            }
        )
        identity = {
            "unit": target.unit,
            "port": target.port,
            "type": step.type,
            "from": step.previous,
            "to": step.state,
            "at": round(moment),
        }
        return Event(
            source_name=self.name,
            vendor=self.vendor,
            type=step.type,
            subject=target.subject,
            time=when,
            data=data,
            identity=identity,
        )
