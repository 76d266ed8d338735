"""Encore Web API simulator: the SOAP service of "Appendix A: Simulator", on loopback.

Behaves as the vendor's own test service does (Encore Web API 7.1, Appendix A):

* InitStation / InitUser hand out unit 1 and the next free port (1..288), stable per
  extension / user.
* The recording state machine answers 608 (not recording), 609 (already recording) and
  627 (not in pause mode) exactly where Appendix A says; CancelRecording always works.
* PortStatus / PortStatusEX report the state; PortStatusEX adds ``stateDuration`` in
  whole seconds since the last state change (the vendor's test service always says 20;
  ``fixed_duration=20`` reproduces that quirk).
* ``api_version="7.0"``: no PortStatusEX, ResumeRecording, GetField or Desktop*
  (WCF's ActionNotSupported fault instead) and InitUser takes ``userName``/``machineName``.

Extras for tests and demos, also reachable over SOAP: ``SimHold`` / ``SimRetrieve``
(put a recording call on hold: SUSPENDED, and take it back), plus Python methods to
backdate a state, inject response codes, unassign extensions and add latency. It counts
the most requests it ever had in flight at once (``max_concurrency``).
"""

from __future__ import annotations

import argparse
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import trio
from lxml import etree

from bridge.asgi import BodyTooLarge, Disconnected, lifespan, read_body, serve_asgi
from bridge.sources.encore_soap import (
    DEFAULT_NAMESPACE,
    DEFAULT_SOAP_ACTION,
    SOAP11_NS,
    SoapError,
    leaf_fields,
    local_name,
    parse_xml,
    soap_body,
)

NOT_RECORDING = "NOT RECORDING"
RECORD = "RECORD"
PAUSE = "PAUSE"
SUSPENDED = "SUSPENDED"

DATACONTRACT_NS = "http://schemas.datacontract.org/2004/07/ECAPI"
MAX_REQUEST_BYTES = 256 * 1024
HISTORY = 100_000

MESSAGES = {
    100: "Command executed as expected",
    606: "Error: Recording unit does not exist",
    608: "Warning: Port was not recording",
    609: "Warning: Port already recording",
    611: "Error: Port does not exist",
    621: "Error: Recording Engine is not connected to the recording server",
    627: "Warning: Port not in pause mode",
    651: "Error: ECAPI Web Service is not connected to the recorder",
    652: "Error: Field name and field value must be provided",
    653: "Error: An unexpected error occurred while processing request",
    654: "Error: Both User name and machine name must be provided",
    655: "Error: No recording port is defined for the specified machine name and user name",
    656: "Error: More than one recording port is defined for the specified machine name and/or user name",
    659: "Error: Extension must be provided",
    660: "Error: No recording port is defined for the specified station",
    661: "Error: More than one recording port is defined for the specified station",
    801: "System Error: Error writing to disk (disk is full, path does not exist, no write permissions, etc.)",
}

ONLY_71 = frozenset({"PortStatusEX", "ResumeRecording", "GetField", "DesktopPause", "DesktopResume"})

Reply = tuple[int, list[tuple[str, str]]]


@dataclass
class SimPort:
    """One recording port: its state, when it entered it, the current recording."""

    state: str = NOT_RECORDING
    entered: float = 0.0
    call_index: int = 0
    fields: dict[str, str] = field(default_factory=dict)


class SoapFaultReply(Exception):
    def __init__(self, code: str, text: str, status: int = 500) -> None:
        super().__init__(text)
        self.code, self.text, self.status = code, text, status


class EncoreSimulator:
    """In-process Encore Web API; ``port = await nursery.start(sim.serve)``."""

    def __init__(
        self,
        *,
        api_version: str = "7.1",
        latency: float = 0.0,
        units: int = 1,
        ports_per_unit: int = 288,
        fixed_duration: int | None = None,
        namespace: str = DEFAULT_NAMESPACE,
        soap_action: str = DEFAULT_SOAP_ACTION,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api_version = api_version
        self.latency = latency
        self.units = units
        self.ports_per_unit = ports_per_unit
        self.fixed_duration = fixed_duration
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
        self.in_flight = 0
        self.max_concurrency = 0
        self.calls: Counter[str] = Counter()
        # The most recent requests (operation, parameters) and arrival times (monotonic),
        # bounded so a long-running simulator does not grow without end.
        self.requests: deque[tuple[str, dict[str, str]]] = deque(maxlen=HISTORY)
        self.arrivals: deque[float] = deque(maxlen=HISTORY)

    # -- scripting API -------------------------------------------------------------

    def port(self, unit: str | int, port: str | int) -> SimPort:
        """The port's record (created on first use); raises KeyError if it cannot exist."""
        key = (str(unit), str(port))
        if self._check(*key) != 100:
            raise KeyError(f"unit {unit} port {port} does not exist in this simulator")
        if key not in self.ports:
            self.ports[key] = SimPort(entered=self.clock())
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
        """Put the recorded call on hold (RECORD -> SUSPENDED); 608 if not recording."""
        return self._control("SimHold", str(unit), str(port))[0]

    def retrieve(self, unit: str | int, port: str | int) -> int:
        """Take the held call back (SUSPENDED -> RECORD); 608 if not suspended."""
        return self._control("SimRetrieve", str(unit), str(port))[0]

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

    def _set(self, sim_port: SimPort, state: str) -> None:
        if state != sim_port.state:
            sim_port.state = state
            sim_port.entered = self.clock()

    def _allocate(self, table: dict[str, int], key: str) -> int:
        if key not in table:
            table[key] = self._next_port
            self._next_port = self._next_port % self.ports_per_unit + 1
        return table[key]

    def _duration(self, sim_port: SimPort) -> int:
        if sim_port.state == NOT_RECORDING:
            return 0
        if self.fixed_duration is not None:
            return self.fixed_duration
        return max(0, int(self.clock() - sim_port.entered))

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
            self._set(p, RECORD)
        elif op == "PauseRecording":
            if p.state != RECORD:
                return 608, []
            self._set(p, PAUSE)
        elif op == "ResumeRecording":
            if p.state != PAUSE:
                return 627, []
            self._set(p, RECORD)
        elif op == "StopRecording":
            if p.state != RECORD:
                return 608, []
            self._set(p, NOT_RECORDING)
        elif op == "CancelRecording":
            self._set(p, NOT_RECORDING)
        elif op == "SimHold":
            if p.state != RECORD:
                return 608, []
            self._set(p, SUSPENDED)
        elif op == "SimRetrieve":
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
            url = (
                "https://encore.example.invalid/encore/urlplayer.aspx"
                f"?fldCallIndex={p.call_index}.{int(port):04d}&siteid=1"
            )
            return 100, [("URL", url)]
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

    def handle(self, op: str, params: dict[str, str]) -> Reply:
        """Answer one operation (no I/O): the response code and extra fields."""
        self.calls[op] += 1
        self.requests.append((op, params))
        if op in ONLY_71 and self.api_version == "7.0":
            raise self._action_fault(op)
        unit, port = params.get("Unit", ""), params.get("Port", "")
        if op in ("PortStatus", "PortStatusEX"):
            return self._status(op, unit, port)
        if op in (
            "StartRecording",
            "PauseRecording",
            "ResumeRecording",
            "StopRecording",
            "CancelRecording",
            "SimHold",
            "SimRetrieve",
        ):
            return self._control(op, unit, port)
        if op in ("GetURL", "GetField", "AssignField"):
            return self._recording_info(op, params)
        if op == "InitStation":
            return self._init_station(params)
        if op == "InitUser":
            return self._init_user(params)
        if op in ("LogEvent", "DesktopPause", "DesktopResume"):
            return 100, []
        raise self._action_fault(op)

    def _action_fault(self, op: str) -> SoapFaultReply:
        action = self.soap_action.format(namespace=self.namespace, operation=op)
        return SoapFaultReply(
            "a:ActionNotSupported",
            f"The message with Action '{action}' cannot be processed at the receiver, due to a "
            "ContractFilter mismatch at the EndpointDispatcher. This may be because of either a "
            "contract mismatch (mismatched Actions between sender and receiver) or a "
            "binding/security mismatch between the sender and the receiver.",
        )

    # -- SOAP over ASGI ------------------------------------------------------------

    def _envelope(self, op: str, code: int, extra: list[tuple[str, str]]) -> bytes:
        env = etree.Element(etree.QName(SOAP11_NS, "Envelope"), nsmap={"s": SOAP11_NS})
        body = etree.SubElement(env, etree.QName(SOAP11_NS, "Body"))
        resp = etree.SubElement(
            body, etree.QName(self.namespace, f"{op}Response"), nsmap={None: self.namespace}
        )
        result = etree.SubElement(
            resp, etree.QName(self.namespace, f"{op}Result"), nsmap={"a": DATACONTRACT_NS}
        )
        pairs = [("responseCode", str(code)), ("responseMessage", MESSAGES.get(code, "Error")), *extra]
        for name, value in pairs:
            etree.SubElement(result, etree.QName(DATACONTRACT_NS, name)).text = value
        return etree.tostring(env, xml_declaration=True, encoding="utf-8")

    @staticmethod
    def _fault_envelope(fault: SoapFaultReply) -> bytes:
        return (
            f'<s:Envelope xmlns:s="{SOAP11_NS}"><s:Body><s:Fault>'
            '<faultcode xmlns:a="http://schemas.microsoft.com/ws/2005/05/addressing/none">'
            f'{fault.code}</faultcode><faultstring xml:lang="en-US">{_xml_text(fault.text)}'
            "</faultstring></s:Fault></s:Body></s:Envelope>"
        ).encode()

    def _dispatch(self, raw: bytes, soap_action: str | None) -> tuple[int, bytes]:
        try:
            item = soap_body(parse_xml(raw, "request"), "request", raw=raw)
        except SoapError as exc:
            return 400, _xml_text(f"Bad Request: {exc}").encode()
        op = local_name(item)
        expected = self.soap_action.format(namespace=self.namespace, operation=op)
        try:
            if soap_action is not None and soap_action.strip('"') != expected:
                raise SoapFaultReply(
                    "a:ActionNotSupported",
                    f"The message with Action '{soap_action.strip(chr(34))}' cannot be processed "
                    "at the receiver, due to a ContractFilter mismatch at the EndpointDispatcher.",
                )
            code, extra = self.handle(op, leaf_fields(item))
        except SoapFaultReply as fault:
            return fault.status, self._fault_envelope(fault)
        return 200, self._envelope(op, code, extra)

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """The ASGI callable: POST a SOAP 1.1 envelope to any path ending in ``.svc``."""
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        self.in_flight += 1
        self.max_concurrency = max(self.max_concurrency, self.in_flight)
        self.arrivals.append(time.monotonic())
        try:
            try:
                status, body, ctype = await self._answer(scope, receive)
            except Disconnected:
                return  # the client went away mid-request
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [(b"content-type", ctype), (b"content-length", str(len(body)).encode())],
                }
            )
            await send({"type": "http.response.body", "body": body})
        finally:
            self.in_flight -= 1

    async def _answer(self, scope: dict[str, Any], receive: Any) -> tuple[int, bytes, bytes]:
        try:
            raw: bytes | None = await read_body(receive, MAX_REQUEST_BYTES)
        except BodyTooLarge:
            raw = None
        if self.latency:
            await trio.sleep(self.latency)
        if not scope["path"].lower().endswith(".svc"):
            return 404, b"<html><body>404 Not Found</body></html>", b"text/html"
        if scope["method"] != "POST":
            return 200, b"Encore Web API simulator: POST SOAP 1.1 here\n", b"text/plain"
        if raw is None:
            return 413, b"request too large", b"text/plain"
        headers = {k.decode().lower(): v.decode("latin-1") for k, v in scope["headers"]}
        status, body = self._dispatch(raw, headers.get("soapaction"))
        ctype = b"text/xml; charset=utf-8" if status != 400 else b"text/plain"
        return status, body, ctype

    async def serve(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        certfile: str | None = None,
        keyfile: str | None = None,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve over HTTP (HTTPS with ``certfile``) until cancelled; reports the bound port."""
        await serve_asgi(self.app, host, port, certfile=certfile, keyfile=keyfile, task_status=task_status)


def _xml_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8086, help="TCP port (default 8086; 0 = any free)")
    parser.add_argument(
        "--api-version",
        choices=("7.1", "7.0"),
        default="7.1",
        help="7.0 has no PortStatusEX/ResumeRecording and InitUser takes userName/machineName",
    )
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every answer")
    parser.add_argument(
        "--fixed-duration",
        type=int,
        default=None,
        help="always answer this stateDuration for active states (the vendor test service says 20)",
    )
    parser.add_argument("--units", type=int, default=1, help="recording units that exist (default 1)")
    parser.add_argument("--ports-per-unit", type=int, default=288, help="ports per unit (default 288)")
    parser.add_argument(
        "--unassigned-extension",
        action="append",
        default=[],
        metavar="EXT",
        help="InitStation for EXT answers 660 (repeatable)",
    )
    parser.add_argument(
        "--unassigned-user",
        action="append",
        default=[],
        metavar="USER",
        help="InitUser for USER answers 655 (repeatable)",
    )
    parser.add_argument("--namespace", default=DEFAULT_NAMESPACE, help="service target namespace")
    parser.add_argument("--certfile", default=None, help="serve HTTPS with this certificate (PEM)")
    parser.add_argument("--keyfile", default=None, help="private key for --certfile (PEM)")


def build(args: argparse.Namespace) -> EncoreSimulator:
    sim = EncoreSimulator(
        api_version=args.api_version,
        latency=args.latency,
        units=args.units,
        ports_per_unit=args.ports_per_unit,
        fixed_duration=args.fixed_duration,
        namespace=args.namespace,
    )
    for ext in args.unassigned_extension:
        sim.resolution_errors[f"ext:{ext}"] = 660
    for user in args.unassigned_user:
        sim.resolution_errors[f"user:{user}"] = 655
    return sim


async def main(args: argparse.Namespace) -> None:
    """Serve until Ctrl-C, printing the endpoint URL to use as ``url`` in the config."""
    sim = build(args)
    async with trio.open_nursery() as nursery:
        serve = partial(sim.serve, args.host, args.port, certfile=args.certfile, keyfile=args.keyfile)
        port = await nursery.start(serve)
        scheme = "https" if args.certfile else "http"
        print(
            f"Encore Web API {sim.api_version} simulator on {scheme}://{args.host}:{port}/WebAPI/ECAPI.svc",
            flush=True,
        )
        print(
            "Drive it with SOAP requests (Unit, Port): StartRecording, PauseRecording, ResumeRecording, "
            "StopRecording, CancelRecording, and SimHold / SimRetrieve to put a call on hold (SUSPENDED).",
            flush=True,
        )


class DemoRecorder:
    """For ``event-bridge demo``: an Encore server where the source points, with a recording
    on each of its explicit ports walking through start, pause, resume, hold, retrieve, stop."""

    SCRIPT = ("start", "pause", "resume", "hold", "retrieve", "stop")

    def __init__(self, source: Any, step_seconds: float = 2.0) -> None:
        url = urlsplit(source.settings.url)
        self.host = url.hostname or "127.0.0.1"
        self.port = url.port or (443 if url.scheme == "https" else 80)
        self.ports = list(source.settings.ports) or [("1", "7")]
        self.step_seconds = step_seconds
        self.sim = EncoreSimulator()

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            port = await nursery.start(partial(self.sim.serve, self.host, self.port))
            task_status.started(port)
            while True:
                for action in self.SCRIPT:
                    await trio.sleep(self.step_seconds)
                    for unit, unit_port in self.ports:
                        getattr(self.sim, action)(unit, unit_port)


def for_source(source: Any) -> DemoRecorder:
    return DemoRecorder(source)
