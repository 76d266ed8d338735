"""The simulated recorder: ports, recordings and the answers of Appendix A (no I/O).

Behaves as the vendor's own test service does (Encore Web API 7.1, Appendix A):

* InitStation / InitUser hand out unit 1 and the next free port (1..288), stable per
  extension / user.
* The recording state machine answers 608 (not recording), 609 (already recording) and
  627 (not in pause mode) exactly where Appendix A says; CancelRecording always works.
* PortStatus / PortStatusEX report the state; PortStatusEX adds ``stateDuration`` in
  whole seconds since the last state change (``fixed_duration=20`` reproduces the test
  service, whose stateDuration is always 20).
* GetURL answers in RECORD and PAUSE with the recording's URL: every new recording gets
  a new call index, so back-to-back calls have different URLs. ``url_player=False``
  answers 658, as a service whose Web.config has no URL player address.
* ``api_version="7.0"``: no PortStatusEX, ResumeRecording, GetField or Desktop*
  (WCF's ActionNotSupported fault instead) and InitUser takes ``userName``/``machineName``.

Hold and retrieve (``SimHold``/``SimRetrieve``, also over SOAP) follow the recording
control section: a held recording is SUSPENDED; a paused call put on hold stays PAUSE
and ResumeRecording then leaves it SUSPENDED; ``second_call`` records another call
while one is held (the docs allow both on one port).
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from bridge.simulators.encore.protocol import ACTION_TEMPLATE, SERVICE_NS
from bridge.simulators.journal import Journal

NOT_RECORDING = "NOT RECORDING"
RECORD = "RECORD"
PAUSE = "PAUSE"
SUSPENDED = "SUSPENDED"
HISTORY = 100_000
URL_BASE = "https://encore.example.invalid/encore/urlplayer.aspx"

ONLY_71 = frozenset({"PortStatusEX", "ResumeRecording", "GetField", "DesktopPause", "DesktopResume"})
CONTROL = frozenset(
    {
        "StartRecording",
        "PauseRecording",
        "ResumeRecording",
        "StopRecording",
        "CancelRecording",
        "SimHold",
        "SimRetrieve",
    }
)

Reply = tuple[int, list[tuple[str, str]]]


@dataclass
class SimPort:
    """One recording port: its state, when it entered it, the current recording."""

    state: str = NOT_RECORDING
    entered: float = 0.0
    call_index: int = 0
    on_hold: bool = False  # the (paused) call is on hold
    held_call: int | None = None  # a call on hold while another one records
    fields: dict[str, str] = field(default_factory=dict)
    subject: str = ""  # "<unit>/<port>", as the journal names it


def _truth(p: SimPort) -> str:
    """The port's state as the journal records it (a recording's state names its call)."""
    return p.state if p.state == NOT_RECORDING else f"{p.state}@{p.call_index}"


class ActionFault(Exception):
    """The operation does not exist here: WCF answers with an ActionNotSupported fault."""

    def __init__(self, action: str) -> None:
        super().__init__(
            f"The message with Action '{action}' cannot be processed at the receiver, due to a "
            "ContractFilter mismatch at the EndpointDispatcher. This may be because of either a "
            "contract mismatch (mismatched Actions between sender and receiver) or a "
            "binding/security mismatch between the sender and the receiver."
        )


class Recorder:
    """The service's behaviour; :class:`~bridge.simulators.encore.server.EncoreSimulator`
    puts it on the wire."""

    def __init__(
        self,
        *,
        api_version: str = "7.1",
        units: int = 1,
        ports_per_unit: int = 288,
        fixed_duration: int | None = None,
        url_player: bool = True,
        namespace: str = SERVICE_NS,
        soap_action: str = ACTION_TEMPLATE,
        clock: Callable[[], float] = time.monotonic,
        journal: Journal | None = None,
    ) -> None:
        self.api_version = api_version
        self.units = units
        self.ports_per_unit = ports_per_unit
        self.fixed_duration = fixed_duration
        self.url_player = url_player
        self.namespace = namespace
        self.soap_action = soap_action
        self.clock = clock
        self.ports: dict[tuple[str, str], SimPort] = {}
        self.stations: dict[str, int] = {}
        self.users: dict[str, int] = {}
        self._next_port = 1
        self._next_call = 429504
        # "ext:<extension>" / "user:<login>" -> response code InitStation/InitUser answer.
        self.resolution_errors: dict[str, int] = {}
        # (unit, port) -> codes the next PortStatus/PortStatusEX calls answer, in order.
        self.injected: dict[tuple[str, str], list[int]] = defaultdict(list)
        self.calls: Counter[str] = Counter()
        # Ground truth for loss accounting (bridge/simulators/journal.py): every change of
        # a port's state ("change") and every answer that showed it ("observe"). A state is
        # "<portStatus>@<call index>" while recording, so two calls are two states.
        self.journal = journal if journal is not None else Journal()
        self.current_client: str | None = None  # the HTTP connection being answered (server.py)
        # The most recent requests (operation, parameters), bounded.
        self.requests: deque[tuple[str, dict[str, str]]] = deque(maxlen=HISTORY)

    # -- scripting API -------------------------------------------------------------

    def port(self, unit: str | int, port: str | int) -> SimPort:
        """The port's record (created on first use); raises KeyError if it cannot exist."""
        key = (str(unit), str(port))
        if self._check(*key) != 100:
            raise KeyError(f"unit {unit} port {port} does not exist in this simulator")
        if key not in self.ports:
            self.ports[key] = SimPort(entered=self.clock(), subject=f"{key[0]}/{key[1]}")
        return self.ports[key]

    def start(self, unit: str | int, port: str | int) -> int:
        return self._control("StartRecording", str(unit), str(port))[0]

    def pause(self, unit: str | int, port: str | int) -> int:
        return self._control("PauseRecording", str(unit), str(port))[0]

    def resume(self, unit: str | int, port: str | int) -> int:
        return self._control("ResumeRecording", str(unit), str(port))[0]

    def stop(self, unit: str | int, port: str | int) -> int:
        return self._control("StopRecording", str(unit), str(port))[0]

    def cancel(self, unit: str | int, port: str | int) -> int:
        return self._control("CancelRecording", str(unit), str(port))[0]

    def hold(self, unit: str | int, port: str | int) -> int:
        """Put the call on hold: RECORD -> SUSPENDED (a paused call stays PAUSE, held)."""
        return self._control("SimHold", str(unit), str(port))[0]

    def retrieve(self, unit: str | int, port: str | int) -> int:
        """Take the held call back: SUSPENDED -> RECORD (a paused call stays PAUSE)."""
        return self._control("SimRetrieve", str(unit), str(port))[0]

    def back_to_back(self, unit: str | int, port: str | int) -> int:
        """The call ends and the next one starts at once: a new recording, a new URL."""
        code = self.stop(unit, port)
        return code if code != 100 else self.start(unit, port)

    def second_call(self, unit: str | int, port: str | int) -> int:
        """While a call is held (SUSPENDED), record another one on the same port."""
        p = self.port(unit, port)
        if p.state != SUSPENDED:
            return 608
        p.held_call = p.call_index
        self._next_call += 1
        p.call_index, p.fields = self._next_call, {}
        self._set(p, RECORD)
        return 100

    def url_of(self, unit: str | int, port: str | int) -> str:
        """The URL GetURL gives for the port's current recording."""
        p = self.port(unit, port)
        return f"{URL_BASE}?fldCallIndex={p.call_index}.{int(port):04d}&siteid=1"

    def backdate(self, unit: str | int, port: str | int, seconds: float) -> None:
        """Pretend the current state was entered ``seconds`` earlier."""
        self.port(unit, port).entered -= seconds

    def state_of(self, unit: str | int, port: str | int) -> str:
        return self.port(unit, port).state

    def assign(self, kind: str, key: str, port: int) -> None:
        """Map an extension (``kind="ext"``) or user (``"user"``) to a port, as an admin would."""
        (self.stations if kind == "ext" else self.users)[key] = port

    def reset_day(self) -> None:
        """The nightly reset of Appendix A: port allocation starts at 1 again."""
        self.stations.clear()
        self.users.clear()
        self._next_port = 1

    # -- behaviour -----------------------------------------------------------------

    def _check(self, unit: str, port: str) -> int:
        if not unit.isdigit() or not 1 <= int(unit) <= self.units:
            return 606
        if not port.isdigit() or not 1 <= int(port) <= self.ports_per_unit:
            return 611
        return 100

    def _set(self, p: SimPort, state: str) -> None:
        before = _truth(p)
        if state != p.state:
            p.state = state
            p.entered = self.clock()
        if state == NOT_RECORDING:
            p.on_hold, p.held_call = False, None
        if _truth(p) != before:
            self.journal.add("change", subject=p.subject, state=_truth(p))

    def _allocate(self, table: dict[str, int], key: str) -> int:
        if key not in table:
            table[key] = self._next_port
            self._next_port = self._next_port % self.ports_per_unit + 1
        return table[key]

    def _duration(self, p: SimPort) -> int:
        if p.state == NOT_RECORDING:
            return 0
        if self.fixed_duration is not None:
            return self.fixed_duration
        return max(0, int(self.clock() - p.entered))

    def _control(self, op: str, unit: str, port: str) -> Reply:
        """The recording state machine of Appendix A (plus hold/retrieve)."""
        code = self._check(unit, port)
        if code != 100:
            return code, []
        p = self.port(unit, port)
        if op == "StartRecording":
            if p.state not in (NOT_RECORDING, PAUSE):
                return 609, []
            if p.state == NOT_RECORDING:
                self._next_call += 1
                p.call_index, p.fields = self._next_call, {}
            p.on_hold = False
            self._set(p, RECORD)
        elif op == "PauseRecording":
            if p.state not in (RECORD, SUSPENDED):
                return 608, []
            p.on_hold = p.state == SUSPENDED
            self._set(p, PAUSE)
        elif op == "ResumeRecording":
            if p.state != PAUSE:
                return 627, []
            self._set(p, SUSPENDED if p.on_hold else RECORD)
        elif op == "StopRecording":
            if p.state != RECORD:
                return 608, []
            self._set(p, NOT_RECORDING)
        elif op == "CancelRecording":
            self._set(p, NOT_RECORDING)
        elif op == "SimHold":
            if p.state == PAUSE:
                p.on_hold = True
                return 100, []
            if p.state != RECORD:
                return 608, []
            self._set(p, SUSPENDED)
        elif op == "SimRetrieve":
            if p.state == PAUSE and p.on_hold:
                p.on_hold = False
                return 100, []
            if p.state != SUSPENDED:
                return 608, []
            self._set(p, RECORD)
        return 100, []

    def _status(self, op: str, unit: str, port: str) -> Reply:
        queued = self.injected.get((unit, port))
        if queued:
            return queued.pop(0), []
        code = self._check(unit, port)
        if code != 100:
            return code, []
        p = self.port(unit, port)
        who = {"client": self.current_client} if self.current_client else {}
        self.journal.add("observe", subject=f"{unit}/{port}", state=_truth(p), via=op, **who)
        extra = [("portStatus", p.state)]
        if op == "PortStatusEX":
            extra.append(("stateDuration", str(self._duration(p))))
        return 100, extra

    def _recording_info(self, op: str, params: dict[str, str]) -> Reply:
        unit, port = params.get("Unit", ""), params.get("Port", "")
        code = self._check(unit, port)
        if code != 100:
            return code, []
        p = self.port(unit, port)
        if p.state not in (RECORD, PAUSE):
            return 608, []
        if op == "GetURL":
            return (100, [("URL", self.url_of(unit, port))]) if self.url_player else (658, [])
        name = params.get("fieldName", "")
        if op == "AssignField":
            value = params.get("fieldValue", "")
            if not name or not value:
                return 652, []
            p.fields[name] = value
            return 100, []
        return 100, [("fieldValue", p.fields.get(name, "123"))]

    def _init_station(self, params: dict[str, str]) -> Reply:
        extension = params.get("Extension", "")
        if not extension:
            return 659, []
        if f"ext:{extension}" in self.resolution_errors:
            return self.resolution_errors[f"ext:{extension}"], []
        return 100, [("Unit", "1"), ("Port", str(self._allocate(self.stations, extension)))]

    def _init_user(self, params: dict[str, str]) -> Reply:
        names = ("userName", "machineName") if self.api_version == "7.0" else ("User", "Machine")
        user, machine = params.get(names[0], ""), params.get(names[1], "")
        if not user or not machine:
            return 654, []
        if f"user:{user}" in self.resolution_errors:
            return self.resolution_errors[f"user:{user}"], []
        return 100, [("Unit", "1"), ("Port", str(self._allocate(self.users, user)))]

    def action(self, op: str) -> str:
        return self.soap_action.format(namespace=self.namespace, operation=op)

    def handle(self, op: str, params: dict[str, str]) -> Reply:
        """Answer one operation (no I/O): the response code and extra fields."""
        self.calls[op] += 1
        self.requests.append((op, params))
        if op in ONLY_71 and self.api_version == "7.0":
            raise ActionFault(self.action(op))
        unit, port = params.get("Unit", ""), params.get("Port", "")
        if op in ("PortStatus", "PortStatusEX"):
            return self._status(op, unit, port)
        if op in CONTROL:
            return self._control(op, unit, port)
        if op in ("GetURL", "GetField", "AssignField"):
            return self._recording_info(op, params)
        if op == "InitStation":
            return self._init_station(params)
        if op == "InitUser":
            return self._init_user(params)
        if op in ("LogEvent", "DesktopPause", "DesktopResume"):
            return 100, []
        raise ActionFault(self.action(op))
